"""`fuxitranyu evaluate MODEL... --suite NAME`: the stage's work on models given on the command line."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from fuxitranyu.errors import FuxiError
from fuxitranyu.evaluate.config import EvaluateRecipe
from fuxitranyu.evaluate.harness import ModelToEvaluate, Settings
from fuxitranyu.evaluate.run import evaluate_models, prepare
from fuxitranyu.evaluate.suite import load_suite
from fuxitranyu.evaluate.sweep import sweep
from fuxitranyu.hub import model_reachable
from fuxitranyu.pretrain.checkpoint import list_checkpoints
from fuxitranyu.tokenizer.fertility import read_parallel


def _model_name(path: Path) -> str:
    return path.parent.name if path.name == "model" else path.name


def evaluate_paths(paths: list[str], recipe, *, suite: str, out: Path, chat: bool = False,
                   parallel: list[Path] | None = None, data_dir: Path | None = None, backend: str | None = None,
                   every: int = 1, tokenizer: Path | None = None, limit: int | None = None,
                   console: Console) -> None:
    """Evaluate model directories (and sweep checkpoint folders) into `out`, with the recipe's evaluate settings
    (its defaults when it has no evaluate section) and the options given."""
    section = (recipe.evaluate or EvaluateRecipe()).model_copy(update={
        "suite": suite, "data_dir": data_dir or (recipe.evaluate.data_dir if recipe.evaluate else None),
        **({"backend": backend} if backend else {}), **({"limit": limit} if limit else {})})
    models, sweeps = [], []
    for given in paths:
        path = Path(given).expanduser()
        if list_checkpoints(path):
            sweeps.append(path)
        elif (path / "config.json").is_file():
            models.append(ModelToEvaluate(_model_name(path), str(path), chat))
        elif path.exists():
            raise FuxiError("neither a model directory (config.json) nor a checkpoints folder (step-*)", path=path)
        elif model_reachable(given):
            models.append(ModelToEvaluate(given, given, chat))  # a hub name the backend reads from its cache
        else:
            raise FuxiError("no such model directory, and no model of that name in the Hugging Face cache or on the "
                            "hub", path=given)
    loaded = load_suite(suite)
    units = None
    if loaded.needs_parallel:
        found = read_parallel(parallel or [recipe.run_dir / "data" / "parallel"])
        if found.skipped_languages:
            console.print(f"[yellow]parallel set: skipped languages that are not supported: "
                          f"{' '.join(sorted(found.skipped_languages))}[/]")
        units = found.units
    evaluation = prepare(loaded, out, section.data_dir, units, section.offline, recipe.seed)
    settings = Settings.from_recipe(section, recipe.seed)
    console.print(f"[bold]evaluate[/]: suite {loaded.name}, {len(evaluation.tasks.tasks)} tasks -> {out}")
    if models:
        evaluate_models(evaluation, models, settings, console)
    for folder in sweeps:
        beside = folder.parent / "model"
        sweep(folder, evaluation, settings, folder.parent.name, tokenizer or (beside if beside.is_dir() else None),
              every, console)
