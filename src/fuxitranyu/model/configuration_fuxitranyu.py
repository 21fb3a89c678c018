"""`FuxiTranyuConfig`: the hyper-parameters of the FuxiTranyu decoder (paper section 3.4, Table 4)."""

from __future__ import annotations

from typing import ClassVar

from huggingface_hub.dataclasses import strict
from transformers.configuration_utils import PreTrainedConfig
from transformers.modeling_rope_utils import RopeParameters

# The released checkpoints name the tanh approximation of GeLU `gelu_fast`; `gelu_pytorch_tanh` is the same
# function as a single fused kernel.
_ACTIVATION_ALIASES = {"gelu_fast": "gelu_pytorch_tanh", "gelu_new": "gelu_pytorch_tanh"}


@strict
class FuxiTranyuConfig(PreTrainedConfig):
    """Defaults are FuxiTranyu-8B (Table 4): 30 layers of width 4096, 32 heads, a 16384-wide GeLU MLP, and a
    vocabulary of 250,680 tokens padded with 72 dummy tokens to 250,752.

    Accepts the released checkpoints' `config.json` as it is: `activation_function` is read as `hidden_act`,
    `rope_theta` / `rope_scaling` become `rope_parameters`, and `auto_map` is dropped, because this class (registered
    with the Auto classes by `import fuxitranyu`) is the code; nothing remote is ever executed.
    """

    model_type = "fuxitranyu"
    # Always empty: there is no remote code to point at. TRL reads `config.auto_map` to pick an Auto class.
    auto_map: ClassVar[dict] = {}
    base_model_tp_plan = {
        "layers.*.self_attn.q_proj": "colwise",
        "layers.*.self_attn.k_proj": "colwise",
        "layers.*.self_attn.v_proj": "colwise",
        "layers.*.self_attn.o_proj": "rowwise",
        "layers.*.mlp.up_proj": "colwise",
        "layers.*.mlp.down_proj": "rowwise",
    }
    base_model_pp_plan = {
        "embed_tokens": (["input_ids"], ["inputs_embeds"]),
        "layers": (["hidden_states", "attention_mask"], ["hidden_states"]),
        "norm": (["hidden_states"], ["hidden_states"]),
    }

    vocab_size: int = 250_752
    hidden_size: int = 4096
    intermediate_size: int = 16_384
    num_hidden_layers: int = 30
    num_attention_heads: int = 32
    num_key_value_heads: int | None = None
    head_dim: int | None = None
    hidden_act: str = "gelu_pytorch_tanh"
    max_position_embeddings: int = 4096
    initializer_range: float = 0.02
    rms_norm_eps: float = 1e-5
    rope_parameters: RopeParameters | dict | None = None
    attention_bias: bool = True
    mlp_bias: bool = True
    attention_dropout: float | int = 0.0
    use_cache: bool = True
    pad_token_id: int | None = None
    bos_token_id: int | None = 0
    eos_token_id: int | list[int] | None = 0
    tie_word_embeddings: bool = False

    def __post_init__(self, **kwargs):
        activation = kwargs.pop("activation_function", None)
        if activation is not None:
            self.hidden_act = activation
        self.hidden_act = _ACTIVATION_ALIASES.get(self.hidden_act, self.hidden_act)
        kwargs.pop("auto_map", None)
        kwargs.pop("pretraining_tp", None)  # Megatron's tensor-parallel degree at training time; no effect here
        if self.head_dim is None and self.num_attention_heads:  # zero heads: reported by validate_architecture
            self.head_dim = self.hidden_size // self.num_attention_heads
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        super().__post_init__(**kwargs)

    def validate_architecture(self):
        for name in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                     "num_key_value_heads", "head_dim", "max_position_embeddings"):  # in the order they are derived
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.hidden_size % self.num_attention_heads != 0:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be a multiple of num_attention_heads "
                f"({self.num_attention_heads})"
            )
        if self.num_attention_heads % self.num_key_value_heads != 0:
            raise ValueError(
                f"num_attention_heads ({self.num_attention_heads}) must be a multiple of num_key_value_heads "
                f"({self.num_key_value_heads})"
            )
