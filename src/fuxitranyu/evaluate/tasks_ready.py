"""Before anything runs: find every task's YAML and data, fail at once listing all that is missing, and write the
task files the run uses.

Nothing is downloaded. A task's data is found, in this order, in
- the offline data folder the evaluate stage writes (our tasks with `dataset_path: json`),
- a local copy of the benchmark at `<data_dir>/<dataset path>` in the original schema,
- the Hugging Face cache (the hub's `datasets--<org>--<name>` or the datasets library's prepared `<org>___<name>`).

The run then indexes only `<out>/tasks/`: one small YAML per task that `include`s the task's own file (lm-eval's or
ours, by absolute path) and sets its few-shot count and where its data is. The same folder reruns any task with the
bare CLI: `lm-eval run --include_path <out>/tasks --tasks <task> ...`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from fuxitranyu.errors import FuxiError
from fuxitranyu.evaluate.suite import SuiteTask
from fuxitranyu.hub import in_hf_cache
from fuxitranyu.io import atomic_directory

LOCAL_BUILDERS = ("json", "csv", "parquet", "text", "arrow")
"""`dataset_path` values that name a file format: the data are the task's `data_files`."""


@dataclass(frozen=True)
class ReadyTask:
    spec: SuiteTask
    source: Path
    """The YAML file that defines the task."""
    data: str
    """Where its data come from, in words (written to results.json)."""
    overrides: dict[str, Any]
    """What the task file of the run sets over the source."""
    config: dict[str, Any]
    """The source's configuration, its includes resolved (as lm-eval's index reads it)."""

    def moved(self, old: Path, new: Path) -> ReadyTask:
        """The task reading the files it reads under `old` from `new` instead (the stage's folder once renamed)."""
        def moved_path(path: str) -> str:
            return str(new / Path(path).relative_to(old)) if Path(path).is_relative_to(old) else path

        kwargs = self.overrides.get("dataset_kwargs") or {}
        if old == new or "data_files" not in kwargs:
            return self
        files = {split: moved_path(path) for split, path in kwargs["data_files"].items()}
        overrides = {**self.overrides, "dataset_kwargs": {**kwargs, "data_files": files}}
        return replace(self, overrides=overrides, data=self.data.replace(str(old), str(new)))


@contextmanager
def hub_closed() -> Iterator[None]:
    """The Hugging Face hub and datasets libraries offline for the duration, whenever they were imported: a dataset
    that is not on disk fails at once instead of waiting on the network."""
    import datasets.config
    import huggingface_hub.constants

    saved = (os.environ.get("HF_HUB_OFFLINE"), huggingface_hub.constants.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE)
    os.environ["HF_HUB_OFFLINE"] = "1"
    huggingface_hub.constants.HF_HUB_OFFLINE = datasets.config.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        if saved[0] is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = saved[0]
        huggingface_hub.constants.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE = saved[1], saved[2]


def _data_files(config: dict) -> dict[str, str]:
    files = (config.get("dataset_kwargs") or {}).get("data_files") or {}
    return {"test": files} if isinstance(files, str) else dict(files)


@dataclass(frozen=True)
class Missing:
    dataset: str
    """A dataset path (hub id), or the offline data's files."""
    config: str | None
    task: str
    hint: str = ""


def _locate(spec: SuiteTask, source: Path, config: dict, data_dir: Path | None, offline_dir: Path | None,
            ) -> ReadyTask | Missing:
    """The task, ready, when its data exist; what is missing otherwise."""
    path, name = config.get("dataset_path"), config.get("dataset_name")
    shots = {"num_fewshot": spec.shots}
    if path in LOCAL_BUILDERS:
        files = {split: (offline_dir or Path("<offline data>")) / f for split, f in _data_files(config).items()}
        absent = [str(f) for f in files.values() if not f.is_file()]
        if absent or offline_dir is None:
            return Missing(", ".join(absent), None, spec.task, "written by the evaluate stage from the data stage's "
                           "parallel sets (run `fuxitranyu run`, or give --parallel)")
        kwargs = {**(config.get("dataset_kwargs") or {}), "data_files": {s: str(f) for s, f in files.items()}}
        return ReadyTask(spec, source, f"files in {offline_dir}", {"dataset_kwargs": kwargs, **shots}, config)
    if not path:
        return Missing("(none)", None, spec.task, "its YAML names no dataset_path")
    local = data_dir / path if data_dir is not None else None
    if local is not None and local.is_dir():
        return ReadyTask(spec, source, f"local copy {local}", {"dataset_path": str(local), **shots}, config)
    if in_hf_cache(path, name):
        return ReadyTask(spec, source, "Hugging Face cache", shots, config)
    return Missing(path, name, spec.task)


def _missing_message(missing: list[Missing], total: int, data_dir: Path | None) -> str:
    """One line per dataset: its configs, the tasks that need it, and the two ways to provide it."""
    by_dataset: dict[str, list[Missing]] = {}
    for item in missing:
        by_dataset.setdefault(item.dataset, []).append(item)
    lines = []
    for dataset, items in by_dataset.items():
        configs = sorted({i.config for i in items if i.config})
        tasks = ", ".join(i.task for i in items)
        label = f"{dataset}{' [' + ', '.join(configs) + ']' if configs else ''} (for {tasks})"
        if items[0].hint:
            lines.append(f"{label}: {items[0].hint}")
            continue
        where = f"{data_dir}/{dataset}" if data_dir is not None else f"<data_dir>/{dataset}"
        lines.append(f"{label}: put it in the Hugging Face cache (`datasets.load_dataset({dataset!r}, <config>)` on "
                     f"a machine online) or copy the dataset repository to {where} "
                     f"(`hf download --repo-type dataset {dataset} --local-dir {where}`)")
    return (f"{len(missing)} of {total} tasks cannot run offline ({len(by_dataset)} datasets missing); nothing is "
            f"downloaded:\n  - " + "\n  - ".join(lines))


def index_folders(folders: list[Path]) -> dict[str, Any]:
    """lm-eval's index (task name -> entry) of only these folders."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_defaults=False, include_path=[str(f) for f in folders]).task_index


def prepare_tasks(tasks: list[SuiteTask], out_dir: Path, data_dir: Path | None = None,
                  offline_dir: Path | None = None) -> list[ReadyTask]:
    """Find every task and its data; one FuxiError naming everything that is missing; then write `out_dir/<task>.yaml`
    for each task (the folder replaced whole, by one rename)."""
    index = index_folders(sorted({t.folder for t in tasks}))
    ready, missing = [], []
    for spec in tasks:
        entry = index.get(spec.task)
        if entry is None or entry.yaml_path is None:
            raise FuxiError(f"task {spec.task} ({spec.benchmark}, {spec.language}) is not defined in {spec.folder}")
        found = _locate(spec, Path(entry.yaml_path), entry.cfg or {}, data_dir, offline_dir)
        (missing if isinstance(found, Missing) else ready).append(found)
    if missing:
        raise FuxiError(_missing_message(missing, len(tasks), data_dir))
    write_task_files(ready, out_dir)
    return ready


def write_task_files(tasks: list[ReadyTask], folder: Path) -> None:
    """One `<task>.yaml` per task, including its source and setting what the run sets; the folder replaced whole."""
    with atomic_directory(folder) as scratch:
        for task in tasks:
            text = yaml.safe_dump({"include": str(task.source), "task": task.spec.task, **task.overrides},
                                  sort_keys=False, allow_unicode=True)
            (scratch / f"{task.spec.task}.yaml").write_text(text, encoding="utf-8")
