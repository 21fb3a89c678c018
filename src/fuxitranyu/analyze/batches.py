"""Sentences to padded batches under a token budget, and a loop that halves a batch the device cannot hold.

Sentences are tokenized as the model's tokenizer does by default; when it adds no BOS of its own and has one, the
BOS is put in front, so that the first word is predicted too and a sentence starts as a document does in training.
Batches take sentences longest first (the first batch is the largest, so memory runs out early if at all), as many
as fit `batch_tokens` padded tokens, and are padded on the right, which leaves every real position's computation as
it is without padding.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from fuxitranyu.errors import FuxiError


@dataclass(frozen=True)
class Encoded:
    """Token ids of every sentence with the index of its language."""

    ids: list[list[int]]
    language: list[int]
    truncated: int
    """Sentences cut at the model's context length."""
    pad_id: int

    def longer_than(self, tokens: int) -> Encoded:
        """Only the sentences of more than `tokens` tokens."""
        kept = [i for i, ids in enumerate(self.ids) if len(ids) > tokens]
        return Encoded([self.ids[i] for i in kept], [self.language[i] for i in kept], self.truncated, self.pad_id)

    def sentences_per_language(self, languages: int) -> list[int]:
        counts = [0] * languages
        for language in self.language:
            counts[language] += 1
        return counts

    def tokens_per_language(self, languages: int) -> list[int]:
        counts = [0] * languages
        for ids, language in zip(self.ids, self.language):
            counts[language] += len(ids)
        return counts


@dataclass(frozen=True)
class Batch:
    input_ids: torch.Tensor
    """(B, T) right-padded."""
    attention_mask: torch.Tensor
    """(B, T), 1 on real tokens."""
    language: torch.Tensor
    """(B,) language index of each sentence."""

    @property
    def last_index(self) -> torch.Tensor:
        return self.attention_mask.sum(dim=1) - 1


def encode(tokenizer, texts_by_language: Sequence[Sequence[str]], max_length: int | None) -> Encoded:
    """Tokenize every language's texts (`texts_by_language[i]` for language i)."""
    bos = tokenizer.bos_token_id
    adds_bos = bos is not None and tokenizer("a")["input_ids"][:1] == [bos]
    prefix = [] if adds_bos or bos is None else [bos]
    ids, language, truncated = [], [], 0
    for index, texts in enumerate(texts_by_language):
        for encoded in tokenizer(list(texts))["input_ids"]:
            encoded = prefix + list(encoded)
            if max_length is not None and len(encoded) > max_length:
                encoded, truncated = encoded[:max_length], truncated + 1
            ids.append(encoded)
            language.append(index)
    pad_id = next((i for i in (tokenizer.pad_token_id, tokenizer.eos_token_id, bos) if i is not None), 0)
    return Encoded(ids, language, truncated, pad_id)


def plan_batches(lengths: Sequence[int], batch_tokens: int) -> list[list[int]]:
    """Sentence indices per batch, longest first; a batch's size × its longest sentence stays within
    `batch_tokens` (a longer sentence goes alone)."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    for index in order:
        if batches and (len(batches[-1]) + 1) * lengths[batches[-1][0]] <= batch_tokens:
            batches[-1].append(index)
        else:
            batches.append([index])
    return batches


def collate(encoded: Encoded, indices: Sequence[int], device: torch.device) -> Batch:
    width = max(len(encoded.ids[i]) for i in indices)
    input_ids = torch.full((len(indices), width), encoded.pad_id, dtype=torch.long)
    mask = torch.zeros((len(indices), width), dtype=torch.long)
    for row, index in enumerate(indices):
        ids = encoded.ids[index]
        input_ids[row, :len(ids)] = torch.tensor(ids)
        mask[row, :len(ids)] = 1
    language = torch.tensor([encoded.language[i] for i in indices])
    return Batch(input_ids.to(device), mask.to(device), language.to(device))


def run_batches(encoded: Encoded, batch_tokens: int, step: Callable[[Batch], None], device: torch.device,
                description: str, console: Console | None = None) -> int:
    """Call `step` on every batch; a batch that runs out of device memory is split in two and retried. Returns
    how many times a batch was split."""
    pending = plan_batches([len(ids) for ids in encoded.ids], batch_tokens)
    splits = 0
    console = console or Console(stderr=True)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, disable=not console.is_terminal, transient=True) as progress:
        task = progress.add_task(description, total=len(encoded.ids))
        while pending:
            indices = pending.pop(0)
            try:
                step(collate(encoded, indices, device))
            except torch.OutOfMemoryError:
                if len(indices) == 1:
                    raise FuxiError(f"{description}: one sentence of {len(encoded.ids[indices[0]])} tokens does "
                                    f"not fit in device memory") from None
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                half = len(indices) // 2
                pending[:0] = [indices[:half], indices[half:]]
                splits += 1
                continue
            progress.advance(task, len(indices))
    return splits
