"""`fuxitranyu run`: the stages of a recipe in order, each writing its own directory with a `manifest.json`.

A stage's fingerprint hashes the recipe values it depends on, the seed, the fingerprints of the stages it reads and
the fuxitranyu version. A stage whose directory holds a manifest with the same fingerprint is skipped; otherwise it runs
into a working directory named after the fingerprint, which takes the stage's final name only when the stage has
finished (so a killed run never leaves a directory that looks complete) and is kept when a stage fails or is killed,
so that a re-run of the same recipe resumes the work inside it. One run at a time holds a run directory.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import platform
import shutil
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from rich.console import Console

from fuxitranyu.analyze.stage import STAGE as ANALYZE
from fuxitranyu.data.stage import STAGE as DATA
from fuxitranyu.errors import FuxiError
from fuxitranyu.evaluate.stage import STAGE as EVALUATE
from fuxitranyu.io import atomic_directory, atomic_write_json, remove_interrupted_writes, run_lock, tree_sha256
from fuxitranyu.logs import route_library_output
from fuxitranyu.mix.stage import STAGE as MIX
from fuxitranyu.model.stage import STAGE as MODEL
from fuxitranyu.posttrain.stage import DPO, SFT
from fuxitranyu.pretrain.stage import STAGE as PRETRAIN
from fuxitranyu.recipe import Recipe
from fuxitranyu.report.stage import STAGE as REPORT
from fuxitranyu.runtime import world
from fuxitranyu.stage import MANIFEST, Stage, StageContext, read_manifest, verify_inputs
from fuxitranyu.tokenizer.stage import STAGE as TOKENIZER

STAGES: tuple[Stage, ...] = (DATA, TOKENIZER, MODEL, MIX, PRETRAIN, SFT, DPO, EVALUATE, ANALYZE, REPORT)
"""In pipeline order; a stage only reads stages before it."""


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in ("fuxitranyu", "torch", "transformers", "tokenizers", "datatrove", "numpy", "trl", "datasets"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return versions


def _lookup(recipe: Recipe, key: str) -> Any:
    value: Any = recipe
    for part in key.split("."):
        value = getattr(value, part)
    return value.model_dump(mode="json") if hasattr(value, "model_dump") else value


def stage_config(stage: Stage, recipe: Recipe, fingerprinted: bool = False) -> dict[str, Any]:
    """The recipe values a stage depends on, by section or dotted key; `fingerprinted` leaves out the keys that do
    not change its output (`Stage.fingerprint_excludes`)."""
    config = {key: _lookup(recipe, key) for key in stage.sections}
    if fingerprinted:
        for excluded in stage.fingerprint_excludes:
            section, _, rest = excluded.partition(".")
            node = config.get(section)
            *parents, last = rest.split(".")
            for part in parents:
                node = node.get(part) if isinstance(node, dict) else None
            if isinstance(node, dict):
                node.pop(last, None)
    return config


def fingerprint(stage: Stage, recipe: Recipe, input_fingerprints: dict[str, str]) -> str:
    payload = {
        "stage": stage.name,
        "seed": recipe.seed,
        "sections": stage_config(stage, recipe, fingerprinted=True),
        "inputs": input_fingerprints,
        "fuxitranyu": library_versions().get("fuxitranyu"),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def stage_named(name: str) -> Stage:
    for stage in STAGES:
        if stage.name == name:
            return stage
    raise FuxiError(f"unknown stage {name!r}; stages: {', '.join(s.name for s in STAGES)}")


def select_stages(only: list[str] | None = None, start: str | None = None) -> list[Stage]:
    """`only` these stages, or every stage from `start` on, or all of them."""
    if only and start:
        raise FuxiError("give --only or --from, not both")
    if only:
        wanted = {stage_named(name).name for name in only}
        return [stage for stage in STAGES if stage.name in wanted]
    if start:
        first = STAGES.index(stage_named(start))
        return list(STAGES[first:])
    return list(STAGES)


@dataclass(frozen=True)
class PlannedStage:
    stage: Stage
    directory: Path
    fingerprint: str
    action: str
    """`run`, `skip` (its output is current) or `off` (the recipe leaves the stage out)."""
    inputs: dict[str, Path]
    input_fingerprints: dict[str, str]


def plan_stages(recipe: Recipe, only: list[str] | None = None, force: bool = False,
         start: str | None = None) -> list[PlannedStage]:
    """What `run` would do: each selected stage with its fingerprint and whether its output is already current.

    A stage that is not selected but read by a selected one must already have run; its manifest's fingerprint is
    taken as it is. `start` (`--from`) re-runs the stages from there on even when they are current."""
    selected = {stage.name for stage in select_stages(only, start)}
    forced = force or start is not None
    fingerprints: dict[str, str] = {}
    planned = []
    for stage in STAGES:
        directory = recipe.run_dir / stage.name
        if not stage.enabled_in(recipe):
            if stage.name in selected:
                planned.append(PlannedStage(stage, directory, "", "off", {}, {}))
            continue
        needs = stage.needs_for(recipe)
        for need in needs:
            if need not in fingerprints:
                raise FuxiError(f"stage {stage.name} needs {need}, which is off in this recipe or does not come "
                                f"before it")
        input_fingerprints = {need: fingerprints[need] for need in needs}
        fingerprints[stage.name] = fingerprint(stage, recipe, input_fingerprints)
        manifest = read_manifest(directory)
        if stage.name not in selected:
            if manifest is not None:
                fingerprints[stage.name] = manifest["fingerprint"]
            continue
        missing = [need for need in needs if need not in selected and read_manifest(recipe.run_dir / need) is None]
        if missing:
            raise FuxiError(f"stage {stage.name} reads {', '.join(missing)}, which has not run yet (run `fuxitranyu "
                            f"run` without --only/--from first)", path=recipe.run_dir / missing[0])
        current = manifest is not None and manifest["fingerprint"] == fingerprints[stage.name]
        planned.append(PlannedStage(stage, directory, fingerprints[stage.name],
                                    "skip" if current and not forced else "run",
                                    {need: recipe.run_dir / need for need in needs}, input_fingerprints))
    return planned


def finished_stage(recipe: Recipe, name: str) -> Path:
    """The directory of a finished stage of the recipe's run, its files checked against its manifest: how commands
    reach a stage's output (`fuxitranyu evaluate`'s default parallel sets, `analyze`'s default model)."""
    directory = recipe.run_dir / stage_named(name).name
    if read_manifest(directory) is None:
        raise FuxiError(f"stage {name} has not run yet (fuxitranyu run {recipe.name} --only {name})", path=directory)
    verify_inputs({name: directory})
    return directory


