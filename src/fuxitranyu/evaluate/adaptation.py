"""Gain against forgetting: bits per byte per language of an adapted model beside the base model it continued.

Bits per byte compares models whose tokenizers differ (an extended vocabulary changes how many tokens a text takes,
not how many bytes it has). Per language: the base's and the adapted model's bits per byte and the relative change
(negative: better); the target languages (what the adaptation was for) are marked, and the summary gives the mean
change on the targets (the gain) and on the others (forgetting when positive), with the worst of the others.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

from fuxitranyu.evaluate.results import ResultRow
from fuxitranyu.io import atomic_write_json, atomic_write_text

BASE = "base"
"""The `evaluate.models` entry that means `model.init_from`."""
METRIC = "bits_per_byte"


@dataclass(frozen=True)
class LanguageChange:
    language: str
    target: bool
    base: float
    adapted: float

    @property
    def change(self) -> float:
        """Relative change of bits per byte: (adapted − base) / base; negative is a gain."""
        return (self.adapted - self.base) / self.base


def changes(rows: list[ResultRow], adapted: str, targets: set[str]) -> list[LanguageChange]:
    """Per language measured for both the base and `adapted`, targets first."""
    values: dict[str, dict[str, float]] = {}
    for row in rows:
        if row.metric == METRIC and row.model in (BASE, adapted):
            values.setdefault(row.language, {})[row.model] = row.value
    found = [LanguageChange(lang, lang in targets, pair[BASE], pair[adapted])
             for lang, pair in values.items() if len(pair) == 2]
    return sorted(found, key=lambda c: (not c.target, c.language))


def summary(found: list[LanguageChange]) -> dict:
    def mean(items: list[LanguageChange]) -> float | None:
        return round(statistics.fmean(c.change for c in items), 4) if items else None

    others = [c for c in found if not c.target]
    worst = max(others, key=lambda c: c.change, default=None)
    return {"languages": len(found), "targets_mean_change": mean([c for c in found if c.target]),
            "others_mean_change": mean(others),
            "others_worst": {"language": worst.language, "change": round(worst.change, 4)} if worst else None}


def write_adaptation(rows: list[ResultRow], adapted: str, targets: set[str], out_dir: Path, name: str) -> dict:
    """`<name>.md` and `<name>.json` (the table and its summary) in `out_dir`, and `<name>.png` when matplotlib is
    there; returns the summary."""
    found = changes(rows, adapted, targets)
    result = {"model": adapted, "base": BASE, **summary(found)}
    lines = [f"Bits per byte, {BASE} → {adapted} (negative change: better)", "",
             "| language | role | base | adapted | change |", "|---|---|---:|---:|---:|"]
    lines += [f"| {c.language} | {'target' if c.target else 'other'} | {c.base:.3f} | {c.adapted:.3f} | "
              f"{100 * c.change:+.1f}% |" for c in found]
    atomic_write_text(out_dir / f"{name}.md", "\n".join(lines) + "\n")
    atomic_write_json(out_dir / f"{name}.json", {**result, "per_language": [
        {"language": c.language, "target": c.target, "base": c.base, "adapted": c.adapted,
         "change": round(c.change, 6)} for c in found]})
    if found:
        _plot(found, adapted, out_dir / f"{name}.png")
    return result


def _plot(found: list[LanguageChange], adapted: str, path: Path) -> None:
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        return
    from matplotlib.figure import Figure

    from fuxitranyu.io import save_figure

    figure = Figure(figsize=(7.5, 1.2 + 0.22 * len(found)), layout="constrained")
    axis = figure.subplots()
    colours = ["tab:green" if c.target else "tab:grey" for c in found]
    axis.barh(range(len(found)), [100 * c.change for c in found], color=colours)
    axis.set_yticks(range(len(found)), [f"{c.language} ({'target' if c.target else 'other'})" for c in found])
    axis.set_ylim(len(found) - 0.5, -0.5)
    axis.axvline(0, color="black", lw=0.8)
    axis.set_xlabel("change of bits per byte, % (negative: better)")
    axis.set_title(f"{adapted} against the base model: gain on the targets, change on the others")
    axis.grid(axis="x", alpha=0.3)
    save_figure(figure, path, dpi=120)
