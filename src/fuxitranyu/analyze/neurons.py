"""Neuron importance per language, layer and component (paper 6.1, Figures 4 and 5).

A neuron is an output unit i of a tracked module (hooks.py), h_i its output over a sentence's positions. Zeroing
h_i changes the sentence's loss by ΔL; to first order (paper eq. 2) |ΔL| = |∂L/∂h_i · h_i|. Exactly:

    L_s        = mean over the predicted tokens of sentence s of the next-token cross-entropy
    Φ_s(i)     = | Σ_t ∂L_s/∂h_{s,t,i} · h_{s,t,i} |         t over the sentence's real tokens
    Φ_l(i)     = mean over the sentences s of language l of Φ_s(i)
    Φ_l(c, k)  = Σ_{i in component c of layer k} Φ_l(i)      (paper eq. 3)
    Φ_l(k)     = Σ_c Φ_l(c, k)                                (a layer, Figure 4)

The absolute value is taken per sentence, so that a unit that matters in opposite directions for two sentences is
not counted as unimportant. Languages are comparable because every language is measured on the same units of a
parallel set (the same number of sentences, the same meaning) and L_s is a mean over tokens, so a language whose
sentences take more tokens does not get a larger loss, hence larger gradients, for it. `share` divides each value
by the language's total over all components of all layers, which shows where importance sits regardless of its scale.

One forward and one backward per batch give every Φ_s(i) at once: the batch loss Σ_s L_s has ∂/∂h_s = ∂L_s/∂h_s,
because a sentence's states affect only its own loss (padding is on the right and masked).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console

from fuxitranyu.analyze.batches import Batch, Encoded, encode, run_batches
from fuxitranyu.analyze.hooks import DecoderLayout, ImportanceHooks, find_layout
from fuxitranyu.analyze.inputs import ParallelTexts
from fuxitranyu.errors import FuxiError


@dataclass
class NeuronImportance:
    model: str
    languages: tuple[str, ...]
    components: tuple[str, ...]
    importance: np.ndarray
    """(languages, layers, components): Φ_l(c, k) as in the module docstring."""
    sentences: np.ndarray
    """(languages,) sentences measured (those of at least 2 tokens)."""
    tokens: np.ndarray
    """(languages,) their tokens."""
    units: dict[str, np.ndarray]
    """Module path -> (languages, units) Φ_l(i)."""
    tokens_seen: int | None = None
    """Training tokens of a pretraining checkpoint."""

    @property
    def layer_importance(self) -> np.ndarray:
        """(languages, layers): Φ_l(k)."""
        return self.importance.sum(axis=2)

    @property
    def share(self) -> np.ndarray:
        """(languages, layers, components): each value over its language's total."""
        return self.importance / self.importance.sum(axis=(1, 2), keepdims=True)


def sentence_losses(logits: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """(B,) mean next-token cross-entropy over each sentence's predicted tokens, in fp32 at least.

    Computed on the (B·T, vocab) view of the logits with the targets shifted instead (the last position and padding
    ignored): slicing the logits would copy them, and their gradient, at vocabulary width."""
    batch, length, vocab = logits.shape
    targets = torch.full_like(input_ids, -100)
    targets[:, :-1] = input_ids[:, 1:].masked_fill(attention_mask[:, 1:] == 0, -100)  # position t predicts t+1
    dtype = torch.promote_types(logits.dtype, torch.float32)
    nll = F.cross_entropy(logits.reshape(batch * length, vocab).to(dtype), targets.reshape(-1), reduction="none")
    return nll.view(batch, length).sum(dim=1) / (targets != -100).sum(dim=1)


def neuron_importance(model: torch.nn.Module, tokenizer, texts: ParallelTexts, *, name: str, batch_tokens: int,
                      device: torch.device, console: Console | None = None,
                      layout: DecoderLayout | None = None) -> NeuronImportance:
    """Φ per language, layer and component of `model` on `texts` (see the module docstring)."""
    max_length = getattr(model.config.get_text_config(), "max_position_embeddings", None)
    encoded = encode(tokenizer, texts.by_language(), max_length)
    return importance_of_ids(model, encoded, texts.languages, name=name, batch_tokens=batch_tokens, device=device,
                             console=console, layout=layout)


def importance_of_ids(model: torch.nn.Module, encoded: Encoded, languages: tuple[str, ...], *, name: str,
                      batch_tokens: int, device: torch.device, console: Console | None = None,
                      layout: DecoderLayout | None = None) -> NeuronImportance:
    """`neuron_importance` on sentences already tokenized (`encoded.language` indexes `languages`)."""
    layout = layout or find_layout(model)
    encoded = encoded.longer_than(1)
    if not encoded.ids:
        raise FuxiError(f"{name}: no sentence has the two tokens a loss needs")
    hooks = ImportanceHooks(layout, len(languages))

    def step(batch: Batch) -> None:
        hooks.start(batch.language, batch.attention_mask)
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False).logits
        sentence_losses(logits, batch.input_ids, batch.attention_mask).sum().backward()
        hooks.commit()

    frozen = [p.requires_grad for p in model.parameters()]
    model.requires_grad_(False)
    try:
        with torch.enable_grad(), hooks.attached(model):
            run_batches(encoded, batch_tokens, step, device, f"neurons {name}", console)
    finally:
        for parameter, flag in zip(model.parameters(), frozen):
            parameter.requires_grad_(flag)
    sentences = np.array(encoded.sentences_per_language(len(languages)), dtype=np.float64)
    return _aggregate(hooks, layout, languages, name, sentences,
                      np.array(encoded.tokens_per_language(len(languages)), dtype=np.int64))


def _aggregate(hooks: ImportanceHooks, layout: DecoderLayout, languages: tuple[str, ...], name: str,
               sentences: np.ndarray, tokens: np.ndarray) -> NeuronImportance:
    """Per-unit totals -> means per sentence, summed per component."""
    per_sentence = np.where(sentences > 0, sentences, np.nan)[:, None]
    importance = np.zeros((len(languages), len(layout.layers), len(layout.components)))
    units = {}
    for tracked, totals in zip(layout.modules, hooks.totals):
        if totals is None:
            raise FuxiError(f"{name}: {tracked.path} received no gradient (its output does not reach the loss)")
        totals = totals.cpu()
        if tracked.unit_component is None:
            by_component = totals.sum(dim=1, keepdim=True)
        else:
            by_component = torch.zeros(len(tracked.components), totals.shape[0], dtype=totals.dtype)
            by_component.index_put_((tracked.unit_component,), totals.T, accumulate=True)  # see ImportanceHooks
            by_component = by_component.T
        for column, component in enumerate(tracked.components):
            importance[:, tracked.layer, layout.components.index(component)] += by_component[:, column].numpy()
        units[tracked.path] = totals.numpy() / per_sentence
    return NeuronImportance(name, tuple(languages), layout.components, importance / per_sentence[:, :, None],
                            sentences.astype(np.int64), tokens, units)
