"""Pure functions of the tokens seen: learning rate, global batch size, checkpoint times (paper 3.5, Table 4)."""

from __future__ import annotations

import math

from fuxitranyu.pretrain.config import PretrainSection


def peak_lr(tokens: int, recipe: PretrainSection) -> float:
    """The maximum learning rate in force: `max_lr`, replaced by each `lr_changes` entry once reached."""
    peak = recipe.max_lr
    for change in recipe.lr_changes:
        if tokens >= change.at_tokens:
            peak = change.max_lr
    return peak


def learning_rate(tokens: int, recipe: PretrainSection, scale: float = 1.0) -> float:
    """Linear warmup to the peak, then cosine decay to `min_lr_ratio` of the peak at `total_tokens`.

    A change of peak (the paper's 3e-4 -> 1e-4) rescales the curve from that point on; the cosine keeps its phase,
    so the schedule still ends at `min_lr_ratio` of the (new) peak. `scale` multiplies the whole curve (the
    divergence guard lowers it after a rollback).
    """
    peak = peak_lr(tokens, recipe) * scale
    if tokens < recipe.warmup_tokens:
        return peak * (tokens + 1) / recipe.warmup_tokens
    progress = min((tokens - recipe.warmup_tokens) / (recipe.total_tokens - recipe.warmup_tokens), 1.0)
    floor = recipe.min_lr_ratio * peak
    return floor + (peak - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def batch_tokens(tokens: int, recipe: PretrainSection) -> int:
    """The global batch size (tokens) in force: the last `batch` step whose `from_tokens` has been reached."""
    size = recipe.batch[0].batch_tokens
    for step in recipe.batch:
        if tokens >= step.from_tokens:
            size = step.batch_tokens
    return size


def total_steps(recipe: PretrainSection) -> int:
    """Optimizer steps of the whole run under the batch schedule."""
    tokens = steps = 0
    while tokens < recipe.total_tokens:
        tokens += batch_tokens(tokens, recipe)
        steps += 1
    return steps


def auto_checkpoint_marks(recipe: PretrainSection) -> list[int]:
    """Tokens at which the automatic schedule saves: total·(k/K)², k = 1..K."""
    count = recipe.auto_checkpoints
    return [recipe.total_tokens * k * k // (count * count) for k in range(1, count + 1)]


def checkpoint_due(tokens_before: int, tokens_after: int, recipe: PretrainSection) -> bool:
    """Whether a step that took the count from `tokens_before` to `tokens_after` crossed a checkpoint time."""
    if not recipe.checkpoints:
        return any(tokens_before < mark <= tokens_after for mark in auto_checkpoint_marks(recipe)) or \
            tokens_after >= recipe.total_tokens > tokens_before
    for index, step in enumerate(recipe.checkpoints):
        end = recipe.checkpoints[index + 1].from_tokens if index + 1 < len(recipe.checkpoints) else math.inf
        low, high = max(tokens_before, step.from_tokens), min(tokens_after, end)
        if low >= high:
            continue
        # a multiple of every_tokens (counted from this step's start) in (low, high]
        if (high - step.from_tokens) // step.every_tokens > (low - step.from_tokens) // step.every_tokens:
            return True
    return tokens_after >= recipe.total_tokens > tokens_before


def validation_due(tokens_before: int, tokens_after: int, recipe: PretrainSection) -> bool:
    """Whether a step crossed a validation time: every `eval_every_tokens` (default: a tenth of the run) and at the
    end."""
    every = recipe.eval_every_tokens or max(recipe.total_tokens // 10, 1)
    return tokens_after // every > tokens_before // every or tokens_after >= recipe.total_tokens > tokens_before
