"""PNG plots of evaluation results: per-language bars for each table, per-language curves across checkpoints."""

from __future__ import annotations

from pathlib import Path

from fuxitranyu.evaluate.results import Table
from fuxitranyu.io import save_figure


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_table(table: Table, models: list[str], path: Path) -> None:
    """Grouped bars: a group per language, a bar per model (ours), a dashed line at each model's mean."""
    plt = _pyplot()
    width = 0.8 / max(len(models), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.45 * len(table.languages) * max(len(models), 1) + 2), 3.6))
    for i, model in enumerate(models):
        values = table.rows[model]
        xs = [j + (i - (len(models) - 1) / 2) * width for j in range(len(table.languages))]
        bars = ax.bar(xs, [values.get(lang, 0.0) for lang in table.languages], width, label=model)
        if values:
            ax.axhline(sum(values.values()) / len(values), color=bars.patches[0].get_facecolor(), ls="--", lw=1)
    ax.set_xticks(range(len(table.languages)), table.languages, rotation=90 if len(table.languages) > 20 else 0)
    better = "higher is better" if table.higher_is_better else "lower is better"
    ax.set_title(f"{table.benchmark}: {table.metric} per language ({better})")
    ax.legend(fontsize="small")
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
    plt.close(fig)


def plot_curves(points: dict[str, dict[int, float]], title: str, ylabel: str, path: Path) -> None:
    """One line per language: `points[language]` = {tokens seen: value}."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for language, series in sorted(points.items()):
        tokens = sorted(series)
        ax.plot(tokens, [series[t] for t in tokens], marker="o", ms=3, lw=1, label=language)
    ax.set_xlabel("tokens seen")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize="x-small", ncol=2 if len(points) > 12 else 1, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
    plt.close(fig)
