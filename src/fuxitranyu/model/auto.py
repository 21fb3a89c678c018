"""Our model type in transformers' Auto classes: `AutoConfig` / `AutoModel` / `AutoModelForCausalLM` load a
FuxiTranyu checkpoint (`model_type: fuxitranyu`) without `trust_remote_code`."""

from transformers import AutoConfig, AutoModel, AutoModelForCausalLM


def register() -> None:
    from fuxitranyu.model.configuration_fuxitranyu import FuxiTranyuConfig
    from fuxitranyu.model.modeling import FuxiTranyuForCausalLM, FuxiTranyuModel

    AutoConfig.register(FuxiTranyuConfig.model_type, FuxiTranyuConfig, exist_ok=True)
    AutoModel.register(FuxiTranyuConfig, FuxiTranyuModel, exist_ok=True)
    AutoModelForCausalLM.register(FuxiTranyuConfig, FuxiTranyuForCausalLM, exist_ok=True)
