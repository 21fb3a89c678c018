"""The `evaluate` stage: the recipe's suite on the models of earlier stages (and on model directories), through
lm-evaluation-harness; optionally a sweep over a stage's checkpoints.

A stage that produces a model writes it at `<stage>/model/` (weights, tokenizer, generation config); this stage reads
it only as `ctx.inputs[stage] / MODEL`, and the offline tasks' text as the data stage's parallel sets.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from fuxitranyu.data.artifacts import parallel_dir
from fuxitranyu.data.parallel import parallel_sets, read_parallel
from fuxitranyu.errors import FuxiError
from fuxitranyu.evaluate.adaptation import BASE, write_adaptation
from fuxitranyu.evaluate.artifacts import ADAPTATION, RESULTS, SWEEP
from fuxitranyu.evaluate.config import EvaluateSection, is_model_path, is_stage
from fuxitranyu.evaluate.flow import SweepRequest, run_evaluation
from fuxitranyu.evaluate.harness import ModelToEvaluate
from fuxitranyu.evaluate.results import read_rows
from fuxitranyu.evaluate.suite import load_suite
from fuxitranyu.stage import CHECKPOINTS, MODEL, Stage, StageContext


def model_stages(section: EvaluateSection) -> tuple[str, ...]:
    return tuple(entry for entry in section.models if is_stage(entry))


def evaluate_needs(recipe) -> tuple[str, ...]:
    section = recipe.evaluate
    data = ("data",) if load_suite(section.suite).needs_parallel else ()
    return tuple(dict.fromkeys(data + model_stages(section)))


def model_name(entry: str) -> str:
    """A stage's name, or a directory's (its parent's when it is called `model`)."""
    if not is_model_path(entry):
        return entry
    path = Path(entry).expanduser()
    return path.parent.name if path.name == MODEL else path.name


def model_directory(entry: str, inputs: dict[str, Path], recipe) -> Path:
    if entry == BASE:
        path = Path(str(recipe.model.init_from)).expanduser()
    else:
        path = inputs[entry] / MODEL if is_stage(entry) else Path(entry).expanduser()
    if not (path / "config.json").is_file():
        what = f"stage {entry} wrote no model directory" if is_stage(entry) else "not a model directory"
        raise FuxiError(f"{what} (config.json missing)", path=path)
    return path


def run_evaluate_stage(ctx: StageContext) -> dict[str, Any]:
    if not ctx.world.is_main:  # lm-eval runs in one process here; other ranks of a torchrun launch have nothing to do
        return {}
    section = ctx.recipe.evaluate
    if not ctx.resume:
        shutil.rmtree(ctx.out_dir / SWEEP, ignore_errors=True)
    models = [ModelToEvaluate(model_name(entry), str(model_directory(entry, ctx.inputs, ctx.recipe)),
                              entry in section.chat_models) for entry in section.models]
    sweeps = [SweepRequest(ctx.inputs[entry] / CHECKPOINTS, entry, ctx.inputs[entry] / MODEL, section.checkpoint_every)
              for entry in (model_stages(section) if section.checkpoint_every else ())
              if (ctx.inputs[entry] / CHECKPOINTS).is_dir()]

    def units() -> list[dict]:
        return read_parallel(parallel_sets(parallel_dir(ctx.inputs["data"]), section.offline.parallel_sets)).units

    stats = run_evaluation(load_suite(section.suite), ctx.out_dir, section, units, models, sweeps, ctx.recipe.seed,
                           ctx.console, final_dir=ctx.final_dir)
    if BASE in section.models:
        rows, targets = read_rows(ctx.out_dir / RESULTS), set(ctx.recipe.adaptation_targets())
        stats["adaptation"] = {m.name: write_adaptation(rows, m.name, targets, ctx.out_dir,
                                                        ADAPTATION.format(model=m.name))
                               for m in models if m.name != BASE}
    return stats


STAGE = Stage("evaluate", sections=("evaluate",), needs=evaluate_needs, run=run_evaluate_stage,
              description="lm-evaluation-harness suites (offline tasks, the paper's benchmarks), balance, sweeps",
              fingerprint_excludes=("evaluate.batch_size",), enabled=lambda r: r.evaluate is not None)
