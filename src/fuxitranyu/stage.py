"""The stage contract: what a pipeline stage is, what it is handed, and the manifest it leaves behind.

A low module: stage packages import it, `fuxitranyu.pipeline` imports the stage packages, never the reverse.

    Stage(name, sections, needs, run)      declared once, in the stage package's `stage.py` as `STAGE`
    run(ctx: StageContext) -> stats       writes into ctx.out_dir, reads other stages only through ctx.inputs
    <run dir>/<stage>/manifest.json       written by the pipeline when `run` returns (config, fingerprints, stats,
                                          the sha256 of every file, checked before a later stage reads them)
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from pydantic import BaseModel, ConfigDict, ValidationError
from rich.console import Console

from fuxitranyu.errors import FuxiError
from fuxitranyu.io import check_sha256
from fuxitranyu.runtime import World, world

if TYPE_CHECKING:
    from fuxitranyu.recipe import Recipe

MANIFEST = "manifest.json"
MODEL = "model"
"""What a training stage (pretrain, sft, dpo) ends with: a Hugging Face model directory, tokenizer beside it."""
METRICS = "metrics.jsonl"
"""A training stage's logged steps and events, one JSON object per line."""
CHECKPOINTS = "checkpoints"
"""A training stage's resumable checkpoints (pretraining's `step-NNNNNN/`, the Trainer's `checkpoint-N/`)."""


@dataclass
class StageContext:
    recipe: Recipe
    out_dir: Path
    """Working directory of the stage; it takes the stage's final name when the stage returns."""
    inputs: dict[str, Path]
    """Final directories of the stages this one reads, by stage name: the only way a stage reads another."""
    input_fingerprints: dict[str, str] = field(default_factory=dict)
    """Fingerprints of those stages (e.g. to name a cache that is valid only for their outputs)."""
    console: Console = field(default_factory=lambda: Console(stderr=True))
    resume: bool = True
    """Continue an interrupted run of this stage from what it left in `out_dir` (checkpoints, finished tasks)."""
    world: World = field(default_factory=world)
    """This process's place among the ranks of a distributed launch (rank 0 of 1 otherwise)."""
    verbose: bool = False
    """Let libraries log to the terminal (datatrove's task logs, progress bars); otherwise they go to log files."""
    final_dir: Path | None = None
    """The name `out_dir` takes when the stage returns (None: `out_dir` is final), for files that must name where the
    stage's outputs will be (the evaluation's task files)."""


@dataclass(frozen=True)
class Stage:
    name: str
    sections: tuple[str, ...]
    """Recipe sections (or dotted keys, e.g. `pretrain.total_tokens`) whose values the stage's output depends on."""
    needs: tuple[str, ...] | Callable[[Recipe], tuple[str, ...]]
    """Stages whose outputs this one reads (a function of the recipe when that depends on it)."""
    run: Callable[[StageContext], dict[str, Any]]
    """Writes the stage's files into `ctx.out_dir` and returns its stats for the manifest."""
    description: str = ""
    """One line for `fuxitranyu run --dry-run` and the report."""
    fingerprint_excludes: tuple[str, ...] = ()
    """Dotted keys inside `sections` that do not change the output (parallelism, logging) and so stay out of the
    fingerprint: changing them does not re-run the stage."""
    enabled: Callable[[Recipe], bool] | None = None
    """Whether the recipe runs this stage (e.g. its section is present); None: always."""
    own_progress: bool = False
    """The stage draws its own progress display (rates, ETA); otherwise the pipeline shows a status line."""
    unhashed: tuple[str, ...] = ()
    """Top-level entries of the stage's directory whose files the manifest does not hash, because they carry hashes
    of their own (pretraining's checkpoints, each with its checkpoint.json): hashing them again would cost hours at
    the paper's scale."""

    def needs_for(self, recipe: Recipe) -> tuple[str, ...]:
        return self.needs(recipe) if callable(self.needs) else self.needs

    def enabled_in(self, recipe: Recipe) -> bool:
        return self.enabled is None or self.enabled(recipe)


def verify_inputs(inputs: dict[str, Path]) -> None:
    """Hashes written are hashes checked: every file an input stage's manifest hashed must still hash the same before
    a stage reads it; a FuxiError names the first that does not."""
    for name, directory in inputs.items():
        manifest = read_manifest(directory)
        if manifest is not None:
            check_sha256(directory, manifest.get("files", {}), name)


class Stats(BaseModel):
    """The part of a stage's manifest `stats` that other code reads, typed: the stage package that writes the stats
    declares it, and readers (the report) parse the manifest with it, so that a renamed or missing key is an error
    naming it, not a blank in a page. Keys no reader needs may be there too."""

    model_config = ConfigDict(extra="allow")

    @classmethod
    def of(cls, manifest: dict[str, Any], stage_dir: Path) -> Self:
        try:
            return cls.model_validate(manifest.get("stats") or {})
        except ValidationError as err:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
            raise FuxiError(f"the manifest's stats are not what {cls.__name__} expects ({problems}); re-run the stage",
                            path=Path(stage_dir) / MANIFEST) from None


def read_manifest(stage_dir: Path) -> dict[str, Any] | None:
    """The manifest of a finished stage directory; None when there is none or it cannot be read (the stage must then
    run again)."""
    path = Path(stage_dir) / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return manifest if isinstance(manifest, dict) and "fingerprint" in manifest else None
