"""The pretraining loss: next-token cross-entropy of the output layer, fused with its own gradient, plus per-language
sums.

Hand-written because no library does this on every device we run on (Liger-Kernel's fused linear cross-entropy is
Triton, GPU only). The logits of a whole micro-batch are the largest tensor of a training step: 8 × 4096 tokens
against a 250k vocabulary are 33 GB in fp32, and even at the tiny recipe's 32k vocabulary a plain
`cross_entropy(hidden @ W.T)` spends a third of a CPU step writing, normalising and zero-filling them. Here the logits
exist one chunk of `chunk_tokens` positions at a time, and while a chunk is in hand its softmax becomes the gradient
(softmax − one-hot), which goes straight into the gradients of the hidden states and of the output weight. The
backward pass then only scales the two stored gradients: no logits are kept or recomputed, and no extra matmul is
done (the plain loss does the same three matmuls).
"""

from __future__ import annotations

import torch
from torch import nn


class _LinearCrossEntropy(torch.autograd.Function):
    """(sum of the per-token losses, the per-token losses) of `hidden @ weight.T` against `targets`. Only the sum is
    differentiable, which is what lets the gradient be formed in the forward pass."""

    @staticmethod
    def forward(ctx, hidden, weight, targets, chunk_tokens, compute_dtype):
        wants_grad = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        # Matmuls in the autocast dtype (bf16/fp16) or fp32; softmax, losses and gradient accumulation in fp32.
        low_hidden, low_weight = hidden.to(compute_dtype), weight.to(compute_dtype)
        losses = torch.empty(hidden.shape[0], dtype=torch.float32, device=hidden.device)
        grad_hidden = torch.empty_like(hidden, dtype=torch.float32) if wants_grad else None
        grad_weight = torch.zeros_like(weight, dtype=torch.float32) if wants_grad else None
        with torch.autocast(hidden.device.type, enabled=False):
            for begin in range(0, hidden.shape[0], chunk_tokens):
                rows = slice(begin, begin + chunk_tokens)
                chunk, chunk_targets = low_hidden[rows], targets[rows]
                logits = (chunk @ low_weight.t()).float()  # (chunk, vocab): the only large tensor, reused in place
                target_logits = logits.gather(1, chunk_targets[:, None])
                peak = logits.amax(1, keepdim=True)
                probs = logits.sub_(peak).exp_()
                total = probs.sum(1, keepdim=True)
                losses[rows] = (peak + total.log() - target_logits).squeeze(1)
                if not wants_grad:
                    continue
                # d(loss)/d(logits) = softmax − one-hot
                probs.div_(total).scatter_add_(1, chunk_targets[:, None], probs.new_full((len(chunk), 1), -1.0))
                grad_logits = probs.to(compute_dtype)
                if compute_dtype == torch.float32:  # written and accumulated in place
                    torch.mm(grad_logits, low_weight, out=grad_hidden[rows])
                    grad_weight.addmm_(grad_logits.t(), chunk)
                else:  # bf16/fp16 products, kept (and accumulated over chunks) in fp32
                    grad_hidden[rows] = grad_logits @ low_weight
                    grad_weight += grad_logits.t() @ chunk
        if wants_grad:
            ctx.save_for_backward(grad_hidden, grad_weight)
            ctx.dtypes = hidden.dtype, weight.dtype
        ctx.mark_non_differentiable(losses)
        return losses.sum(), losses

    @staticmethod
    def backward(ctx, grad_sum, _grad_losses):
        grad_hidden, grad_weight = ctx.saved_tensors
        hidden_dtype, weight_dtype = ctx.dtypes
        # not in place: a graph kept with retain_graph=True may run this backward again
        return (grad_hidden.mul(grad_sum).to(hidden_dtype), grad_weight.mul(grad_sum).to(weight_dtype),
                None, None, None)


def linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                         chunk_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(Σ losses, per-token losses) of `hidden @ weight.T` against `targets` (B×T or N×d hidden, matching targets),
    all fp32. Only the sum carries a gradient; the per-token losses are for metrics."""
    hidden = hidden.reshape(-1, hidden.shape[-1])
    targets = targets.reshape(-1)
    device = hidden.device.type
    compute_dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else hidden.dtype
    return _LinearCrossEntropy.apply(hidden, weight, targets, chunk_tokens, compute_dtype)


class CausalLMLoss(nn.Module):
    """Wraps a causal LM so that one forward call returns (Σ next-token losses, per-token losses). DDP and FSDP wrap
    this module, so the lm_head's weight is gathered (FSDP) and its gradient synchronised (DDP) like any other
    parameter."""

    def __init__(self, model: nn.Module, chunk_tokens: int):
        from fuxitranyu.pretrain.architecture import trainable_parts

        super().__init__()
        self.lm = model
        self.chunk_tokens = chunk_tokens
        parts = trainable_parts(model)
        self.body_and_head = (parts.body, parts.head)  # modules inside `lm`; a tuple, so not registered twice

    def forward(self, input_ids: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        body, head = self.body_and_head
        hidden = body(input_ids=input_ids, use_cache=False).last_hidden_state  # (B, T, d)
        return linear_cross_entropy(hidden, head.weight, targets, self.chunk_tokens)


def per_language_sums(losses: torch.Tensor, languages: torch.Tensor, num_languages: int
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of losses, number of tokens) per language index, as float64 tensors of length `num_languages`."""
    index = languages.reshape(-1).long()
    sums = torch.zeros(num_languages, dtype=torch.float64, device=losses.device)
    counts = torch.zeros(num_languages, dtype=torch.float64, device=losses.device)
    sums.scatter_add_(0, index, losses.detach().double())
    counts.scatter_add_(0, index, torch.ones_like(index, dtype=torch.float64))
    return sums, counts
