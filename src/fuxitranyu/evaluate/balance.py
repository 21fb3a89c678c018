"""How evenly a model performs across languages: the statistics every results table carries beside its average.

For one benchmark and one model: the worst and best languages (every language that ties for the place), the range
(best − worst), the standard deviation across languages (population σ: the languages are the whole set being
described, not a sample), the coefficient of variation (σ / |mean|, comparable between metrics of different scale),
and the languages below the mean by more than one σ (worse than the mean by more than σ where lower is better, e.g.
bits per byte).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass


@dataclass(frozen=True)
class Balance:
    mean: float
    worst: tuple[str, ...]
    best: tuple[str, ...]
    """Every language at the extreme: several when they tie (all of them when every value is the same)."""
    range: float
    std: float
    cv: float | None
    """None when the mean is 0."""
    lagging: tuple[str, ...]
    """Languages worse than the mean by more than one σ."""


def balance(values: dict[str, float], higher_is_better: bool = True) -> Balance | None:
    """Balance of `{language: value}`; None for fewer than two languages."""
    if len(values) < 2:
        return None
    mean = statistics.fmean(values.values())
    std = statistics.pstdev(values.values())
    low, high = min(values.values()), max(values.values())
    lowest, highest = _at(values, low), _at(values, high)
    worst, best = (lowest, highest) if higher_is_better else (highest, lowest)
    sign = 1 if higher_is_better else -1
    lagging = tuple(lang for lang in values if sign * (values[lang] - mean) < -std)
    return Balance(mean, worst, best, high - low, std, std / abs(mean) if mean else None, lagging)


def _at(values: dict[str, float], extreme: float) -> tuple[str, ...]:
    return tuple(lang for lang, value in values.items() if math.isclose(value, extreme, rel_tol=1e-9, abs_tol=1e-12))


def tied(languages: tuple[str, ...], total: int) -> str:
    """A place in a table: `th`, `de = fr` for a tie, `all equal` when every language ties."""
    return "all equal" if len(languages) == total else " = ".join(languages)
