"""The data stage's folder, named once: the stage writes these, and other stages and commands reach the data stage
only through what is here (DESIGN.md decision 7: each stage owns its layout and the readers of it)."""

from __future__ import annotations

from pathlib import Path

from fuxitranyu.stage import Stats

CLEAN = "clean"
"""`clean/<label>/<rank>.jsonl.gz`: the kept documents per language."""
PARALLEL = "parallel"
"""`parallel/<set>.jsonl`: held-out parallel sets, `{"id", "texts": {label: text}}` per line."""
DROPPED = "dropped"
"""`dropped/<step>/<label>/*.jsonl.gz`: what each step removed (with `data.keep_dropped`)."""
PHASES = "phases.json"
"""The phases that ran and what dedup reported, written before the working files go."""


def clean_dir(data_dir: Path) -> Path:
    return Path(data_dir) / CLEAN


def parallel_dir(data_dir: Path) -> Path:
    return Path(data_dir) / PARALLEL


class DataStats(Stats):
    """What the data stage's manifest reports and the report reads."""

    final: dict[str, dict[str, int]]
    """Per language: `docs` and `chars` of the clean documents."""
    steps: dict[str, dict]
    """Per step: per language read / kept / dropped by reason, and `skipped` records by reason."""
    parallel_sets: dict[str, int]
    """Units per held-out parallel set."""
