"""The `model` section of a recipe: a named size plus any `FuxiTranyuConfig` fields on top."""

from __future__ import annotations

import difflib
from typing import Any

from huggingface_hub.errors import StrictDataclassError
from pydantic import field_validator, model_validator

from fuxitranyu.config_base import Section
from fuxitranyu.model.configuration_fuxitranyu import FuxiTranyuConfig
from fuxitranyu.model.presets import preset_fields, preset_names


class ModelSection(Section):
    preset: str = "tiny"
    """Named size, one of the files in fuxitranyu/model/presets: tiny, small, fuxitranyu-8b."""
    overrides: dict[str, Any] = {}
    """FuxiTranyuConfig fields set on top of the preset, e.g. {num_hidden_layers: 2, hidden_size: 512}. The vocabulary
    size follows the tokenizer section."""

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, name: str) -> str:
        if name not in preset_names():
            raise ValueError(f"unknown preset {name!r}; presets: {', '.join(preset_names())}")
        return name

    @model_validator(mode="after")
    def _valid_architecture(self) -> ModelSection:
        known = set(FuxiTranyuConfig.__dataclass_fields__)
        for name in sorted(set(self.overrides) - known):
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise ValueError(f"overrides.{name} is not a FuxiTranyuConfig field{hint}")
        try:
            self.to_config()
        except (ValueError, TypeError, StrictDataclassError) as err:
            raise ValueError(f"invalid model: {err.__cause__ or err}") from err
        return self

    def to_config(self) -> FuxiTranyuConfig:
        return FuxiTranyuConfig(**{**preset_fields(self.preset), **self.overrides})
