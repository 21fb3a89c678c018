"""An evaluation: a suite on some models, written to one folder — what the stage and `fuxitranyu evaluate` both do.

    <out>/data/         the offline tasks' files (suites with `languages: parallel`)
    <out>/tasks/        the task files the run indexed (one per task; rerunnable with the bare lm-eval CLI)
    <out>/results.json  every model's rows
    <out>/generations/<model>/<task>.jsonl   what each model generated (prompt, reference, response)
    <out>/tables.md, <out>/tables/*.csv, <out>/plots/*.png
    <out>/sweep/...     checkpoint sweeps (see sweep.py)
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

from rich.console import Console

from fuxitranyu.errors import FuxiError
from fuxitranyu.evaluate.artifacts import DATA, GENERATIONS, PLOTS, RESULTS, TASKS
from fuxitranyu.evaluate.config import OfflineTasks
from fuxitranyu.evaluate.harness import ModelToEvaluate, Settings, TaskSet, evaluate_model, task_set
from fuxitranyu.evaluate.offline import OfflineData, write_offline_data
from fuxitranyu.evaluate.results import ModelResults, write_generations, write_results, write_tables
from fuxitranyu.evaluate.suite import Suite
from fuxitranyu.evaluate.tasks_ready import ReadyTask, prepare_tasks, write_task_files
from fuxitranyu.io import file_sha256


@dataclass
class Evaluation:
    """A suite made ready in one folder: offline data written, every task found, lm-eval's index built once."""

    suite: Suite
    out_dir: Path
    tasks: TaskSet
    offline: OfflineData | None
    final_dir: Path
    """Where `out_dir` will be once the stage finishes (itself, outside a stage)."""

    @property
    def final_tasks(self) -> list[ReadyTask]:
        """The tasks as they read their data from `final_dir`."""
        return [task.moved(self.out_dir, self.final_dir) for task in self.tasks.tasks]

    def write_final_task_files(self) -> None:
        """The task files the run leaves: the ones it ran, naming the data where the stage's folder will be, so that
        the bare `lm-eval` CLI reruns a task from them."""
        if self.final_dir != self.out_dir:
            write_task_files(self.final_tasks, self.out_dir / TASKS)

    @property
    def fingerprint(self) -> str:
        """Hash of what decides the numbers apart from the model: lm-eval's version, each task's configuration
        (includes resolved), few-shot count, metrics and data files."""
        digest = hashlib.sha256(version("lm_eval").encode())
        for task in self.tasks.tasks:
            digest.update(json.dumps([task.spec.task, task.spec.shots, list(task.spec.metrics), task.overrides,
                                      task.config], sort_keys=True, default=str).encode())
            for path in (task.overrides.get("dataset_kwargs") or {}).get("data_files", {}).values():
                digest.update(file_sha256(path).encode())
        return digest.hexdigest()


def prepare(suite: Suite, out_dir: Path, data_dir: Path | None = None, parallel_units: list[dict] | None = None,
            offline: OfflineTasks | None = None, seed: int = 1234, final_dir: Path | None = None) -> Evaluation:
    """Write the offline data (when the suite needs it), check every task's data, write the task files, index them."""
    data = None
    if suite.needs_parallel:
        if not parallel_units:
            raise FuxiError(f"suite {suite.name} needs held-out parallel sets (the data stage's parallel/, or "
                            f"--parallel PATH)")
        data = write_offline_data(parallel_units, out_dir / DATA, offline or OfflineTasks(), seed)
    tasks = suite.tasks(data.languages if data else None)
    ready = prepare_tasks(tasks, out_dir / TASKS, data_dir, data.folder if data else None)
    return Evaluation(suite, out_dir, task_set(ready, out_dir / TASKS), data, final_dir or out_dir)


def evaluate_models(evaluation: Evaluation, models: list[ModelToEvaluate], settings: Settings,
                    console: Console) -> list[ModelResults]:
    """Each model in turn; then results.json, the tables and the plots."""
    done = []
    for model in models:
        console.print(f"  {model.name}: {len(evaluation.tasks.tasks)} tasks{' (chat template)' if model.chat else ''}")
        result = evaluate_model(model, evaluation.tasks, settings)
        console.print(f"  {model.name}: {result.examples:,} examples in {result.seconds:.1f}s")
        write_generations(evaluation.out_dir / GENERATIONS, result)
        done.append(result)
    write_report(evaluation, done, console)
    return done


def write_report(evaluation: Evaluation, models: list[ModelResults], console: Console) -> None:
    extra = {"offline_data": evaluation.offline.as_dict() if evaluation.offline else None,
             "task_data": {t.spec.task: t.data for t in evaluation.final_tasks}}
    write_results(evaluation.out_dir / RESULTS, evaluation.suite, models, extra)
    rows = [row for m in models for row in m.rows]
    found = write_tables(rows, evaluation.suite, evaluation.out_dir)
    if importlib.util.find_spec("matplotlib") is None:
        console.print("  [yellow]matplotlib is not installed: no plots[/] (pip install 'fuxitranyu[plot]')")
        return
    from fuxitranyu.evaluate.plots import plot_table

    for table in found:
        plot_table(table, [m.name for m in models], evaluation.out_dir / PLOTS / f"{table.slug}.png")