def finished_inputs(recipe: Recipe, stage_name: str) -> StageContext:
    """A context holding the finished input directories of `stage_name`, for commands that inspect a stage's inputs
    without running it (`mix plan`)."""
    inputs = {need: finished_stage(recipe, need) for need in stage_named(stage_name).needs_for(recipe)}
    fingerprints = {need: read_manifest(directory)["fingerprint"] for need, directory in inputs.items()}
    return StageContext(recipe, recipe.run_dir / stage_name, inputs, fingerprints)


STORAGE_ERRNOS = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
                  errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied",
                  errno.EPERM: "operation not permitted"}
MIN_FREE_BYTES = 1 << 20


def storage_problem(error: BaseException, directory: Path) -> FuxiError | None:
    """A clear error for a stage that failed because its output cannot be written (disk full, read-only, no
    permission) — however the library that hit it phrased it (C++ code says `basic_ios::clear: iostream error`)."""
    if isinstance(error, OSError) and error.errno in STORAGE_ERRNOS:
        where = error.filename or directory
        return FuxiError(f"{STORAGE_ERRNOS[error.errno]} while writing the stage's output; free space or choose "
                         f"another output_dir", path=where)
    try:
        free = shutil.disk_usage(directory if directory.exists() else directory.parent).free
    except OSError:
        return None
    if free < MIN_FREE_BYTES:
        return FuxiError(f"the disk is full ({free:,} bytes left) and the stage failed with: {error}; free space or "
                         f"choose another output_dir", path=directory)
    return None


