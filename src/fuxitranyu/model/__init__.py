"""The FuxiTranyu model, registered with transformers' Auto classes when `fuxitranyu` is imported."""

from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

from fuxitranyu.model.configuration_fuxitranyu import FuxiTranyuConfig
from fuxitranyu.model.modeling import (
    FuxiTranyuForCausalLM,
    FuxiTranyuModel,
    FuxiTranyuPreTrainedModel,
)
from fuxitranyu.model.presets import preset_config, preset_names

AutoConfig.register(FuxiTranyuConfig.model_type, FuxiTranyuConfig, exist_ok=True)
AutoModel.register(FuxiTranyuConfig, FuxiTranyuModel, exist_ok=True)
AutoModelForCausalLM.register(FuxiTranyuConfig, FuxiTranyuForCausalLM, exist_ok=True)

__all__ = [
    "FuxiTranyuConfig",
    "FuxiTranyuForCausalLM",
    "FuxiTranyuModel",
    "FuxiTranyuPreTrainedModel",
    "preset_config",
    "preset_names",
]
