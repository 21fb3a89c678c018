"""The report's figures, drawn with matplotlib (Agg) into PNG bytes."""

from __future__ import annotations

import io

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(figure)
    return buffer.getvalue()


def bars(labels: list[str], series: dict[str, list[float]], ylabel: str, log: bool = False,
         errors: dict[str, list[float]] | None = None) -> bytes:
    """Grouped horizontal bars: a row per label (top to bottom), a bar per series; `errors` draws ± error bars per
    series. Labels on the vertical axis stay readable at 48 languages: the figure grows downwards, never wider than
    the report's page."""
    plt = _pyplot()
    count = max(len(series), 1)
    figure, axis = plt.subplots(figsize=(7.5, 1.2 + len(labels) * max(0.2, 0.11 * count)))
    height = 0.8 / count
    y = np.arange(len(labels))
    for i, (name, values) in enumerate(series.items()):
        axis.barh(y + i * height - 0.4 + height / 2, values, height, label=name,
                  xerr=(errors or {}).get(name), capsize=2 if errors else 0)
    axis.set_yticks(y, labels, fontsize=8)
    axis.set_ylim(len(labels) - 0.5, -0.5)
    axis.set_xlabel(ylabel)
    if log:
        axis.set_xscale("log")
    if len(series) > 1:
        axis.legend(fontsize=8)
    axis.grid(axis="x", alpha=0.3)
    return png(figure)


def lines(curves: dict[str, tuple[list[float], list[float]]], xlabel: str, ylabel: str,
          reference: tuple[str, float] | None = None) -> bytes:
    """One line per curve (x, y); an optional horizontal reference line (e.g. the unigram entropy)."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(7.5, 3.8))
    for name, (x, y) in curves.items():
        axis.plot(x, y, label=name, linewidth=1.4 if name in ("mean", "loss") else 0.9)
    if reference is not None:
        axis.axhline(reference[1], color="grey", linestyle="--", linewidth=1)
        axis.annotate(reference[0], (axis.get_xlim()[0], reference[1]), fontsize=8, color="grey",
                      xytext=(4, 3), textcoords="offset points")
    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel)
    axis.grid(alpha=0.3)
    if 1 < len(curves) <= 16:
        axis.legend(fontsize=7, ncol=2)
    return png(figure)


def smooth(values: list[float], window: int) -> list[float]:
    """Trailing mean over `window` points (fewer at the start)."""
    data = np.asarray(values, dtype=float)
    sums = np.cumsum(np.insert(data, 0, 0.0))
    counts = np.minimum(np.arange(1, len(data) + 1), window)
    return list((sums[1:] - sums[np.arange(1, len(data) + 1) - counts]) / counts)
