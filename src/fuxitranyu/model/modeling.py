"""The FuxiTranyu decoder (paper section 3.4) in the transformers house style.

    tokens ─► embed_tokens ─► [ FuxiTranyuDecoderLayer ] × num_hidden_layers ─► norm ─► lm_head ─► logits

A GPT-2-style decoder with the paper's modifications: untied input/output embeddings, biases kept in every
attention and MLP projection, RoPE instead of learned positions, pre-normalisation with RMSNorm, and a non-gated
GeLU MLP (tanh approximation). Caching, attention masks, attention kernels (eager/SDPA/flash) and generation come
from transformers, so this file holds only the architecture. For the same weights its logits equal transformers'
`ArceeForCausalLM` configured as `fuxitranyu.model.export.to_arcee_config` does (tested).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM
from transformers.activations import ACT2FN
from transformers.cache_utils import Cache, DynamicCache
from transformers.generation import GenerationMixin
from transformers.masking_utils import create_causal_mask
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import (
    BaseModelOutputWithPast,
    CausalLMOutputWithPast,
)
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS, dynamic_rope_update
from transformers.modeling_utils import (
    ALL_ATTENTION_FUNCTIONS,
    PreTrainedModel,
    slice_logits_to_keep,
)
from transformers.processing_utils import Unpack
from transformers.utils import TransformersKwargs, can_return_tuple
from transformers.utils.deprecation import deprecate_kwarg
from transformers.utils.generic import merge_with_config_defaults
from transformers.utils.output_capturing import capture_outputs

from fuxitranyu.model import matmul_attention  # noqa: F401  (registers the CPU bf16 kernel with transformers)
from fuxitranyu.model.configuration_fuxitranyu import FuxiTranyuConfig

# transformers 5.24 renamed the KV cache argument `past_key_values` -> `cache`; the old name is accepted (with the
# library's own FutureWarning to the caller) until transformers removes it.
_CACHE_RENAME_REMOVED_IN = "5.40.0"
# Keywords a transformers caller (generate, Trainer, TRL, lm-eval) may pass down to a forward: everything else is a
# typo or an argument renamed by a newer transformers, and must not vanish silently (a renamed cache argument once made
# every decoding step after the first run without context).
FORWARD_KWARGS = frozenset(TransformersKwargs.__annotations__) | {"return_dict", "shift_labels", "ignore_index"}
"""TransformersKwargs, plus what `can_return_tuple` and the loss function (`ForCausalLMLoss`) take: TRL passes
pre-shifted `shift_labels`."""


def reject_unknown_kwargs(module: nn.Module, kwargs: dict) -> None:
    unknown = sorted(set(kwargs) - FORWARD_KWARGS)
    if unknown:
        raise TypeError(f"{type(module).__name__}.forward() got unexpected keyword arguments {unknown}; "
                        f"accepted beyond the named ones: {sorted(FORWARD_KWARGS)}")


class FuxiTranyuRMSNorm(nn.Module):
    """RMSNorm computed in fp32 whatever the activation dtype, then cast back (as Llama). Under autocast the output
    is cast once to the autocast dtype: only linear layers read it, and each of them would cast it again (q, k and v
    three times, in the forward and the backward)."""

    def __init__(self, hidden_size: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.variance_epsilon = eps

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        input_dtype = hidden_states.dtype
        hidden_states = hidden_states.to(torch.float32)
        variance = hidden_states.pow(2).mean(-1, keepdim=True)
        hidden_states = hidden_states * torch.rsqrt(variance + self.variance_epsilon)
        normed = self.weight * hidden_states.to(input_dtype)
        device = normed.device.type
        return normed.to(torch.get_autocast_dtype(device)) if torch.is_autocast_enabled(device) else normed


class FuxiTranyuRotaryEmbedding(nn.Module):
    """cos/sin tables of RoPE, computed once per forward for the given positions and shared by all layers.

    The `inv_freq` buffers are re-filled by transformers' `_init_weights` after a model is built on the meta device.
    """

    def __init__(self, config: FuxiTranyuConfig):
        super().__init__()
        self.config = config
        self.max_seq_len_cached = self.original_max_seq_len = config.max_position_embeddings
        self.rope_type = config.rope_parameters["rope_type"]
        init_fn = (self.compute_default_rope_parameters if self.rope_type == "default"
                   else ROPE_INIT_FUNCTIONS[self.rope_type])
        inv_freq, self.attention_scaling = init_fn(config)
        self.inv_freq = nn.Buffer(inv_freq, persistent=False)
        self.original_inv_freq = nn.Buffer(inv_freq.clone(), persistent=False)

    @staticmethod
    def compute_default_rope_parameters(config: FuxiTranyuConfig, **_) -> tuple[torch.Tensor, float]:
        base = config.rope_parameters["rope_theta"]
        dim = config.head_dim
        inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float) / dim))
        return inv_freq, 1.0

    @torch.no_grad()
    @dynamic_rope_update
    def forward(self, x: torch.Tensor, position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        freqs = position_ids[..., None].float() * self.inv_freq.to(x.device)  # (B, T, head_dim/2)
        emb = torch.cat((freqs, freqs), dim=-1)  # (B, T, head_dim)
        cos, sin = emb.cos() * self.attention_scaling, emb.sin() * self.attention_scaling
        return cos.to(x.dtype), sin.to(x.dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary_pos_emb(q, k, cos, sin):
    """q, k: (B, heads, T, head_dim); cos, sin: (B, T, head_dim). Rotates in q's dtype: under autocast the
    projections give bf16/fp16 q and k, which the attention kernel takes as they are (fp32 tables would promote them
    to fp32 and the kernel would cast them back)."""
    cos, sin = cos.unsqueeze(1).to(q.dtype), sin.unsqueeze(1).to(q.dtype)
    return q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin


def eager_attention_forward(module, query, key, value, attention_mask, scaling, dropout=0.0, **_):
    """Reference attention in plain PyTorch; the default backend is SDPA (flash/memory-efficient kernels)."""
    groups = module.num_key_value_groups
    key = key.repeat_interleave(groups, dim=1)  # (B, kv_heads, S, D) -> (B, heads, S, D)
    value = value.repeat_interleave(groups, dim=1)
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling  # (B, heads, T, S)
    if attention_mask is not None:
        scores = scores + attention_mask
    probs = nn.functional.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    probs = nn.functional.dropout(probs, p=dropout, training=module.training)
    output = torch.matmul(probs, value).transpose(1, 2).contiguous()  # (B, T, heads, D)
    return output, probs


class FuxiTranyuAttention(nn.Module):
    """Multi-head self-attention with biased projections and RoPE; grouped-query if num_key_value_heads < heads."""

    def __init__(self, config: FuxiTranyuConfig, layer_idx: int):
        super().__init__()
        self.config = config
        self.layer_idx = layer_idx
        self.head_dim = config.head_dim
        self.num_key_value_groups = config.num_attention_heads // config.num_key_value_heads
        self.scaling = self.head_dim**-0.5
        self.is_causal = True
        q_width = config.num_attention_heads * self.head_dim
        kv_width = config.num_key_value_heads * self.head_dim
        self.q_proj = nn.Linear(config.hidden_size, q_width, bias=config.attention_bias)
        self.k_proj = nn.Linear(config.hidden_size, kv_width, bias=config.attention_bias)
        self.v_proj = nn.Linear(config.hidden_size, kv_width, bias=config.attention_bias)
        self.o_proj = nn.Linear(q_width, config.hidden_size, bias=config.attention_bias)

    def forward(
        self,
        hidden_states: torch.Tensor,
        position_embeddings: tuple[torch.Tensor, torch.Tensor],
        attention_mask: torch.Tensor | None = None,
        cache: Cache | None = None,
        **kwargs,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        batch_and_time = hidden_states.shape[:-1]
        per_head = (*batch_and_time, -1, self.head_dim)
        # (B, T, heads * D) -> (B, heads, T, D)
        query = self.q_proj(hidden_states).view(per_head).transpose(1, 2)
        key = self.k_proj(hidden_states).view(per_head).transpose(1, 2)
        value = self.v_proj(hidden_states).view(per_head).transpose(1, 2)

        cos, sin = position_embeddings
        query, key = apply_rotary_pos_emb(query, key, cos, sin)
        if cache is not None:
            key, value = cache.update(key, value, self.layer_idx)

        attention: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation, eager_attention_forward
        )
        output, weights = attention(
            self,
            query,
            key,
            value,
            attention_mask,
            dropout=self.config.attention_dropout if self.training else 0.0,
            scaling=self.scaling,
            **kwargs,
        )
        output = output.reshape(*batch_and_time, -1).contiguous()  # (B, T, heads, D) -> (B, T, heads * D)
        return self.o_proj(output), weights


class FuxiTranyuMLP(nn.Module):
    """Non-gated GeLU MLP with biases: the paper keeps GeLU over SwiGLU to avoid SwiGLU's 50% more MLP weights."""

    def __init__(self, config: FuxiTranyuConfig):
        super().__init__()
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=config.mlp_bias)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=config.mlp_bias)
        self.act_fn = ACT2FN[config.hidden_act]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.act_fn(self.up_proj(x)))


