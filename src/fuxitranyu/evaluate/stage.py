"""The `evaluate` stage: the recipe's suite on the models of earlier stages (and on model directories), through
lm-evaluation-harness; optionally a sweep over a stage's checkpoints.

A stage that produces a model writes it at `<stage>/model/` (weights, tokenizer, generation config); this stage reads
it only as `ctx.inputs[stage] / "model"`, and the offline tasks' text as `ctx.inputs["data"] / "parallel"`.
"""

from __future__ import annotations

import shutil
import statistics
from pathlib import Path
from typing import Any

from fuxitranyu.data.parallel import parallel_sets
from fuxitranyu.errors import FuxiError
from fuxitranyu.evaluate.config import EvaluateRecipe, is_model_path
from fuxitranyu.evaluate.harness import ModelToEvaluate, Settings
from fuxitranyu.evaluate.run import evaluate_models, prepare
from fuxitranyu.evaluate.suite import load_suite
from fuxitranyu.evaluate.sweep import sweep
from fuxitranyu.stage import Stage, StageContext
from fuxitranyu.tokenizer.fertility import read_parallel


def model_stages(section: EvaluateRecipe) -> tuple[str, ...]:
    return tuple(entry for entry in section.models if not is_model_path(entry))


def evaluate_needs(recipe) -> tuple[str, ...]:
    section = recipe.evaluate
    data = ("data",) if load_suite(section.suite).needs_parallel else ()
    return tuple(dict.fromkeys(data + model_stages(section)))


def model_name(entry: str) -> str:
    """A stage's name, or a directory's (its parent's when it is called `model`)."""
    if not is_model_path(entry):
        return entry
    path = Path(entry).expanduser()
    return path.parent.name if path.name == "model" else path.name


def model_directory(entry: str, inputs: dict[str, Path]) -> Path:
    path = inputs[entry] / "model" if not is_model_path(entry) else Path(entry).expanduser()
    if not (path / "config.json").is_file():
        what = f"stage {entry} wrote no model directory" if not is_model_path(entry) else "not a model directory"
        raise FuxiError(f"{what} (config.json missing)", path=path)
    return path


def run_evaluate_stage(ctx: StageContext) -> dict[str, Any]:
    if not ctx.world.is_main:  # lm-eval runs in one process here; other ranks of a torchrun launch have nothing to do
        return {}
    section = ctx.recipe.evaluate
    if not ctx.resume:
        shutil.rmtree(ctx.out_dir / "sweep", ignore_errors=True)
    suite = load_suite(section.suite)
    units = None
    if suite.needs_parallel:
        units = read_parallel(parallel_sets(ctx.inputs["data"] / "parallel", section.offline.parallel_sets)).units
    evaluation = prepare(suite, ctx.out_dir, section.data_dir, units, section.offline, ctx.recipe.seed)
    settings = Settings.from_recipe(section, ctx.recipe.seed)
    models = [ModelToEvaluate(model_name(entry), str(model_directory(entry, ctx.inputs)), entry in section.chat_models)
              for entry in section.models]
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise FuxiError(f"evaluate.models: two models would be named alike ({', '.join(names)}); give directories "
                        f"whose names (or parents' names, for .../model) differ")
    results = evaluate_models(evaluation, models, settings, ctx.console)
    sweeps = {}
    for entry in model_stages(section) if section.checkpoint_every else ():
        folder = ctx.inputs[entry] / "checkpoints"
        if folder.is_dir():
            done = sweep(folder, evaluation, settings, entry, ctx.inputs[entry] / "model", section.checkpoint_every,
                         ctx.console)
            sweeps[entry] = {"checkpoints": len(done), "reused": sum(r.reused for r in done)}
    summary = {}
    for result in results:
        means: dict[str, list[float]] = {}
        for row in result.rows:
            means.setdefault(f"{row.benchmark} {row.metric}", []).append(row.value)
        summary[result.name] = {"examples": result.examples, "seconds": round(result.seconds, 3),
                                "means": {k: statistics.fmean(v) for k, v in means.items()}}
    return {"suite": suite.name, "tasks": len(evaluation.tasks.tasks), "models": summary,
            "offline_data": evaluation.offline.as_dict() if evaluation.offline else None, "sweeps": sweeps}


STAGE = Stage("evaluate", sections=("evaluate",), needs=evaluate_needs, run=run_evaluate_stage,
              description="lm-evaluation-harness suites (offline tasks, the paper's benchmarks), balance, sweeps",
              fingerprint_excludes=("evaluate.batch_size",), enabled=lambda r: r.evaluate is not None)
