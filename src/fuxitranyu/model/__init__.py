"""The FuxiTranyu model, registered with transformers' Auto classes (`auto.register`) once `modeling` has loaded, or
when the program first uses the Auto classes after `import fuxitranyu`.

The names below are imported when first used, so that reading a recipe (`model/config.py`) does not load torch."""

from importlib import import_module

_WHERE = {
    "FuxiTranyuConfig": "fuxitranyu.model.configuration_fuxitranyu",
    "FuxiTranyuForCausalLM": "fuxitranyu.model.modeling",
    "FuxiTranyuModel": "fuxitranyu.model.modeling",
    "FuxiTranyuPreTrainedModel": "fuxitranyu.model.modeling",
    "preset_config": "fuxitranyu.model.presets",
    "preset_names": "fuxitranyu.model.presets",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(import_module(_WHERE[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