class FuxiTranyuDecoderLayer(GradientCheckpointingLayer):
    """Pre-norm block:

        x ─┬─► input_layernorm ─► self_attn ─► (+) ─┬─► post_attention_layernorm ─► mlp ─► (+) ─► out
           └──────────────────────────────────────┘ └───────────────────────────────────────┘
    """

    def __init__(self, config: FuxiTranyuConfig, layer_idx: int):
        super().__init__()
        self.input_layernorm = FuxiTranyuRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.self_attn = FuxiTranyuAttention(config, layer_idx)
        self.post_attention_layernorm = FuxiTranyuRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.mlp = FuxiTranyuMLP(config)

    def forward(
        self,
        hidden_states: torch.Tensor,
        position_embeddings: tuple[torch.Tensor, torch.Tensor],
        attention_mask: torch.Tensor | None = None,
        cache: Cache | None = None,
        **kwargs,
    ) -> torch.Tensor:
        attn_out, _ = self.self_attn(
            self.input_layernorm(hidden_states),
            position_embeddings=position_embeddings,
            attention_mask=attention_mask,
            cache=cache,
            **kwargs,
        )
        hidden_states = hidden_states + attn_out
        return hidden_states + self.mlp(self.post_attention_layernorm(hidden_states))


class FuxiTranyuPreTrainedModel(PreTrainedModel):
    config: FuxiTranyuConfig
    config_class = FuxiTranyuConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _no_split_modules = ["FuxiTranyuDecoderLayer"]
    _skip_keys_device_placement = ["cache"]
    _supports_flash_attn = True
    _supports_sdpa = True
    _supports_flex_attn = True
    _can_compile_fullgraph = True
    _supports_attention_backend = True
    _can_record_outputs = {"hidden_states": FuxiTranyuDecoderLayer, "attentions": FuxiTranyuAttention}


