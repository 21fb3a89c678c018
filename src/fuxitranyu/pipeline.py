"""`fuxitranyu run`: the stages of a recipe in order, each writing its own directory with a `manifest.json`.

A stage's fingerprint hashes its recipe sections, the seed, the fingerprints of the stages it reads and the
fuxitranyu version. A stage whose directory holds a manifest with the same fingerprint is skipped; otherwise it runs
into a temporary directory that replaces the old one only when the stage has finished (so a killed run never leaves
a directory that looks complete). That temporary directory is named after the fingerprint and kept when a stage
fails or is killed, so a re-run of the same recipe resumes the work inside it.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from rich.console import Console

from fuxitranyu.errors import FuxiError
from fuxitranyu.io import atomic_directory, atomic_write_json
from fuxitranyu.recipe import Recipe

MANIFEST = "manifest.json"


@dataclass
class StageContext:
    recipe: Recipe
    out_dir: Path
    """Temporary directory the stage writes into; it takes the stage's final name when the stage returns."""
    inputs: dict[str, Path]
    """Final directories of the stages this one reads, by stage name."""
    console: Console
    resume: bool = True
    """Continue an interrupted run of this stage from what it left in `out_dir` (checkpoints, finished tasks)."""


@dataclass(frozen=True)
class Stage:
    name: str
    sections: tuple[str, ...]
    """Recipe sections (or dotted keys, e.g. `pretrain.context_length`) whose values the stage's output depends on."""
    needs: tuple[str, ...] | Callable[[Recipe], tuple[str, ...]]
    """Stages whose outputs this one reads (a function of the recipe when that depends on it)."""
    run: Callable[[StageContext], dict[str, Any]]
    """Writes the stage's files into `ctx.out_dir` and returns its stats for the manifest."""


def _data_stage(ctx: StageContext) -> dict[str, Any]:
    from fuxitranyu.data.stage import run_data_stage

    return run_data_stage(ctx)


def _tokenizer_stage(ctx: StageContext) -> dict[str, Any]:
    from fuxitranyu.tokenizer.stage import run_tokenizer_stage

    return run_tokenizer_stage(ctx)


def _pretrain_stage(ctx: StageContext) -> dict[str, Any]:
    from fuxitranyu.pretrain.stage import run_pretrain_stage

    return run_pretrain_stage(ctx)


def _mix_stage(ctx: StageContext) -> dict[str, Any]:
    from fuxitranyu.mix.stage import run_mix_stage

    return run_mix_stage(ctx)


def _model_stage(ctx: StageContext) -> dict[str, Any]:
    from fuxitranyu.model.stage import write_initial_checkpoint

    return write_initial_checkpoint(ctx)


