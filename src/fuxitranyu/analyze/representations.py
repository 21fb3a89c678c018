"""Representation similarity between languages per layer (paper 6.2, Figures 3 and 6).

At every point p of the model (`emb`, the embedding output as the first layer receives it, then the output of each
decoder layer, the last one after the final norm: the states transformers' `output_hidden_states` returns):

    v_l(p)        = mean over the sentences s of language l of h_p(last token of s)
    sim(l, m, p)  = v_l(p) · v_m(p) / (|v_l(p)| |v_m(p)|)
    mean(p)       = mean of sim(l, m, p) over the pairs l ≠ m (Figure 6)

Every language is read on the same units of a parallel set, so the texts mean the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from rich.console import Console

from fuxitranyu.analyze.batches import Batch, encode, run_batches
from fuxitranyu.analyze.hooks import DecoderLayout, LastTokenHooks, find_layout
from fuxitranyu.analyze.inputs import ParallelTexts


@dataclass
class RepresentationSimilarity:
    model: str
    languages: tuple[str, ...]
    points: tuple[str, ...]
    """`emb`, then the decoder layers `0` … `N-1` (the last one after the final norm)."""
    similarity: np.ndarray
    """(points, languages, languages) cosine similarity of the language means."""
    sentences: np.ndarray
    """(languages,)"""
    tokens_seen: int | None = None
    """Training tokens of a pretraining checkpoint."""

    @property
    def mean_similarity(self) -> np.ndarray:
        """(points,) mean over the pairs of different languages."""
        count = len(self.languages)
        if count < 2:
            return np.full(len(self.points), np.nan)
        off_diagonal = ~np.eye(count, dtype=bool)
        return self.similarity[:, off_diagonal].mean(axis=1)


def cosine_matrix(means: torch.Tensor) -> torch.Tensor:
    """(..., languages, hidden) -> (..., languages, languages)."""
    unit = means / means.norm(dim=-1, keepdim=True)
    return unit @ unit.transpose(-1, -2)


@torch.no_grad()
def representation_similarity(model: torch.nn.Module, tokenizer, texts: ParallelTexts, *, name: str,
                              batch_tokens: int, device: torch.device, console: Console | None = None,
                              layout: DecoderLayout | None = None) -> RepresentationSimilarity:
    """Cosine similarity of the languages' mean last-token states at every point of `model` (module docstring)."""
    layout = layout or find_layout(model)
    max_length = getattr(model.config.get_text_config(), "max_position_embeddings", None)
    encoded = encode(tokenizer, texts.by_language(), max_length)
    hooks = LastTokenHooks(layout, len(texts.languages))

    def step(batch: Batch) -> None:
        hooks.start(batch.language, batch.last_index)
        # the backbone alone: the LM head's (B, T, vocab) logits are not needed here
        model.base_model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False)
        hooks.commit()

    with hooks.attached():
        run_batches(encoded, batch_tokens, step, device, f"representations {name}", console)
    means = hooks.sums.cpu() / hooks.counts[None, :, None]
    return RepresentationSimilarity(name, texts.languages, layout.points, cosine_matrix(means).numpy(),
                                    hooks.counts.numpy().astype(np.int64))
