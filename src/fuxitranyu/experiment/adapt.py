"""`fuxitranyu experiment adapt`: adapting a model to languages it never saw, measured.

A base model is pretrained by the recipe on the base languages only (its own tokenizer learned on them), then
continued on target languages in scripts it encodes badly, in four arms — the base tokenizer reused or extended with
tokens learned on the targets, and no replay or a share of the base languages replayed — with several seeds each.
Every arm is evaluated beside the base model on held-out parallel text (bits per byte, which compares tokenizers),
and one page compares the arms: the gain on the targets, the change on the base languages (forgetting), the
targets' tokens per word, each as mean ± σ over seeds with the noise verdict of the balance experiment.

Layout: `<output>/base/` is the base run (data, tokenizer, model, mix, pretrain); each arm is
`<output>/<tokenizer>-<replay>/seed-<k>/`, whose `data` is a link to the base run's, and runs the tokenizer, model,
mix, pretrain, evaluate and report stages from `model.init_from: <output>/base/pretrain/model`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from fuxitranyu.config_base import parse_count
from fuxitranyu.errors import FuxiError
from fuxitranyu.evaluate.artifacts import ADAPTATION, RESULTS
from fuxitranyu.experiment.arms import compare, format_mean_sd, mean_sd, run_arms
from fuxitranyu.io import atomic_write_json
from fuxitranyu.pipeline import finished_inputs, run_pipeline
from fuxitranyu.recipe import Recipe, load_recipe
from fuxitranyu.report import figures
from fuxitranyu.report.document import Chapter, Figure, Table, Text, write_report
from fuxitranyu.stage import MODEL, read_manifest

BASE_LANGUAGES = ("en", "fr", "de", "es", "pt", "it", "nl", "sv", "pl", "cs", "ro", "ca", "fi", "hu", "tr", "id",
                  "vi", "ru", "uk", "bg")
"""Latin- and Cyrillic-script languages the base model is pretrained on."""
TARGET_LANGUAGES = ("el", "he", "ja", "ko", "zh")
"""Scripts the base tokenizer never saw (it spells them in bytes): Greek, Hebrew, Japanese, Hangul, Han. They, not
th/km/my/ta/hi/bn, because the held-out parallel sets the tiny recipe measures on (the tar and diffutils catalogs)
have text in them on a Debian machine (grep's, with Thai and Tamil, is the post-training demo's)."""
BASE_STAGES = ("data", "tokenizer", "model", "mix", "pretrain")
ARM_STAGES = ("tokenizer", "model", "mix", "pretrain", "evaluate", "report")


def arm_name(tokenizer: str, replay: float) -> str:
    return f"{tokenizer}-{'replay' if replay else 'no-replay'}"


@dataclass(frozen=True)
class AdaptArm:
    tokenizer: str
    """`reuse`, `extend` (new rows: the mean of their pieces') or `extend-random` (new rows: random)."""
    replay: float
    seed: int
    recipe: Recipe
    base_languages: tuple[str, ...]
    """What the base model was pretrained on: forgetting is measured on them."""

    @property
    def name(self) -> str:
        return arm_name(self.tokenizer, self.replay)

    @property
    def label(self) -> str:
        return f"{self.name}/seed-{self.seed}"


@dataclass(frozen=True)
class AdaptSettings:
    base_tokens: str = "1.5M"
    arm_tokens: str = "600K"
    new_tokens: int = 1000
    replay_share: float = 0.3
    seeds: int = 2
    new_rows: tuple[str, ...] = ("mean",)
    """How the extended arms initialise the new rows; `random` beside `mean` adds the extend-random arms."""
    max_lr: float = 1e-3
    """Continued pretraining takes a lower peak than training from scratch (the tiny recipe's 3e-3)."""

    def __post_init__(self):
        """Bad counts are refused before the base model is trained, not after."""
        for option in ("base_tokens", "arm_tokens"):
            try:
                count = parse_count(getattr(self, option))
            except ValueError as err:
                raise FuxiError(f"--{option.replace('_', '-')}: {err}") from None
            if count < 30:
                raise FuxiError(f"--{option.replace('_', '-')}: {count} tokens is too few to train on")
        unknown = sorted(set(self.new_rows) - {"mean", "random"})
        if unknown or not self.new_rows:
            raise FuxiError(f"--new-rows: expected mean and/or random, got {', '.join(unknown) or 'nothing'}")


def experiment_languages(source: str, overrides: list[str]) -> tuple[list[str], list[str]]:
    """(base, target) languages among those the recipe's data stage keeps; a FuxiError when either is empty."""
    kept = load_recipe(source, overrides).data.languages
    base = [lang for lang in BASE_LANGUAGES if not kept or lang in kept]
    targets = [lang for lang in TARGET_LANGUAGES if not kept or lang in kept]
    if not base or not targets:
        raise FuxiError(f"the recipe's data.languages ({', '.join(kept)}) must hold some of the base languages "
                        f"({', '.join(BASE_LANGUAGES)}) and of the targets ({', '.join(TARGET_LANGUAGES)})")
    return base, targets


def _listed(items: list[str]) -> str:
    return f"[{', '.join(items)}]"


def base_recipe(source: str, overrides: list[str], settings: AdaptSettings, output: Path) -> Recipe:
    """The recipe's data stage as it is; tokenizer, mix and pretraining on the base languages only."""
    base_languages = _listed(experiment_languages(source, overrides)[0])
    return load_recipe(source, [*overrides, f"output_dir={output / 'base'}", f"tokenizer.languages={base_languages}",
                                f"mix.languages={base_languages}", f"pretrain.total_tokens={settings.base_tokens}",
                                "sft=null", "dpo=null", "analyze=null", "evaluate=null", "report=null"])


def arm_recipes(source: str, overrides: list[str], settings: AdaptSettings, output: Path) -> list[AdaptArm]:
    base_model = output / "base" / "pretrain" / MODEL
    base_languages, target_languages = experiment_languages(source, overrides)
    targets = _listed(target_languages)
    arm_tokens = parse_count(settings.arm_tokens)
    common = [f"model.init_from={base_model}", "model.overrides={}", f"tokenizer.base={base_model}",
              f"tokenizer.languages={targets}", f"mix.languages={targets}",
              f"pretrain.total_tokens={arm_tokens}", f"pretrain.max_lr={settings.max_lr}",
              f"pretrain.warmup_tokens={arm_tokens // 30}",  # continued training: a short warm-up
              f"pretrain.checkpoints=[{{from_tokens: 0, every_tokens: {arm_tokens // 3}}}]",
              "sft=null", "dpo=null", "analyze=null", "evaluate.models=[base, pretrain]", "evaluate.chat_models=[]",
              "report={}"]
    first = load_recipe(source, overrides).seed
    extend = ["tokenizer.mode=extend", f"tokenizer.new_tokens={settings.new_tokens}"]
    tokenizers = {"reuse": ["tokenizer.mode=reuse"],
                  **{"extend" if rows == "mean" else f"extend-{rows}": [*extend, f"model.new_rows={rows}"]
                     for rows in settings.new_rows}}
    arms = []
    for tokenizer, tokenizer_choice in tokenizers.items():
        for replay in (0.0, settings.replay_share):
            for seed in range(first, first + settings.seeds):
                name = arm_name(tokenizer, replay)
                choice = [*tokenizer_choice,
                          *([f"mix.replay={{languages: {_listed(base_languages)}, share: {replay}}}"]
                            if replay else []),
                          f"seed={seed}", f"output_dir={output / name / f'seed-{seed}'}", f"name=adapt-{name}-{seed}"]
                arms.append(AdaptArm(tokenizer, replay, seed, load_recipe(source, [*overrides, *common, *choice]),
                                     tuple(base_languages)))
    return arms


def run_adapt(source: str, overrides: list[str], settings: AdaptSettings, output: Path, console: Console,
              verbose: bool = False) -> Path:
    """The base run, every arm, then the comparison page; returns its path."""
    base = base_recipe(source, overrides, settings, output)
    base_languages, targets = experiment_languages(source, overrides)
    console.print(f"[bold]adapt experiment[/]: base on {', '.join(base_languages)}; arms on {', '.join(targets)} "
                  f"into {output}")
    run_pipeline(base, only=list(BASE_STAGES), console=console, verbose=verbose)
    arms = arm_recipes(source, overrides, settings, output)  # their recipes name the base model: it exists now
    run_arms(arms, base.run_dir, ("data",), ARM_STAGES, console, verbose)
    page = write_comparison([collect(arm) for arm in arms], output)
    console.print(f"[bold]adapt experiment[/]: {page}")
    return page


@dataclass
class AdaptResult:
    arm: str
    seed: int
    targets_change: float
    """Mean relative change of bits per byte on the targets against the base model (negative: gain)."""
    base_change: float
    """Mean relative change on the base languages (positive: forgetting)."""
    worst_base_change: float
    """The largest relative change among the base languages."""
    bits_per_byte: dict[str, float]
    base_bits_per_byte: dict[str, float]
    """The base model's, measured beside the arm's (the same for every arm)."""
    fertility: dict[str, float]
    """Tokens per word of the arm's tokenizer on the held-out parallel sets."""
    targets: list[str]


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError) as error:
        raise FuxiError(f"the arm's artifact is missing or damaged ({error}); re-run the experiment",
                        path=path) from None


