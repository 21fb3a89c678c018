"""How evenly a model performs across languages: the statistics every results table carries beside its average.

For one benchmark and one model: the worst and best language, the range (best − worst), the standard deviation
across languages (population σ: the languages are the whole set being described, not a sample), the coefficient
of variation (σ / |mean|, comparable between metrics of different scale), and the languages below the mean by more
than one σ (worse than the mean by more than σ where lower is better, e.g. bits per byte).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass


@dataclass(frozen=True)
class Balance:
    mean: float
    worst: str
    best: str
    range: float
    std: float
    cv: float | None
    """None when the mean is 0."""
    lagging: tuple[str, ...]
    """Languages worse than the mean by more than one σ."""

    def as_dict(self) -> dict:
        return {"mean": self.mean, "worst": self.worst, "best": self.best, "range": self.range, "std": self.std,
                "cv": self.cv, "lagging": list(self.lagging)}


def balance(values: dict[str, float], higher_is_better: bool = True) -> Balance | None:
    """Balance of `{language: value}`; None for fewer than two languages."""
    if len(values) < 2:
        return None
    mean = statistics.fmean(values.values())
    std = statistics.pstdev(values.values())
    ordered = sorted(values, key=values.__getitem__)
    worst, best = (ordered[0], ordered[-1]) if higher_is_better else (ordered[-1], ordered[0])
    sign = 1 if higher_is_better else -1
    lagging = tuple(lang for lang in values if sign * (values[lang] - mean) < -std)
    return Balance(mean, worst, best, values[ordered[-1]] - values[ordered[0]], std,
                   std / abs(mean) if mean else None, lagging)
