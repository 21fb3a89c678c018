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
    """Grouped horizontal bars: a row per language (top to bottom in table order), a bar per model (ours), a dashed
    line at each model's mean. Languages on the vertical axis keep their labels readable at 48 languages: the
    figure grows downwards, never wider than the report's page."""
    plt = _pyplot()
    count = max(len(models), 1)
    height = 0.8 / count
    fig, ax = plt.subplots(figsize=(7.5, 1.4 + len(table.languages) * max(0.22, 0.12 * count)))
    for i, model in enumerate(models):
        values = table.rows[model]
        ys = [j + (i - (count - 1) / 2) * height for j in range(len(table.languages))]
        bars = ax.barh(ys, [values.get(lang, 0.0) for lang in table.languages], height, label=model)
        if values:
            ax.axvline(sum(values.values()) / len(values), color=bars.patches[0].get_facecolor(), ls="--", lw=1)
    ax.set_yticks(range(len(table.languages)), table.languages)
    ax.set_ylim(len(table.languages) - 0.5, -0.5)
    better = "higher is better" if table.higher_is_better else "lower is better"
    ax.set_xlabel(f"{table.metric} ({better})")
    ax.set_title(f"{table.benchmark} per language")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize="small", loc="best")
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
    plt.close(fig)


def plot_curves(points: dict[str, dict[int, float]], title: str, ylabel: str, path: Path) -> None:
    """One line per language: `points[language]` = {tokens seen: value}."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for language, series in sorted(points.items()):
        tokens = sorted(series)
        ax.plot(tokens, [series[t] for t in tokens], marker="o", ms=3, lw=1, label=language)
    ax.set_xlabel("tokens seen")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize="small", ncol=1 + len(points) // 17, loc="center left", bbox_to_anchor=(1.0, 0.5))
    save_figure(fig, path, dpi=120, bbox_inches="tight")  # the legend beside the axes
    plt.close(fig)
