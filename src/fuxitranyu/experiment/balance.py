"""`fuxitranyu experiment balance`: does balance help?

The paper trains on "balanced data" without measuring what balance buys. This experiment does: the same corpus,
tokenizer, model size and token budget, pretrained under two or more mixing strategies (proportional to the data,
temperature sampling, UniMax) with several seeds each, evaluated and analysed the same way, and compared in one
report that puts the spread across seeds beside every difference between strategies.

Layout: the data and tokenizer stages are the recipe's own run (`runs/<name>/`, run once, reused if current); each
arm is a run directory of its own (`<output>/<strategy>/seed-<k>/`) whose `data` and `tokenizer` are links to the
shared ones, so the arms' fingerprints say exactly what they share. The arms run the model, mix, pretrain, evaluate,
analyze and report stages; the comparison reads only their artifacts.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from fuxitranyu.analyze.artifacts import IMPORTANCE_JSON, NEURONS, REPRESENTATIONS, SIMILARITY_JSON
from fuxitranyu.errors import FuxiError
from fuxitranyu.evaluate.artifacts import RESULTS
from fuxitranyu.experiment.arms import compare, format_mean_sd, mean_sd, run_arms
from fuxitranyu.io import atomic_write_json
from fuxitranyu.mix.artifacts import PLAN
from fuxitranyu.pipeline import finished_inputs
from fuxitranyu.recipe import Recipe, load_recipe
from fuxitranyu.report import figures
from fuxitranyu.report.chapters import json_lines
from fuxitranyu.report.document import Chapter, Figure, Table, Text, write_report
from fuxitranyu.stage import METRICS

SHARED_STAGES = ("data", "tokenizer")
ARM_STAGES = ("model", "mix", "pretrain", "evaluate", "analyze", "report")
"""The model stage runs per arm: a seed draws the initial weights as well as the mix and the batch order."""
STRATEGIES = ("proportional", "temperature", "unimax")


@dataclass(frozen=True)
class Arm:
    strategy: str
    seed: int
    recipe: Recipe

    @property
    def label(self) -> str:
        return f"{self.strategy}/seed-{self.seed}"


def arm_recipes(source: str, overrides: list[str], strategies: list[str], seeds: int, output: Path) -> list[Arm]:
    """One recipe per strategy and seed: the base recipe with only the mix strategy, the seed and the run directory
    changed; post-training is left out (the question is about pretraining data), the evaluation and the analyses
    look at the pretrained model alone."""
    base = load_recipe(source, overrides)
    if base.evaluate is None:
        raise FuxiError(f"recipe {base.name} has no evaluate section; the balance experiment compares the arms on "
                        f"its tasks (add `evaluate: {{suite: local}}`)")
    unknown = [name for name in strategies if name not in STRATEGIES]
    if unknown or len(set(strategies)) < 2:
        raise FuxiError(f"the experiment needs two or more different strategies among {', '.join(STRATEGIES)}; "
                        f"got {', '.join(strategies) or 'none'}")
    if seeds < 1:
        raise FuxiError(f"seeds must be at least 1, got {seeds}")
    fixed = ["sft=null", "dpo=null", "evaluate.models=[pretrain]", "evaluate.chat_models=[]"]
    if base.analyze is not None:
        fixed += ["analyze.models=[pretrain]", "analyze.checkpoints=0"]
    if base.report is None:
        fixed.append("report={}")
    arms = []
    for strategy in strategies:
        for seed in range(base.seed, base.seed + seeds):
            directory = output / strategy / f"seed-{seed}"
            recipe = load_recipe(source, [*overrides, *fixed, f"mix.strategy={strategy}", f"seed={seed}",
                                          f"output_dir={directory}", f"name={base.name}-{strategy}-{seed}"])
            arms.append(Arm(strategy, seed, recipe))
    return arms


def run_balance(source: str, overrides: list[str], strategies: list[str], seeds: int, output: Path,
                console: Console, verbose: bool = False) -> Path:
    """Run the shared stages, every arm, then write the comparison; returns the comparison page."""
    from fuxitranyu.pipeline import run_pipeline

    base = load_recipe(source, overrides)
    arms = arm_recipes(source, overrides, strategies, seeds, output)
    console.print(f"[bold]balance experiment[/]: {len(strategies)} strategies x {seeds} seeds into {output}; "
                  f"shared data and tokenizer in {base.run_dir}")
    run_pipeline(base, only=list(SHARED_STAGES), console=console, verbose=verbose)
    run_arms(arms, base.run_dir, SHARED_STAGES, ARM_STAGES, console, verbose)
    page = write_comparison([collect(arm) for arm in arms], output)
    console.print(f"[bold]balance experiment[/]: {page}")
    return page


@dataclass
class ArmResult:
    """What one trained arm measured, read from its artifacts."""

    strategy: str
    seed: int
    shares: dict[str, float]
    """Share of the pretraining tokens per language (the mix plan)."""
    bits_per_byte: dict[str, float]
    chrf: dict[str, float]
    validation_loss: dict[str, float]
    similarity_by_layer: list[float] = field(default_factory=list)
    """Mean cosine similarity between languages at each point (embeddings, layer 0, ...)."""
    similarity_points: list[str] = field(default_factory=list)
    importance_by_language: dict[str, float] = field(default_factory=dict)
    """Total neuron importance per language (all layers and components)."""


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FuxiError("the arm has not written this artifact; re-run the experiment", path=path) from None
    except json.JSONDecodeError as error:
        raise FuxiError(f"not valid JSON ({error}); re-run the stage that wrote it", path=path) from None


def _final_model(entries: list[dict]) -> dict | None:
    """The entry of the final pretrained model (a named model, not one of its checkpoints)."""
    named = [entry for entry in entries if entry["model"] == "pretrain" and entry.get("tokens_seen") is None]
    return named[0] if named else None


def collect(arm: Arm) -> ArmResult:
    stages = finished_inputs(arm.recipe, "report").inputs  # every stage the arm ran, its files checked
    plan = _read_json(stages["mix"] / PLAN)
    results = [row for row in _read_json(stages["evaluate"] / RESULTS)["results"] if row["model"] == "pretrain"]
    metrics = stages["pretrain"] / METRICS
    if not metrics.is_file():
        raise FuxiError("the arm has not written this artifact; re-run the experiment", path=metrics)
    validations = [row for row in json_lines(metrics) if row.get("event") == "validation"]

    result = ArmResult(
        strategy=arm.strategy, seed=arm.seed,
        shares={row["language"]: row["share"] for row in plan["languages"]},
        bits_per_byte={row["language"]: row["value"] for row in results if row["metric"] == "bits_per_byte"},
        chrf={row["language"]: row["value"] for row in results if row["metric"] == "chrf"},
        validation_loss=validations[-1]["loss_by_language"] if validations else {})
    if not result.bits_per_byte:
        raise FuxiError("the evaluation measured no bits per byte; the comparison needs the offline suite's bpb "
                        "tasks (evaluate.suite: local)", path=stages["evaluate"] / RESULTS)
    similarity = stages["analyze"] / REPRESENTATIONS / SIMILARITY_JSON
    if similarity.is_file():
        entry = _final_model(_read_json(similarity)["models"])
        if entry:
            result.similarity_by_layer = entry["mean_similarity"]
            result.similarity_points = [str(point) for point in entry["points"]]
    importance = stages["analyze"] / NEURONS / IMPORTANCE_JSON
    if importance.is_file():
        entry = _final_model(_read_json(importance)["models"])
        if entry:
            totals = np.asarray(entry["importance"], dtype=float).reshape(len(entry["languages"]), -1).sum(axis=1)
            result.importance_by_language = dict(zip(entry["languages"], totals.tolist()))
    return result


def _spread(values: list[float]) -> float:
    """Standard deviation across languages (how unequal the model is)."""
    return float(np.std(values)) if values else math.nan


def _cv(values: list[float]) -> float:
    mean = float(np.mean(values)) if values else math.nan
    return float(np.std(values)) / mean if values and mean else math.nan


SUMMARY_METRICS = {
    "bits per byte, mean over languages (lower is better)": lambda r: float(np.mean(list(r.bits_per_byte.values()))),
    "bits per byte, σ across languages (lower: more balanced)": lambda r: _spread(list(r.bits_per_byte.values())),
    "bits per byte, worst language": lambda r: max(r.bits_per_byte.values()),
    "chrF, mean over languages": lambda r: float(np.mean(list(r.chrf.values()))) if r.chrf else math.nan,
    "validation loss, mean over languages (nats)":
        lambda r: float(np.mean(list(r.validation_loss.values()))) if r.validation_loss else math.nan,
    "representation similarity, mean over layers":
        lambda r: float(np.mean(r.similarity_by_layer)) if r.similarity_by_layer else math.nan,
    "neuron importance, CV across languages": lambda r: _cv(list(r.importance_by_language.values())),
    "largest language share of the mix": lambda r: max(r.shares.values()),
}


def _by_strategy(results: list[ArmResult]) -> dict[str, list[ArmResult]]:
    grouped: dict[str, list[ArmResult]] = {}
    for result in results:
        grouped.setdefault(result.strategy, []).append(result)
    return grouped


def summarize(results: list[ArmResult]) -> dict[str, Any]:
    """Per strategy and metric: mean and standard deviation over seeds; and for the mean bits per byte, each pair of
    strategies' difference against the seeds' noise (a difference within twice the larger σ is called noise)."""
    grouped = _by_strategy(results)
    summary: dict[str, Any] = {"metrics": {}, "comparisons": []}
    for metric, measure in SUMMARY_METRICS.items():
        summary["metrics"][metric] = {strategy: mean_sd([measure(r) for r in arms])
                                      for strategy, arms in grouped.items()}
    headline = "bits per byte, mean over languages (lower is better)"
    names = list(grouped)
    for i, first in enumerate(names):
        for second in names[i + 1:]:
            values = summary["metrics"][headline]
            seeds = min(len(grouped[first]), len(grouped[second]))
            summary["comparisons"].append(compare(first, values[first], second, values[second], seeds))
    return summary


def _per_language(results: list[ArmResult], attribute: str) -> tuple[list[str], dict[str, list[tuple[float, float]]]]:
    grouped = _by_strategy(results)
    languages = sorted({lang for r in results for lang in getattr(r, attribute)})
    table = {strategy: [mean_sd([getattr(r, attribute).get(lang, math.nan) for r in arms]) for lang in languages]
             for strategy, arms in grouped.items()}
    return languages, table


def comparison_chapters(results: list[ArmResult]) -> list[Chapter]:
    summary = summarize(results)
    grouped = _by_strategy(results)
    seeds = sorted({r.seed for r in results})
    overview = Chapter("Outcome", [Text(
        f"{len(grouped)} strategies ({', '.join(grouped)}) x {len(seeds)} seeds ({', '.join(map(str, seeds))}); "
        f"the same data, tokenizer, model size and token budget. Every value is the mean over seeds ± their "
        f"standard deviation: a difference smaller than about twice that is noise.")])
    overview.blocks.append(Table(["strategy A", "strategy B", "mean bpb A − B", "noise (2σ)", "verdict"],
                                 [[c["first"], c["second"], f"{c['difference']:+.3f}", f"{c['noise']:.3f}",
                                   c["verdict"]] for c in summary["comparisons"]],
                                 "Mean bits per byte on the held-out parallel text, pairwise"))
    overview.blocks.append(Table(["metric", *grouped],
                                 [[metric, *(format_mean_sd(*values[s]) for s in grouped)]
                                  for metric, values in summary["metrics"].items()], "Summary"))
    chapters = [overview]
    for attribute, title, caption in (("shares", "Mix", "Share of the pretraining tokens"),
                                      ("bits_per_byte", "Bits per byte", "Bits per byte on held-out parallel text"),
                                      ("chrf", "Translation", "chrF of 0-shot translation from English"),
                                      ("validation_loss", "Validation loss", "Final validation loss (nats)"),
                                      ("importance_by_language", "Neuron importance",
                                       "Total neuron importance (paper 6.1)")):
        languages, table = _per_language(results, attribute)
        if not languages:
            continue
        chapter = Chapter(title)
        chapter.blocks.append(Figure(f"{attribute}.png", figures.bars(
            languages, {s: [m for m, _ in values] for s, values in table.items()}, caption,
            errors={s: [sd for _, sd in values] for s, values in table.items()}), f"{caption} per language"))
        chapter.blocks.append(Table(["language", *table], [[lang, *(format_mean_sd(*table[s][i]) for s in table)]
                                                           for i, lang in enumerate(languages)], caption))
        chapters.append(chapter)
    with_similarity = [r for r in results if r.similarity_by_layer]
    if with_similarity:
        points = with_similarity[0].similarity_points
        curves = {}
        for strategy, arms in _by_strategy(with_similarity).items():
            curves[strategy] = (list(range(len(points))),
                                np.mean([r.similarity_by_layer for r in arms], axis=0).tolist())
        chapters.append(Chapter("Representation similarity", [
            Figure("similarity.png", figures.lines(curves, "point (0: embeddings, then layers)",
                                                   "mean cosine similarity"),
                   "Mean similarity between languages per layer (paper Figure 6), mean over seeds"),
            Table(["strategy", *points], [[s, *(f"{v:.3f}" for v in c[1])] for s, c in curves.items()],
                  "Mean similarity per layer")]))
    chapters.append(Chapter("Arms", [Table(["strategy", "seed", "bpb mean", "bpb σ", "languages"],
                                           [[r.strategy, r.seed, f"{np.mean(list(r.bits_per_byte.values())):.3f}",
                                             f"{_spread(list(r.bits_per_byte.values())):.3f}",
                                             len(r.bits_per_byte)] for r in results],
                                           "Each run (its own report is in <strategy>/seed-<k>/report/)")]))
    return chapters


def write_comparison(results: list[ArmResult], output: Path) -> Path:
    """`balance.html` (self-contained), `balance.md`, `figures/` and `balance.json` in `output`."""
    output.mkdir(parents=True, exist_ok=True)
    write_report(output, "Does balance help? Mixing strategies compared", comparison_chapters(results),
                 name="balance")
    atomic_write_json(output / "balance.json", {"summary": summarize(results),
                                                 "arms": [vars(result) for result in results]})
    return output / "balance.html"
