"""The data stage's held-out parallel sets (`<data>/parallel/<name>.jsonl`) and which stage uses which.

Post-training's demo data and the evaluation and analyses all read parallel sets; a set that post-training learns
from is no longer held out for the others, so recipes give each its own sets by name.
"""

from __future__ import annotations

from pathlib import Path

from fuxitranyu.errors import FuxiError


def parallel_sets(parallel_dir: Path, names: list[str]) -> list[Path]:
    """The set files named (file names without `.jsonl`), or every set when `names` is empty."""
    available = {path.stem: path for path in sorted(Path(parallel_dir).glob("*.jsonl"))}
    if not available:
        raise FuxiError("the data stage wrote no held-out parallel sets (data.sources: held_out_domains, or a udhr / "
                        "mediawiki source with held_out: true)", path=parallel_dir)
    unknown = [name for name in names if name not in available]
    if unknown:
        raise FuxiError(f"no parallel set named {', '.join(unknown)}; the data stage wrote: "
                        f"{', '.join(available)}", path=parallel_dir)
    return [available[name] for name in names] if names else list(available.values())
