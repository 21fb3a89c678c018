"""`fuxitranyu analyze …`: the analyses on any models, outside a recipe's run (`analyze run` is the stage alone)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from fuxitranyu.analyze.artifacts import NEURONS, REPRESENTATIONS

analyze_app = typer.Typer(help="Neuron importance and representation similarity across languages (paper section 6) "
                               "of any Hugging Face causal LM, side by side or across checkpoints.",
                          no_args_is_help=True)
out = Console()
err = Console(stderr=True)

ModelsArg = Annotated[Optional[list[str]], typer.Argument(
    help="Model directories as PATH or NAME=PATH, or a folder of pretraining checkpoints (step-NNNNNN); several "
         "are analysed side by side. Default: the recipe's pretrain/model.")]
ParallelOpt = Annotated[Optional[list[Path]], typer.Option(
    help="Parallel set (repeatable): our {id, texts} JSONL (a file or folder), a TSV whose header names the "
         "languages, or a FLORES-200 folder (e.g. flores200_dataset/devtest). Default: the recipe's data/parallel.")]
LanguageOpt = Annotated[Optional[list[str]], typer.Option(
    help="Language to compare (repeatable, or comma-separated); default: every language of the parallel set.")]
MaxSentencesOpt = Annotated[int, typer.Option(
    min=0, help="Aligned units per language at most (a seeded sample); 0: all.")]
BatchTokensOpt = Annotated[int, typer.Option(min=1, help="Padded tokens per forward pass (bounds activation memory).")]
PrecisionOpt = Annotated[str, typer.Option(help="auto, fp32 or bf16.")]
OutOpt = Annotated[Path, typer.Option(help="Folder for the tables and figures.")]
TokenizerOpt = Annotated[Optional[Path], typer.Option(help="Tokenizer directory for models that have none beside "
                                                           "them (checkpoints).")]
CheckpointsOpt = Annotated[Optional[int], typer.Option(
    min=1, help="At most this many checkpoints of a checkpoints folder, evenly spread, the last included (default: "
                "all).")]
RecipeOpt = Annotated[str, typer.Option(help="Recipe whose run directory gives the defaults.")]
SetOpt = Annotated[Optional[list[str]], typer.Option("--set", help="Override a recipe value: section.key=value.")]
SeedOpt = Annotated[int, typer.Option(help="Seed of the sentence sample.")]
FiguresOpt = Annotated[bool, typer.Option(help="Write PNG figures (needs matplotlib).")]


@dataclass(frozen=True)
class _Inputs:
    """What a command analyses: the models and the aligned texts."""

    specs: list
    texts: object


def _inputs(models, parallel, language, max_sentences, tokenizer, checkpoints, recipe, set_, seed) -> _Inputs:
    """The models and aligned texts of the arguments, the recipe's run directory filling what is not given."""
    from fuxitranyu.analyze.inputs import aligned_texts, parse_model_argument
    from fuxitranyu.config_base import language_labels
    from fuxitranyu.data.artifacts import parallel_dir
    from fuxitranyu.data.parallel import read_parallel
    from fuxitranyu.errors import FuxiError
    from fuxitranyu.pipeline import finished_stage
    from fuxitranyu.recipe import load_recipe
    from fuxitranyu.stage import MODEL

    run = load_recipe(recipe, set_ or []) if not (models and parallel) else None
    specs = [spec for argument in (models or [str(finished_stage(run, "pretrain") / MODEL)])
             for spec in parse_model_argument(argument, tokenizer, checkpoints)]
    names = [spec.name for spec in specs]
    if len(set(names)) != len(names):
        raise FuxiError(f"two models are named alike ({', '.join(names)}); name them with NAME=PATH")
    units = read_parallel(parallel or [parallel_dir(finished_stage(run, "data"))], keep_unsupported=True)
    try:
        languages = language_labels([c.strip() for item in language or [] for c in item.split(",") if c.strip()],
                                    keep_unsupported=True)
    except ValueError as error:
        raise FuxiError(f"--language: {error}") from None
    return _Inputs(specs, aligned_texts(units, languages, max_sentences or None, seed))


