"""The `mix` section of a recipe: how many tokens of each language go into pretraining, and how they are packed."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from fuxitranyu.config_base import Count, LanguageList, Section, canonical_label


class ReplaySection(Section):
    """A share of the budget for languages a base model already knows, so that continued pretraining on new
    languages does not make it forget them (docs/adapt.md)."""

    languages: LanguageList
    """The replayed languages (not among `mix.languages`, which are then the targets)."""
    share: float = Field(gt=0, lt=1)
    """Fraction of the token budget they get together; the targets share the rest by `mix.strategy`."""
    strategy: Literal["proportional", "temperature", "unimax"] = "proportional"
    """How the replay share is divided among the replayed languages (`mix.alpha` / `mix.max_epochs` apply)."""


class MixSection(Section):
    strategy: Literal["proportional", "temperature", "unimax", "manual"] = "unimax"
    """How the token budget is shared between languages. `proportional`: as in the data; `temperature`: shares
    ∝ p^alpha (XLM-R, mT5); `unimax`: equal shares, no language repeated more than `max_epochs` times, the rest
    redistributed (Chung et al. 2023); `manual`: the `ratios` below (the paper's "manually controlled ratios")."""
    context_length: int = Field(256, gt=0)
    """Tokens per packed training sequence (paper 3.5: 4096). The mix owns it: pretraining reads it from the mix's
    index.json."""
    total_tokens: Count | None = None
    """Token budget of the mix (default: pretrain.total_tokens)."""
    alpha: float = Field(0.3, gt=0, le=1)
    """temperature: exponent applied to the data shares (XLM-R: 0.3, mT5: 0.3)."""
    max_epochs: float = Field(4.0, gt=0)
    """unimax: no language is repeated more than this; other strategies warn above it."""
    ratios: dict[str, float] = {}
    """manual: share of the budget per language label; they must sum to 1."""
    languages: LanguageList = []
    """Languages to mix (empty: every language the data stage produced); with `replay`, the target languages."""
    replay: ReplaySection | None = None
    """Languages replayed at a fixed share beside the targets (continued pretraining of a base model)."""
    validation_documents: int = Field(16, ge=0)
    """Documents per language kept out of the training shards for validation (never more than a tenth of a
    language's documents); pretraining reports the loss on them per language."""
    sequences_per_shard: int = Field(16_384, gt=0)
    """Packed sequences per shard file."""
    batch_documents: int = Field(1024, gt=0)
    """Documents per tokenizer call (tokenizers parallelises inside a batch)."""

    @field_validator("ratios")
    @classmethod
    def _ratio_labels(cls, ratios: dict[str, float]) -> dict[str, float]:
        for name, share in ratios.items():
            canonical_label(name, "ratios")
            if share < 0:
                raise ValueError(f"ratios: {name} has a negative share {share}")
        return ratios

    @model_validator(mode="after")
    def _replay_beside_targets(self) -> MixSection:
        if self.replay is not None:
            if not self.languages:
                raise ValueError("mix.replay needs mix.languages: the target languages the rest of the budget goes to")
            both = sorted(set(self.languages) & set(self.replay.languages))
            if both:
                raise ValueError(f"mix.replay.languages and mix.languages share {', '.join(both)}: a language is "
                                 f"either a target or replayed")
            if not self.replay.languages:
                raise ValueError("mix.replay.languages is empty: name the languages to replay")
        return self

    @model_validator(mode="after")
    def _manual_needs_ratios(self) -> MixSection:
        if self.strategy == "manual":
            total = sum(self.ratios.values())
            if not self.ratios or abs(total - 1) > 1e-6:
                raise ValueError(f"manual strategy: ratios must sum to 1 (they sum to {total:.6g})")
        return self
