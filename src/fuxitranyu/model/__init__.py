"""The FuxiTranyu model, registered with transformers' Auto classes when `modeling` loads, which `import fuxitranyu`
makes happen when the program first uses the Auto classes.

The names below are imported when first used (`fuxitranyu.lazy`), so that reading a recipe (`model/config.py`) does
not load torch."""

from fuxitranyu.lazy import lazy_exports

_WHERE = {
    "FuxiTranyuConfig": "fuxitranyu.model.configuration_fuxitranyu",
    "FuxiTranyuForCausalLM": "fuxitranyu.model.modeling",
    "FuxiTranyuModel": "fuxitranyu.model.modeling",
    "FuxiTranyuPreTrainedModel": "fuxitranyu.model.modeling",
    "preset_config": "fuxitranyu.model.presets",
    "preset_names": "fuxitranyu.model.presets",
}

__all__ = sorted(_WHERE)
__getattr__ = lazy_exports(__name__, _WHERE)
