"""Next-token loss without materialising the full logits, plus per-language sums.

With a 250k vocabulary, (batch × context × vocab) fp32 logits of one micro-batch of 8 × 4096 tokens take 33 GB. The
loss is computed over chunks of positions; each chunk's logits are recomputed in the backward pass
(activation checkpointing), so at most `chunk_tokens × vocab` logits exist at any time.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint


def _chunk_loss(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    logits = (hidden @ weight.t()).float()  # (chunk, vocab), fp32 for a stable log-softmax
    return F.cross_entropy(logits, targets, reduction="none")


def chunked_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                          chunk_tokens: int) -> torch.Tensor:
    """Per-token losses (fp32, shape targets.numel()) of `hidden @ weight.T` against `targets`."""
    hidden = hidden.reshape(-1, hidden.shape[-1])  # (B*T, d)
    targets = targets.reshape(-1)
    if hidden.shape[0] <= chunk_tokens:
        return _chunk_loss(hidden, weight, targets)
    pieces = [
        checkpoint(_chunk_loss, hidden[i:i + chunk_tokens], weight, targets[i:i + chunk_tokens], use_reentrant=False)
        for i in range(0, hidden.shape[0], chunk_tokens)
    ]
    return torch.cat(pieces)


class CausalLMLoss(nn.Module):
    """Wraps a causal LM so that one forward call returns per-token losses. DDP and FSDP wrap this module, so the
    lm_head's weight is gathered (FSDP) and its gradient synchronised (DDP) like any other parameter."""

    def __init__(self, model: nn.Module, chunk_tokens: int):
        super().__init__()
        self.lm = model
        self.chunk_tokens = chunk_tokens

    def forward(self, input_ids: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        hidden = self.lm.model(input_ids=input_ids, use_cache=False).last_hidden_state  # (B, T, d)
        return chunked_cross_entropy(hidden, self.lm.lm_head.weight, targets, self.chunk_tokens)


def per_language_sums(losses: torch.Tensor, languages: torch.Tensor, num_languages: int
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of losses, number of tokens) per language index, as float64 tensors of length `num_languages`."""
    index = languages.reshape(-1).long()
    sums = torch.zeros(num_languages, dtype=torch.float64, device=losses.device)
    counts = torch.zeros(num_languages, dtype=torch.float64, device=losses.device)
    sums.scatter_add_(0, index, losses.detach().double())
    counts.scatter_add_(0, index, torch.ones_like(index, dtype=torch.float64))
    return sums, counts