def collect(arm: AdaptArm) -> AdaptResult:
    stages = finished_inputs(arm.recipe, "report").inputs
    adaptation = _read_json(stages["evaluate"] / f"{ADAPTATION.format(model='pretrain')}.json")
    rows = _read_json(stages["evaluate"] / RESULTS)["results"]
    tokenizer = read_manifest(stages["tokenizer"])["stats"]
    base = [row["change"] for row in adaptation["per_language"] if row["language"] in arm.base_languages]

    def bits_per_byte(model: str) -> dict[str, float]:
        return {r["language"]: r["value"] for r in rows if r["model"] == model and r["metric"] == "bits_per_byte"}

    return AdaptResult(arm.name, arm.seed, adaptation["targets_mean_change"], _mean(base), max(base, default=math.nan),
                       bits_per_byte("pretrain"), bits_per_byte("base"),
                       tokenizer.get("fertility", {}).get("per_language", {}), arm.recipe.adaptation_targets())


SUMMARY = {
    "bits per byte on the targets, change against the base (gain: negative)": lambda r: r.targets_change,
    "bits per byte on the base languages, change against the base (forgetting: positive)": lambda r: r.base_change,
    "bits per byte on the base languages, largest change": lambda r: r.worst_base_change,
    "bits per byte on the targets, mean": lambda r: _mean([r.bits_per_byte.get(lang) for lang in r.targets]),
    "tokens per word on the targets, mean": lambda r: _mean([r.fertility.get(lang) for lang in r.targets]),
}
PAIRS = (("extend-no-replay", "reuse-no-replay", 3), ("extend-replay", "reuse-replay", 3),
         ("reuse-replay", "reuse-no-replay", 1), ("extend-replay", "extend-no-replay", 1),
         ("extend-no-replay", "extend-random-no-replay", 3), ("extend-replay", "extend-random-replay", 3))
