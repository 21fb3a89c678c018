"""Figures in the style of the paper's Figures 3–6, as PNG. matplotlib's object API (no pyplot): no global backend
or figure state is touched."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fuxitranyu.analyze.neurons import NeuronImportance
from fuxitranyu.analyze.representations import RepresentationSimilarity
from fuxitranyu.errors import FuxiError
from fuxitranyu.io import save_figure


def _figure(width: float, height: float):
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise FuxiError("figures need matplotlib (pip install 'fuxitranyu[plot]')") from None
    return Figure(figsize=(width, height), layout="constrained")  # titles, labels and colour bars never overlap


def matplotlib_missing() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return True
    return False


def _heatmap(ax, values: np.ndarray, rows: Sequence[str], columns: Sequence[str], cmap: str, thin_columns: bool = True,
             **limits):
    """`thin_columns`: label every k-th column past 16 (layers, checkpoints); languages are all labelled."""
    image = ax.imshow(values, aspect="auto", cmap=cmap, interpolation="nearest", **limits)
    ax.set_yticks(range(len(rows)), rows)
    step = max(1, len(columns) // 16) if thin_columns else 1
    ax.set_xticks(range(0, len(columns), step), [columns[i] for i in range(0, len(columns), step)])
    return image


def layer_importance_figure(result: NeuronImportance, path: Path) -> None:
    """Figure 4: importance of each layer (x) for each language (y)."""
    values = result.layer_importance
    layers = [str(k) for k in range(values.shape[1])]
    figure = _figure(max(5.0, 0.25 * len(layers) + 2), max(3.0, 0.3 * len(result.languages) + 1))
    ax = figure.subplots()
    image = _heatmap(ax, values, result.languages, layers, "viridis")
    ax.set_xlabel("layer")
    ax.set_title(f"{result.model}: importance of layers")
    figure.colorbar(image, ax=ax, label="importance")
    save_figure(figure, path, dpi=150, bbox_inches="tight")


def component_importance_figure(result: NeuronImportance, path: Path) -> None:
    """Figure 5: per language, the importance of each component (y) in each layer (x), on one colour scale."""
    count = len(result.languages)
    columns = min(count, 4)
    rows = -(-count // columns)
    layers = [str(k) for k in range(result.importance.shape[1])]
    figure = _figure(1.55 * columns + 1.0, 1.5 * rows + 0.6)
    axes = np.atleast_1d(figure.subplots(rows, columns, squeeze=False)).ravel()
    top = float(np.nanmax(result.importance)) if np.isfinite(result.importance).any() else 1.0
    image = None
    for a, ax in enumerate(axes):
        if a >= count:
            ax.set_axis_off()
            continue
        image = _heatmap(ax, result.importance[a].T, result.components if a % columns == 0 else [""] *
                         len(result.components), layers, "magma", vmin=0.0, vmax=top)
        ax.set_title(result.languages[a], fontsize=9)
        ax.tick_params(labelsize=7)
    figure.suptitle(f"{result.model}: importance of components")
    figure.colorbar(image, ax=list(axes), label="importance", shrink=0.8)
    save_figure(figure, path, dpi=150, bbox_inches="tight")


def similarity_heatmaps_figure(results: Sequence[RepresentationSimilarity], layer: int | None, path: Path) -> None:
    """Figure 3: the language × language similarity at one decoder layer (default: the middle one), one panel per
    model."""
    side = min(6.4, max(3.2, 0.14 * max(len(r.languages) for r in results) + 1.0))  # 7-point labels fit 48 rows
    across = len(results) if side * len(results) <= 6.6 else 1  # side by side while they fit the report's page
    figure = _figure(side * across + 0.8, side * -(-len(results) // across))
    axes = np.atleast_1d(figure.subplots(-(-len(results) // across), across, squeeze=False)).ravel()
    image = None
    for ax, result in zip(axes, results):
        layers = len(result.points) - 1
        chosen = layers // 2 if layer is None else range(layers)[layer]  # -1: the last (checked before)
        matrix = result.similarity[chosen + 1]  # points[0] is the embedding output
        image = _heatmap(ax, matrix, result.languages, result.languages, "RdYlBu_r", False, vmin=-1.0, vmax=1.0)
        ax.tick_params(axis="x", labelrotation=90, labelsize=7)
        ax.tick_params(axis="y", labelsize=7)
        ax.set_title(f"{result.model}, layer {chosen}", fontsize=10)
    figure.colorbar(image, ax=list(axes), label="cosine similarity", shrink=0.8 if across == len(results) else 0.4)
    save_figure(figure, path, dpi=150, bbox_inches="tight")


def mean_similarity_figure(results: Sequence[RepresentationSimilarity], path: Path, title: str) -> None:
    """Figure 6: mean similarity between languages at each point (emb, layer 0, ...), a line per model; lines of
    pretraining checkpoints are coloured by tokens seen."""
    figure = _figure(7.0, 4.0)
    ax = figure.subplots()
    checkpoints = [r for r in results if r.tokens_seen is not None]
    most = max((r.tokens_seen for r in checkpoints), default=1) or 1
    from matplotlib import colormaps

    for result in results:
        # viridis up to 0.8: its last tenth is a pale yellow that vanishes on white
        color = colormaps["viridis"](0.8 * result.tokens_seen / most) if result.tokens_seen is not None else None
        label = result.model if result.tokens_seen is None else f"{result.model} ({result.tokens_seen:,} tokens)"
        ax.plot(range(len(result.points)), result.mean_similarity, marker="o", markersize=3, label=label,
                color=color)
    longest = max(results, key=lambda r: len(r.points))
    step = max(1, len(longest.points) // 16)
    ax.set_xticks(range(0, len(longest.points), step), longest.points[::step])
    ax.set_xlabel("layer (emb = embedding output)")
    ax.set_ylabel("mean cosine similarity")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(frameon=False, fontsize=7)
    save_figure(figure, path, dpi=150, bbox_inches="tight")


def importance_evolution_figure(results: Sequence[NeuronImportance], path: Path) -> None:
    """Layer importance (mean over languages) at each checkpoint (x: tokens seen), one row per layer."""
    ordered = sorted(results, key=lambda r: r.tokens_seen)
    values = np.stack([r.layer_importance.mean(axis=0) for r in ordered], axis=1)  # (layers, checkpoints)
    figure = _figure(max(5.0, 0.5 * len(ordered) + 2), max(3.0, 0.25 * values.shape[0] + 1))
    ax = figure.subplots()
    image = _heatmap(ax, values, [str(k) for k in range(values.shape[0])],
                     [f"{r.tokens_seen:,}" for r in ordered], "viridis")
    ax.invert_yaxis()
    ax.tick_params(axis="x", labelrotation=45, labelsize=7)
    ax.set_xlabel("training tokens seen")
    ax.set_ylabel("layer")
    ax.set_title("importance of layers across checkpoints (mean over languages)")
    figure.colorbar(image, ax=ax, label="importance")
    save_figure(figure, path, dpi=150, bbox_inches="tight")