def _run_one(item: PlannedStage, recipe: Recipe, console: Console, resume: bool, verbose: bool) -> dict[str, Any]:
    try:
        return _run_stage(item, recipe, console, resume, verbose)
    except FuxiError:
        raise
    except Exception as error:
        problem = storage_problem(error, recipe.run_dir)
        if problem is None:
            raise
        raise problem from error


def _run_stage(item: PlannedStage, recipe: Recipe, console: Console, resume: bool, verbose: bool) -> dict[str, Any]:
    started = time.perf_counter()
    scratch = recipe.run_dir / f".{item.stage.name}.partial-{item.fingerprint[:16]}"
    current = world()
    if not current.is_main:  # under torchrun: every rank works in the same directory; rank 0 finalises it
        scratch.mkdir(parents=True, exist_ok=True)
        item.stage.run(StageContext(recipe, scratch, item.inputs, item.input_fingerprints, console, resume, current,
                                    verbose))
        return {}
    for stale in recipe.run_dir.glob(f".{item.stage.name}.partial-*"):
        if stale != scratch:
            shutil.rmtree(stale, ignore_errors=True)
    leftovers = remove_interrupted_writes(scratch)
    if leftovers:
        console.print(f"[dim]{item.stage.name}: removed {len(leftovers)} temporary file(s) of a write the last run "
                      f"was killed in (e.g. {leftovers[0].relative_to(scratch)})[/]")
    verify_inputs(item.inputs)
    with atomic_directory(item.directory, scratch) as tmp:
        context = StageContext(recipe, tmp, item.inputs, item.input_fingerprints, console, resume, current, verbose,
                               final_dir=item.directory)
        stats = item.stage.run(context)
        manifest = {
            "stage": item.stage.name,
            "fingerprint": item.fingerprint,
            "config": stage_config(item.stage, recipe),
            "seed": recipe.seed,
            "inputs": item.input_fingerprints,
            "stats": stats,
            "versions": library_versions(),
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "seconds": round(time.perf_counter() - started, 3),
            "files": tree_sha256(tmp, skip=(MANIFEST, *item.stage.unhashed)),
        }
        atomic_write_json(tmp / MANIFEST, manifest)
    return manifest


def run_pipeline(recipe: Recipe, only: list[str] | None = None, force: bool = False, console: Console | None = None,
                 resume: bool = True, start: str | None = None, verbose: bool = False) -> list[dict[str, Any]]:
    """Run (or skip) the recipe's stages in order; returns their manifests.

    Under torchrun every rank calls this; every rank runs the stage in the same working directory, and rank 0
    alone holds the run directory's lock, writes the manifest and gives the directory its final name. Library
    output goes to `<run dir>/logs/run.log` unless `verbose`."""
    console = console or Console(stderr=True)
    steps = plan_stages(recipe, only, force, start)
    manifests = []
    with run_lock(recipe.run_dir, enabled=world().is_main):
        route_library_output(recipe.run_dir, verbose)
        for item in steps:
            if item.action == "off":
                console.print(f"[bold]{item.stage.name}[/]: not in this recipe, skipped")
                continue
            if item.action == "skip":
                console.print(f"[bold]{item.stage.name}[/]: up to date in {item.directory}, skipped")
                manifests.append(read_manifest(item.directory))
                continue
            console.print(f"[bold]{item.stage.name}[/]: running into {item.directory}")
            status = console.status(f"{item.stage.name}: {item.stage.description}") \
                if console.is_terminal and not item.stage.own_progress else contextlib.nullcontext()
            with status:
                manifest = _run_one(item, recipe, console, resume, verbose)
            if manifest:
                console.print(f"[bold]{item.stage.name}[/]: done in {manifest['seconds']:.1f}s")
            manifests.append(manifest)
    return manifests
