"""`fuxitranyu evaluate MODEL... --suite NAME`: the stage's flow (`flow.run_evaluation`) on models and checkpoint
folders given on the command line."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from rich.console import Console

from fuxitranyu.data.parallel import read_parallel
from fuxitranyu.errors import FuxiError
from fuxitranyu.evaluate.config import EvaluateSection
from fuxitranyu.evaluate.flow import SweepRequest, run_evaluation
from fuxitranyu.evaluate.harness import ModelToEvaluate
from fuxitranyu.evaluate.suite import load_suite
from fuxitranyu.hub import model_reachable
from fuxitranyu.pretrain.checkpoint import list_checkpoints
from fuxitranyu.stage import MODEL


def _model_name(path: Path) -> str:
    return path.parent.name if path.name == MODEL else path.name


def evaluate_paths(paths: list[str], recipe, *, suite: str, out: Path, default_parallel: Callable[[], list[Path]],
                   chat: bool = False, parallel: list[Path] | None = None, data_dir: Path | None = None,
                   backend: str | None = None, every: int = 1, tokenizer: Path | None = None,
                   limit: int | None = None, console: Console) -> None:
    """Evaluate model directories (and sweep checkpoint folders) into `out`, with the recipe's evaluate settings
    (its defaults when it has no evaluate section) and the options given. Without `parallel`, the offline tasks read
    `default_parallel()` (the recipe's run's sets, as the stage does)."""
    section = (recipe.evaluate or EvaluateSection()).model_copy(update={
        "suite": suite, "data_dir": data_dir or (recipe.evaluate.data_dir if recipe.evaluate else None),
        **({"backend": backend} if backend else {}), **({"limit": limit} if limit else {})})
    models, sweeps = [], []
    for given in paths:
        path = Path(given).expanduser()
        if list_checkpoints(path):
            beside = path.parent / MODEL
            sweeps.append(SweepRequest(path, path.parent.name, tokenizer or (beside if beside.is_dir() else None),
                                       every))
        elif (path / "config.json").is_file():
            models.append(ModelToEvaluate(_model_name(path), str(path), chat))
        elif path.exists():
            raise FuxiError("neither a model directory (config.json) nor a checkpoints folder (step-*)", path=path)
        elif model_reachable(given):
            models.append(ModelToEvaluate(given, given, chat))  # a hub name the backend reads from its cache
        else:
            raise FuxiError("no such model directory, and no model of that name in the Hugging Face cache or on the "
                            "hub", path=given)

    def units() -> list[dict]:
        found = read_parallel(parallel or default_parallel())
        if found.skipped_languages:
            console.print(f"[yellow]parallel set: skipped languages that are not supported: "
                          f"{' '.join(sorted(found.skipped_languages))}[/]")
        return found.units

    run_evaluation(load_suite(suite), out, section, units, models, sweeps, recipe.seed, console)
