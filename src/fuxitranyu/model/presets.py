"""Named model sizes, one YAML file each in `presets/` (the keys are `FuxiTranyuConfig` fields)."""

from __future__ import annotations

from importlib import resources
from typing import TYPE_CHECKING, Any

import yaml

from fuxitranyu.errors import FuxiError

if TYPE_CHECKING:
    from fuxitranyu.model.configuration_fuxitranyu import FuxiTranyuConfig


def preset_names() -> list[str]:
    folder = resources.files("fuxitranyu.model") / "presets"
    return sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))


def preset_fields(name: str) -> dict[str, Any]:
    if name not in preset_names():
        raise FuxiError(f"unknown model preset {name!r}; presets: {', '.join(preset_names())}")
    text = (resources.files("fuxitranyu.model") / "presets" / f"{name}.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def preset_config(name: str, **overrides: Any) -> FuxiTranyuConfig:
    """The config of a named preset, with `overrides` (any `FuxiTranyuConfig` field) applied on top."""
    from fuxitranyu.model.configuration_fuxitranyu import FuxiTranyuConfig

    return FuxiTranyuConfig(**{**preset_fields(name), **overrides})