"""Pairs compared (those whose arms ran), and the summary row (by position) each is judged on: the tokenizer and the
new rows' initialisation on the targets' bits per byte, replay on the base languages' change."""


def _mean(values: list[float | None]) -> float:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else float("nan")


def summarize(results: list[AdaptResult]) -> dict[str, Any]:
    grouped: dict[str, list[AdaptResult]] = {}
    for result in results:
        grouped.setdefault(result.arm, []).append(result)
    metrics = {name: {arm: mean_sd([measure(r) for r in rs]) for arm, rs in grouped.items()}
               for name, measure in SUMMARY.items()}
    comparisons = []
    for first, second, row in PAIRS:
        if first in grouped and second in grouped:
            metric = list(SUMMARY)[row]
            seeds = min(len(grouped[first]), len(grouped[second]))
            comparisons.append({"metric": metric, **compare(first, metrics[metric][first], second,
                                                              metrics[metric][second], seeds)})
    return {"metrics": metrics, "comparisons": comparisons}


def write_comparison(results: list[AdaptResult], output: Path) -> Path:
    """`adapt.html`, `adapt.md`, `figures/` and `adapt.json` in `output`."""
    summary = summarize(results)
    arms = list(dict.fromkeys(r.arm for r in results))
    outcome = Chapter("Outcome", [
        Text(f"A base model adapted to {', '.join(results[0].targets)}: "
             f"{len(arms)} arms x {len(results) // max(len(arms), 1)} seeds. Values are means over seeds ± their "
             f"standard deviation; a difference within twice the larger σ is noise."),
        Table(["metric", *arms], [[metric, *(format_mean_sd(*values[a]) for a in arms)]
                                  for metric, values in summary["metrics"].items()], "Summary"),
        Table(["A", "B", "on", "A − B", "noise (2σ)", "verdict"],
              [[c["first"], c["second"], c["metric"], f"{c['difference']:+.4f}", f"{c['noise']:.4f}", c["verdict"]]
               for c in summary["comparisons"]], "Arms compared")])
    languages = sorted({lang for r in results for lang in r.bits_per_byte})
    per_arm = {a: [mean_sd([r.bits_per_byte.get(lang, float("nan")) for r in results if r.arm == a])
                   for lang in languages] for a in arms}
    base = results[0].base_bits_per_byte
    detail = Chapter("Bits per byte per language", [
        Figure("bits_per_byte.png", figures.bars(languages, {a: [m for m, _ in v] for a, v in per_arm.items()},
                                                 "bits per byte", errors={a: [s for _, s in v]
                                                                          for a, v in per_arm.items()}),
               "Bits per byte of the adapted models (mean over seeds ± σ)"),
        Table(["language", "role", "base model", *arms],
              [[lang, "target" if lang in results[0].targets else "", f"{base.get(lang, math.nan):.3f}",
                *(format_mean_sd(*per_arm[a][i]) for a in arms)] for i, lang in enumerate(languages)],
              "Bits per byte: the base model, and each arm's mean over seeds ± σ")])
    write_report(output, "Adapting a model to new languages: tokenizer and replay compared", [outcome, detail],
                 name="adapt")
    atomic_write_json(output / "adapt.json", {"summary": summary, "arms": [vars(r) for r in results]})
    return output / "adapt.html"
