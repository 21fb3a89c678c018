"""The `model` section of a recipe: a named size plus any `FuxiTranyuConfig` fields on top."""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING, Any

from pydantic import field_validator

from fuxitranyu.config_base import Section
from fuxitranyu.model.presets import preset_fields, preset_names

if TYPE_CHECKING:
    from fuxitranyu.model.configuration_fuxitranyu import FuxiTranyuConfig


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

    def check_architecture(self) -> None:
        """Every override is a FuxiTranyuConfig field and the resulting config is valid; a ValueError says what is
        not. Called by the whole recipe's validation (`Recipe`), after every other key has passed: building the
        config loads transformers (and torch), which a recipe with a typo elsewhere should not wait for."""
        from huggingface_hub.errors import StrictDataclassError

        from fuxitranyu.model.configuration_fuxitranyu import FuxiTranyuConfig

        known = set(FuxiTranyuConfig.__dataclass_fields__)
        for name in sorted(set(self.overrides) - known):
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise ValueError(f"model.overrides.{name} is not a FuxiTranyuConfig field{hint}")
        try:
            self.to_config()
        except (ValueError, TypeError, StrictDataclassError) as err:
            raise ValueError(f"invalid model: {err.__cause__ or err}") from err

    def to_config(self) -> FuxiTranyuConfig:
        from fuxitranyu.model.configuration_fuxitranyu import FuxiTranyuConfig

        return FuxiTranyuConfig(**{**preset_fields(self.preset), **self.overrides})
