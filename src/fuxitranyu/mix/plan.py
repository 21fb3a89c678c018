"""The balanced sampling plan: tokens and epochs per language for a token budget (paper sections 1 and 3.1).

The paper balances its 43 languages by "manually controlled sampling ratios"; the planner offers that and the
standard alternatives, and shows the consequences (how often each language repeats) before any compute is spent.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from fuxitranyu.errors import FuxiError
from fuxitranyu.mix.config import MixSection


@dataclass(frozen=True)
class LanguagePlan:
    language: str
    available: int
    """Tokens of this language in the data (counted with the trained tokenizer)."""
    tokens: int
    """Tokens of this language in the mix."""
    epochs: float
    """tokens / available: how many times the language's data is seen."""
    share: float
    """tokens / budget."""
    capped: bool
    """unimax: the language got less than an equal share because of the epoch cap."""
    role: str = "mix"
    """`target` or `replay` in a plan with `mix.replay`; `mix` otherwise."""


@dataclass(frozen=True)
class MixPlan:
    strategy: str
    budget: int
    languages: tuple[LanguagePlan, ...]
    warnings: tuple[str, ...]

    def as_dict(self) -> dict:
        return {"strategy": self.strategy, "budget": self.budget, "warnings": list(self.warnings),
                "languages": [asdict(lang) for lang in self.languages]}


def _proportional(available: dict[str, int], budget: int) -> dict[str, float]:
    total = sum(available.values())
    return {lang: budget * n / total for lang, n in available.items()}


def _temperature(available: dict[str, int], budget: int, alpha: float) -> dict[str, float]:
    total = sum(available.values())
    weights = {lang: (n / total) ** alpha for lang, n in available.items()}
    norm = sum(weights.values())
    return {lang: budget * w / norm for lang, w in weights.items()}


def _unimax(available: dict[str, int], budget: int, max_epochs: float) -> tuple[dict[str, float], set[str]]:
    """Chung et al. (2023): visit languages from the smallest; each gets an equal share of what is left, but at
    most `max_epochs` passes over its data; what a capped language cannot take goes to the larger ones."""
    ceiling = max_epochs * sum(available.values())
    if budget > ceiling:
        raise FuxiError(f"mix: a budget of {budget:,} tokens needs more than {max_epochs:g} epochs of the data "
                        f"({sum(available.values()):,} tokens); the most this data allows is {int(ceiling):,}. "
                        f"Lower the budget or raise mix.max_epochs")
    remaining, tokens, capped = float(budget), {}, set()
    ordered = sorted(available, key=lambda lang: (available[lang], lang))
    for index, lang in enumerate(ordered):
        equal_share = remaining / (len(ordered) - index)
        limit = max_epochs * available[lang]
        tokens[lang] = min(equal_share, limit)
        if limit < equal_share:
            capped.add(lang)
        remaining -= tokens[lang]
    return tokens, capped


def _manual(available: dict[str, int], budget: int, ratios: dict[str, float]) -> dict[str, float]:
    missing = sorted(lang for lang, share in ratios.items() if share > 0 and available.get(lang, 0) == 0)
    if missing:
        raise FuxiError(f"mix: ratios give a share to {', '.join(missing)}, but the data has no tokens of "
                        f"{'them' if len(missing) > 1 else 'it'}")
    unlisted = sorted(set(available) - set(ratios))
    if unlisted:
        raise FuxiError(f"mix: the data has {', '.join(unlisted)}, which ratios do not mention; give them a share "
                        f"(0 to leave them out) or restrict mix.languages")
    return {lang: budget * share for lang, share in ratios.items()}


def _with_replay(available: dict[str, int], recipe: MixSection, budget: int) -> MixPlan:
    """The targets planned by `mix.strategy` on the budget left after the replay share, the replayed languages by
    `replay.strategy` on their share; one plan, each row marked with its role."""
    replay = recipe.replay
    replayed = round(replay.share * budget)
    parts = [(plan_mix(available, recipe.model_copy(update={"replay": None}), budget - replayed), "target"),
             (plan_mix(available, recipe.model_copy(update={"replay": None, "languages": replay.languages,
                                                             "strategy": replay.strategy}), replayed), "replay")]
    rows = tuple(replace(row, share=row.tokens / budget, role=role) for part, role in parts for row in part.languages)
    return MixPlan(f"{recipe.strategy} on the targets + {replay.share:.0%} replay ({replay.strategy})", budget, rows,
                   tuple(warning for part, _ in parts for warning in part.warnings))


def plan_mix(available: dict[str, int], recipe: MixSection, budget: int) -> MixPlan:
    """Tokens and epochs per language. Raises `FuxiError` when the plan cannot be met; warns (in the plan) when a
    language would be repeated beyond `max_epochs`."""
    if recipe.replay is not None:
        return _with_replay(available, recipe, budget)
    if budget <= 0:
        raise FuxiError(f"mix: the token budget must be positive, got {budget}")
    if recipe.languages:
        absent = sorted(set(recipe.languages) - {lang for lang, n in available.items() if n > 0})
        if absent:
            raise FuxiError(f"mix: languages {', '.join(absent)} are in mix.languages but the data has no tokens "
                            f"of them")
        available = {lang: available[lang] for lang in recipe.languages}
    available = {lang: n for lang, n in sorted(available.items()) if n > 0}
    if not available:
        raise FuxiError("mix: the data has no tokens at all")
    capped: set[str] = set()
    if recipe.strategy == "proportional":
        raw = _proportional(available, budget)
    elif recipe.strategy == "temperature":
        raw = _temperature(available, budget, recipe.alpha)
    elif recipe.strategy == "unimax":
        raw, capped = _unimax(available, budget, recipe.max_epochs)
    else:
        raw = _manual(available, budget, recipe.ratios)
    tokens = _round_to_budget(raw, budget)
    warnings = []
    rows = []
    for lang in sorted(tokens, key=lambda lang: (-tokens[lang], lang)):
        epochs = tokens[lang] / available[lang]
        if epochs > recipe.max_epochs + 1e-9:
            warnings.append(f"{lang}: {epochs:.1f} epochs over its {available[lang]:,} tokens "
                            f"(more than mix.max_epochs={recipe.max_epochs:g})")
        rows.append(LanguagePlan(lang, available[lang], tokens[lang], epochs, tokens[lang] / budget, lang in capped))
    return MixPlan(recipe.strategy, budget, tuple(rows), tuple(warnings))


def _round_to_budget(raw: dict[str, float], budget: int) -> dict[str, int]:
    """Whole tokens that sum exactly to the budget: floor, then hand the remainder to the largest fractions."""
    floors = {lang: int(value) for lang, value in raw.items()}
    short = budget - sum(floors.values())
    by_fraction = sorted(raw, key=lambda lang: (floors[lang] - raw[lang], lang))
    for lang in by_fraction[:max(short, 0)]:
        floors[lang] += 1
    return floors
