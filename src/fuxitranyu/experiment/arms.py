"""What every experiment of whole pipeline runs shares: arms that reuse stages of another run through links, and the
statistics that put the spread across seeds beside every difference between arms."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from rich.console import Console

from fuxitranyu.errors import FuxiError
from fuxitranyu.pipeline import run_pipeline


def link_shared_stages(source_run: Path, arm_run: Path, stages: tuple[str, ...]) -> None:
    """`arm_run/<stage>` is a link to `source_run/<stage>` for each shared stage, made (or re-pointed) here: the
    arms' fingerprints then say exactly what they share."""
    arm_run.mkdir(parents=True, exist_ok=True)
    for name in stages:
        link, target = arm_run / name, (source_run / name).resolve()
        if link.is_symlink():
            if link.resolve() == target:
                continue
            link.unlink()
        elif link.exists():
            raise FuxiError(f"{link} is a directory, not a link to the shared {name} stage; remove it or choose "
                            f"another --output", path=link)
        link.symlink_to(target, target_is_directory=True)


def run_arms(arms: list, source_run: Path, shared: tuple[str, ...], stages: tuple[str, ...], console: Console,
             verbose: bool) -> None:
    """Each arm (with its `label` and `recipe`) in turn: links to `source_run`'s shared stages, then its own stages,
    those its recipe does not leave out. A finished arm is skipped stage by stage, as any run is."""
    for number, arm in enumerate(arms, 1):
        console.print(f"[bold]arm {number}/{len(arms)}[/]: {arm.label}")
        link_shared_stages(source_run, arm.recipe.run_dir, shared)
        run_pipeline(arm.recipe, only=[name for name in stages if getattr(arm.recipe, name, True) is not None],
                     console=console, verbose=verbose)


def mean_sd(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation over seeds (NaN left out; σ 0 for one value)."""
    data = np.asarray([v for v in values if not math.isnan(v)], dtype=float)
    if data.size == 0:
        return math.nan, math.nan
    return float(data.mean()), float(data.std(ddof=1)) if data.size > 1 else 0.0


def compare(first: str, a: tuple[float, float], second: str, b: tuple[float, float], seeds: int,
            lower_is_better: bool = True) -> dict:
    """Two arms' means against the seeds' noise: a difference within twice the larger σ is called noise."""
    (mean_a, sd_a), (mean_b, sd_b) = a, b
    noise = 2 * max(sd_a, sd_b)
    better = first if (mean_a < mean_b) == lower_is_better else second
    verdict = ("one seed each: no noise estimate" if seeds < 2 else
               f"{better} is better beyond the seeds' noise" if abs(mean_a - mean_b) > noise else
               "within the seeds' noise")
    return {"first": first, "second": second, "difference": mean_a - mean_b, "noise": noise, "seeds": seeds,
            "verdict": verdict}


def format_mean_sd(mean: float, sd: float, digits: int = 3) -> str:
    return "–" if math.isnan(mean) else f"{mean:.{digits}f} ± {sd:.{digits}f}"
