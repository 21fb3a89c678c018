"""The one evaluation flow, of the `evaluate` stage and of `fuxitranyu evaluate MODEL...`: the two differ only in
where the models, checkpoint folders and parallel sets come from."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from fuxitranyu.errors import FuxiError
from fuxitranyu.evaluate.config import EvaluateSection
from fuxitranyu.evaluate.harness import ModelToEvaluate, Settings
from fuxitranyu.evaluate.run import evaluate_models, prepare
from fuxitranyu.evaluate.suite import Suite
from fuxitranyu.evaluate.sweep import sweep


@dataclass(frozen=True)
class SweepRequest:
    """A pretraining run's checkpoints folder to evaluate step by step."""

    folder: Path
    name: str
    tokenizer: Path | None
    every: int


def run_evaluation(suite: Suite, out_dir: Path, section: EvaluateSection, parallel_units: Callable[[], list[dict]],
                   models: list[ModelToEvaluate], sweeps: list[SweepRequest], seed: int,
                   console: Console, final_dir: Path | None = None) -> dict[str, Any]:
    """The one evaluation flow, of the stage and of `fuxitranyu evaluate`: the offline data and task files, every
    model (results.json, tables, plots), then every checkpoint sweep; returns the summary for a manifest.
    `parallel_units` is called only when the suite has offline tasks. `final_dir`: where `out_dir` is renamed to when
    the stage finishes; the task files and results.json name the data there."""
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise FuxiError(f"two models would be named alike ({', '.join(names)}); give directories whose names (or "
                        f"parents' names, for .../model) differ")
    units = parallel_units() if suite.needs_parallel else None
    evaluation = prepare(suite, out_dir, section.data_dir, units, section.offline, seed, final_dir)
    settings = Settings.from_recipe(section, seed)
    console.print(f"[bold]evaluate[/]: suite {suite.name}, {len(evaluation.tasks.tasks)} tasks -> {out_dir}")
    results = evaluate_models(evaluation, models, settings, console) if models else []
    swept = {}
    for request in sweeps:
        done = sweep(request.folder, evaluation, settings, request.name, request.tokenizer, request.every, console)
        swept[request.name] = {"checkpoints": len(done), "reused": sum(r.reused for r in done)}
    evaluation.write_final_task_files()
    summary = {}
    for result in results:
        means: dict[str, list[float]] = {}
        for row in result.rows:
            means.setdefault(f"{row.benchmark} {row.metric}", []).append(row.value)
        summary[result.name] = {"examples": result.examples, "seconds": round(result.seconds, 3),
                                "means": {k: statistics.fmean(v) for k, v in means.items()}}
    return {"suite": suite.name, "tasks": len(evaluation.tasks.tasks), "models": summary,
            "offline_data": evaluation.offline.as_dict() if evaluation.offline else None, "sweeps": swept}