@analyze_app.command("neurons")
def neurons(models: ModelsArg = None, parallel: ParallelOpt = None, language: LanguageOpt = None,
            max_sentences: MaxSentencesOpt = 200, batch_tokens: BatchTokensOpt = 4096,
            precision: PrecisionOpt = "auto", out_dir: OutOpt = Path("analysis"), tokenizer: TokenizerOpt = None,
            checkpoints: CheckpointsOpt = None, recipe: RecipeOpt = "tiny", set_: SetOpt = None,
            seed: SeedOpt = 1234, figures: FiguresOpt = True,
            save_units: Annotated[bool, typer.Option(help="Also write every unit's importance (.npz).")] = False):
    """Importance of each layer and component per language: |∂L/∂h · h| from one forward and backward per batch
    (paper 6.1, Figures 4 and 5)."""
    from fuxitranyu.analyze.analysis import Settings, analyze_models, write_results

    given = _inputs(models, parallel, language, max_sentences, tokenizer, checkpoints, recipe, set_, seed)
    texts = given.texts
    settings = Settings(batch_tokens=batch_tokens, precision=_precision(precision), figures=figures,
                        save_units=save_units)
    results = analyze_models(given.specs, texts, None, settings, err)
    write_results(results, out_dir, settings, texts, None, err)
    for result in results.neurons:
        table = Table("language", *map(str, range(result.importance.shape[1])),
                      title=f"{result.model}: importance per layer")
        for language_name, row in zip(result.languages, result.layer_importance):
            table.add_row(language_name, *(f"{value:.3g}" for value in row))
        out.print(table)
    err.print(f"wrote {out_dir / NEURONS}")


@analyze_app.command("representations")
def representations(models: ModelsArg = None, parallel: ParallelOpt = None, language: LanguageOpt = None,
                    max_sentences: MaxSentencesOpt = 200, batch_tokens: BatchTokensOpt = 4096,
                    precision: PrecisionOpt = "auto", out_dir: OutOpt = Path("analysis"),
                    tokenizer: TokenizerOpt = None, checkpoints: CheckpointsOpt = None, recipe: RecipeOpt = "tiny",
                    set_: SetOpt = None, seed: SeedOpt = 1234, figures: FiguresOpt = True,
                    order_by: Annotated[Optional[Path], typer.Option(
                        help="Order languages by their share of this mix (a mix stage folder, its index.json or "
                             "plan.json); default: as given.")] = None,
                    heatmap_layer: Annotated[Optional[int], typer.Option(
                        help="Layer of the heatmap (Figure 3): 0 the first, -1 the last; default: the middle "
                             "one.")] = None):
    """Cosine similarity between languages' mean last-token states at every layer, the embedding output included
    (paper 6.2, Figures 3 and 6)."""
    from fuxitranyu.analyze.analysis import Settings, analyze_models, write_results
    from fuxitranyu.analyze.inputs import order_by_share, training_shares

    given = _inputs(models, parallel, language, max_sentences, tokenizer, checkpoints, recipe, set_, seed)
    texts = given.texts
    if order_by is not None:
        texts = texts.reordered(order_by_share(texts.languages, training_shares(order_by)))
    settings = Settings(batch_tokens=batch_tokens, precision=_precision(precision), figures=figures,
                        heatmap_layer=heatmap_layer)
    results = analyze_models(given.specs, None, texts, settings, err)
    write_results(results, out_dir, settings, None, texts, err)
    points = max((r.points for r in results.representations), key=len)
    table = Table("model", *points, title="mean similarity between languages")
    for result in results.representations:
        values = [f"{value:.3f}" for value in result.mean_similarity]
        table.add_row(result.model, *values, *[""] * (len(points) - len(values)))
    out.print(table)
    err.print(f"wrote {out_dir / REPRESENTATIONS}")


def _precision(value: str) -> str:
    from fuxitranyu.errors import FuxiError

    if value not in ("auto", "fp32", "bf16"):
        raise FuxiError(f"--precision {value!r}: expected auto, fp32 or bf16")
    return value
