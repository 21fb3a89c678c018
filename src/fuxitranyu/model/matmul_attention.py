"""A CPU attention kernel for bf16 training, registered in transformers' attention and mask registries as
`fuxitranyu_matmul` (what `pretrain.attention: matmul`, or `auto` on a CPU in bf16, selects). Kept apart from the
architecture in `modeling.py`, as transformers keeps its kernels under `integrations/`."""

from __future__ import annotations

import torch
from torch import nn
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask
from transformers.modeling_utils import AttentionInterface

MATMUL_ATTENTION = "fuxitranyu_matmul"
"""Name of `matmul_attention_forward` in transformers' attention registry (`config._attn_implementation`)."""


@torch.compiler.disable
def matmul_attention_forward(module, query, key, value, attention_mask, scaling, dropout=0.0, **_):
    """Attention as two batched matmuls for CPU training in bf16. Hand-written because PyTorch's CPU flash kernel (the
    SDPA default there) runs bf16 hardly faster than fp32, while `baddbmm` + `bmm` reach the bf16 matrix unit: a
    whole bf16 training step ran 1.06-1.11x as fast with it (benchmarks/bench_cpu_kernels.py). It materialises the
    (B·heads, T, S) probabilities, so it suits short contexts only. Masks come in SDPA's form: None when purely
    causal, boolean (True = attend), or a float mask added to the scores. Kept out of torch.compile graphs: Inductor
    (torch 2.13, CPU) gave NaN gradients for it, and for `eager_attention_forward` too, under bf16 autocast on a
    static-shape compile."""
    batch, heads, length, head_dim = query.shape
    groups = module.num_key_value_groups
    key = key.repeat_interleave(groups, dim=1) if groups > 1 else key
    value = value.repeat_interleave(groups, dim=1) if groups > 1 else value
    keys = key.shape[2]
    if attention_mask is None:  # causal; with a cache the queries are the last `length` of `keys` positions
        bias = torch.full((length, keys), float("-inf"), dtype=query.dtype, device=query.device)
        bias = bias.triu_(keys - length + 1)
    else:
        if attention_mask.dtype == torch.bool:
            # a query that may see nothing (left padding) sees everything instead of giving NaNs; its output is unused
            attend = attention_mask | ~attention_mask.any(dim=-1, keepdim=True)
            bias = torch.zeros(attend.shape, dtype=query.dtype, device=query.device)
            bias.masked_fill_(~attend, float("-inf"))
        else:
            bias = attention_mask.to(query.dtype)
        bias = bias.expand(batch, heads, length, keys).reshape(batch * heads, length, keys)
    scores = torch.baddbmm(bias, query.reshape(batch * heads, length, head_dim),
                           key.reshape(batch * heads, keys, head_dim).transpose(1, 2), alpha=scaling)
    probs = nn.functional.softmax(scores, dim=-1)  # in the activation dtype; the kernel reduces in fp32
    probs = nn.functional.dropout(probs, p=dropout, training=module.training)
    output = torch.bmm(probs, value.reshape(batch * heads, keys, head_dim))
    return output.view(batch, heads, length, head_dim).transpose(1, 2).contiguous(), None


AttentionInterface.register(MATMUL_ATTENTION, matmul_attention_forward)
AttentionMaskInterface.register(MATMUL_ATTENTION, sdpa_mask)