# In pipeline order. Later stages (data, tokenizer, mix, pretrain, ...) join this list as they are built.
STAGES: tuple[Stage, ...] = (
    Stage("data", sections=("data",), needs=(), run=_data_stage),
    # The tokenizer reads the data stage's output unless the recipe names its own inputs.
    Stage("tokenizer", sections=("tokenizer",), needs=lambda r: () if r.tokenizer.inputs else ("data",),
          run=_tokenizer_stage),
    Stage("model", sections=("model",), needs=("tokenizer",), run=_model_stage),
    Stage("mix", sections=("mix", "pretrain.context_length", "pretrain.total_tokens"), needs=("data", "tokenizer"),
          run=_mix_stage),
    Stage("pretrain", sections=("pretrain",), needs=("model", "mix"), run=_pretrain_stage),
)


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in ("fuxitranyu", "torch", "transformers", "tokenizers", "numpy"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return versions


def read_manifest(stage_dir: Path) -> dict[str, Any] | None:
    path = stage_dir / MANIFEST
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None  # an unreadable manifest means the stage must run again


def stage_config(stage: Stage, recipe: Recipe) -> dict[str, Any]:
    """The recipe values a stage depends on, by section or dotted key."""
    config = {}
    for key in stage.sections:
        value: Any = recipe
        for part in key.split("."):
            value = getattr(value, part)
        config[key] = value.model_dump(mode="json") if hasattr(value, "model_dump") else value
    return config


def fingerprint(stage: Stage, recipe: Recipe, input_fingerprints: dict[str, str]) -> str:
    payload = {
        "stage": stage.name,
        "seed": recipe.seed,
        "sections": stage_config(stage, recipe),
        "inputs": input_fingerprints,
        "fuxitranyu": library_versions().get("fuxitranyu"),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def select_stages(only: list[str] | None) -> list[Stage]:
    if not only:
        return list(STAGES)
    known = {stage.name for stage in STAGES}
    unknown = [name for name in only if name not in known]
    if unknown:
        raise FuxiError(f"unknown stage(s) {', '.join(unknown)}; stages: {', '.join(s.name for s in STAGES)}")
    return [stage for stage in STAGES if stage.name in only]


@dataclass(frozen=True)
class PlannedStage:
    stage: Stage
    directory: Path
    fingerprint: str
    action: str
    """`run` or `skip`."""


def stage_needs(stage: Stage, recipe: Recipe) -> tuple[str, ...]:
    return stage.needs(recipe) if callable(stage.needs) else stage.needs


def plan(recipe: Recipe, only: list[str] | None = None, force: bool = False) -> list[PlannedStage]:
    """What `run` would do: each selected stage with its fingerprint and whether its output is already current."""
    fingerprints: dict[str, str] = {}
    planned = []
    selected = {stage.name for stage in select_stages(only)}
    needed_by_selected = {need for s in STAGES if s.name in selected for need in stage_needs(s, recipe)}
    for stage in STAGES:
        directory = recipe.run_dir / stage.name
        inputs = {}
        for need in stage_needs(stage, recipe):
            if need not in fingerprints:
                raise FuxiError(f"stage {stage.name} needs {need}, which does not come before it")
            inputs[need] = fingerprints[need]
        fingerprints[stage.name] = fingerprint(stage, recipe, inputs)
        if stage.name not in selected:
            manifest = read_manifest(directory)
            if manifest is None:
                if stage.name in needed_by_selected:
                    raise FuxiError(f"stage {stage.name} has not run yet, and a selected stage needs it "
                                    f"(run `fuxitranyu run` first)", path=directory)
            else:
                fingerprints[stage.name] = manifest["fingerprint"]
            continue
        manifest = read_manifest(directory)
        current = manifest is not None and manifest.get("fingerprint") == fingerprints[stage.name]
        planned.append(PlannedStage(stage, directory, fingerprints[stage.name],
                                    "skip" if current and not force else "run"))
    return planned


def run_pipeline(recipe: Recipe, only: list[str] | None = None, force: bool = False,
                 console: Console | None = None, resume: bool = True) -> list[dict[str, Any]]:
    """Run (or skip) the recipe's stages in order; returns their manifests.

    Under torchrun every rank calls this; every rank runs the stage in the same working directory, and rank 0
    alone writes the manifest and gives the directory its final name.
    """
    console = console or Console(stderr=True)
    rank = int(os.environ.get("RANK", "0"))
    manifests = []
    for item in plan(recipe, only, force):
        if item.action == "skip":
            console.print(f"[bold]{item.stage.name}[/]: up to date in {item.directory}, skipped")
            manifests.append(read_manifest(item.directory))
            continue
        console.print(f"[bold]{item.stage.name}[/]: running into {item.directory}")
        started = time.perf_counter()
        inputs = {need: recipe.run_dir / need for need in stage_needs(item.stage, recipe)}
        scratch = recipe.run_dir / f".{item.stage.name}.partial-{item.fingerprint[:16]}"
        if rank != 0:
            scratch.mkdir(parents=True, exist_ok=True)
            item.stage.run(StageContext(recipe, scratch, inputs, console, resume))
            continue
        for stale in recipe.run_dir.glob(f".{item.stage.name}.partial-*"):
            if stale != scratch:
                shutil.rmtree(stale, ignore_errors=True)
        with atomic_directory(item.directory, scratch) as tmp:
            stats = item.stage.run(StageContext(recipe, tmp, inputs, console, resume))
            manifest = {
                "stage": item.stage.name,
                "fingerprint": item.fingerprint,
                "config": stage_config(item.stage, recipe),
                "seed": recipe.seed,
                "inputs": {need: read_manifest(path)["fingerprint"] for need, path in inputs.items()},
                "stats": stats,
                "versions": library_versions(),
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "seconds": round(time.perf_counter() - started, 3),
            }
            atomic_write_json(tmp / MANIFEST, manifest)
        console.print(f"[bold]{item.stage.name}[/]: done in {manifest['seconds']:.1f}s")
        manifests.append(manifest)
    return manifests