class FuxiTranyuModel(FuxiTranyuPreTrainedModel):
    """The backbone: embeddings, decoder layers and the final norm; returns `last_hidden_state`."""

    def __init__(self, config: FuxiTranyuConfig):
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, config.pad_token_id)
        self.layers = nn.ModuleList(FuxiTranyuDecoderLayer(config, i) for i in range(config.num_hidden_layers))
        self.norm = FuxiTranyuRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.rotary_emb = FuxiTranyuRotaryEmbedding(config)
        self.gradient_checkpointing = False
        self.post_init()

    @deprecate_kwarg("past_key_values", _CACHE_RENAME_REMOVED_IN, new_name="cache")
    @merge_with_config_defaults
    @capture_outputs
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> BaseModelOutputWithPast:
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids or inputs_embeds")
        reject_unknown_kwargs(self, kwargs)
        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)  # (B, T, hidden)
        if use_cache and cache is None:
            cache = DynamicCache(config=self.config)
        if position_ids is None:
            past_seen = cache.get_seq_length() if cache is not None else 0
            position_ids = (torch.arange(inputs_embeds.shape[1], device=inputs_embeds.device) + past_seen)[None]

        causal_mask = create_causal_mask(
            config=self.config,
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            cache=cache,
            position_ids=position_ids,
        )
        position_embeddings = self.rotary_emb(inputs_embeds, position_ids)

        hidden_states = inputs_embeds
        for layer in self.layers:
            hidden_states = layer(
                hidden_states,
                position_embeddings=position_embeddings,
                attention_mask=causal_mask,
                position_ids=position_ids,
                cache=cache,
                **kwargs,
            )
        return BaseModelOutputWithPast(last_hidden_state=self.norm(hidden_states), cache=cache)


class FuxiTranyuForCausalLM(FuxiTranyuPreTrainedModel, GenerationMixin):
    """The backbone plus an untied `lm_head` (paper 3.4: separate input and output embeddings)."""

    _tp_plan = {"lm_head": "colwise_gather_output"}
    _pp_plan = {"lm_head": (["hidden_states"], ["logits"])}

    def __init__(self, config: FuxiTranyuConfig):
        super().__init__(config)
        self.model = FuxiTranyuModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    @deprecate_kwarg("past_key_values", _CACHE_RENAME_REMOVED_IN, new_name="cache")
    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs: Unpack[TransformersKwargs],
    ) -> CausalLMOutputWithPast:
        reject_unknown_kwargs(self, kwargs)
        outputs = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            **kwargs,
        )
        hidden_states = slice_logits_to_keep(outputs.last_hidden_state, logits_to_keep)
        logits = self.lm_head(hidden_states)  # (B, T, vocab)
        loss = None
        if labels is not None:
            loss = self.loss_function(logits=logits, labels=labels, vocab_size=self.config.vocab_size, **kwargs)
        return CausalLMOutputWithPast(
            loss=loss,
            logits=logits,
            cache=outputs.cache,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )


# Our model type in transformers' Auto classes: `AutoModelForCausalLM.from_pretrained` loads a FuxiTranyu checkpoint
# (`model_type: fuxitranyu`) without `trust_remote_code`.
AutoConfig.register(FuxiTranyuConfig.model_type, FuxiTranyuConfig, exist_ok=True)
AutoModel.register(FuxiTranyuConfig, FuxiTranyuModel, exist_ok=True)
AutoModelForCausalLM.register(FuxiTranyuConfig, FuxiTranyuForCausalLM, exist_ok=True)
