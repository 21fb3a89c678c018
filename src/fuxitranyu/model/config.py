"""The `model` section of a recipe: a named size plus any `FuxiTranyuConfig` fields on top."""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

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
    new_rows: Literal["mean", "random"] = "mean"
    """With `init_from` and `tokenizer.mode: extend`: the embedding rows of the added tokens start as the `mean` of
    the rows of the pieces the base tokenizer splits each into, or `random` (docs/adapt.md)."""
    init_from: str | None = None
    """Continue from this Hugging Face causal LM directory instead of random weights: ours or a stock family (Llama,
    Qwen2, Mistral, GPT-NeoX, BLOOM, ...; docs/adapt.md). `preset` and `overrides` then do not apply, and
    `tokenizer.base` must name the model's tokenizer."""

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, name: str) -> str:
        if name not in preset_names():
            raise ValueError(f"unknown preset {name!r}; presets: {', '.join(preset_names())}")
        return name

    def base_config(self) -> dict[str, Any]:
        """The config.json of `init_from`, read without loading transformers; a ValueError when it cannot be read."""
        path = Path(str(self.init_from)).expanduser() / "config.json"
        try:
            config = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ValueError(f"model.init_from: {path} is not a readable Hugging Face config (no such file): put "
                             f"the model there first (its config.json alone is enough for `fuxitranyu model info "
                             f"--recipe`)") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"model.init_from: {path} is not a readable Hugging Face config ({err})") from None
        if not isinstance(config, dict) or "model_type" not in config:
            raise ValueError(f"model.init_from: {path} has no model_type")
        return config

    def max_positions(self) -> int | None:
        """The longest context the model takes (None: no learned or rotary limit, e.g. BLOOM's ALiBi)."""
        if self.init_from:
            return self.base_config().get("max_position_embeddings")
        return self.to_config().max_position_embeddings

    def check_architecture(self) -> None:
        """Every override is a FuxiTranyuConfig field and the resulting config is valid; a ValueError says what is
        not. Called by the whole recipe's validation (`Recipe`), after every other key has passed: building the
        config loads transformers (and torch), which a recipe with a typo elsewhere should not wait for."""
        if self.init_from:
            if self.overrides:
                raise ValueError("model.overrides do not apply with model.init_from (the base model's config.json "
                                 "is the architecture); drop them")
            self.base_config()
            return
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
