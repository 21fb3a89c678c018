"""The `analyze` stage: neuron importance and representation similarity of the recipe's models (paper section 6) on
held-out parallel texts, tables and figures into the stage directory (layout in `analysis.py`)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from fuxitranyu.analyze.analysis import Settings, analyze_models, write_results
from fuxitranyu.analyze.config import STAGE_NAME, AnalyzeSection, model_name, split_named_path
from fuxitranyu.analyze.inputs import (
    ModelSpec,
    ParallelTexts,
    aligned_texts,
    checkpoint_specs,
    model_spec,
    order_by_share,
    training_shares,
)
from fuxitranyu.data.artifacts import parallel_dir
from fuxitranyu.data.parallel import read_parallel
from fuxitranyu.stage import CHECKPOINTS, MODEL, Stage, StageContext


def recipe_models(section: AnalyzeSection, ctx: StageContext) -> list[ModelSpec]:
    """The `models` entries (a stage's `model/`, or a directory), then the chosen pretraining checkpoints."""
    specs = []
    for entry in section.models:
        if STAGE_NAME.match(entry):
            specs.append(model_spec(ctx.inputs[entry] / MODEL, entry))
        else:
            specs.append(model_spec(split_named_path(entry)[1], model_name(entry)))
    if section.checkpoints:
        pretrain = ctx.inputs["pretrain"]
        checkpoints = checkpoint_specs(pretrain / CHECKPOINTS, pretrain / MODEL, section.checkpoints)
        if "pretrain" in section.models:  # the stage's model/ is its last checkpoint: analysed once
            checkpoints[-1] = replace(checkpoints[-1], same_as="pretrain")
        specs += checkpoints
    return specs


@dataclass(frozen=True)
class RecipeTexts:
    """The aligned texts of each analysis; None for an analysis the recipe leaves out."""

    neurons: ParallelTexts | None
    representations: ParallelTexts | None


def recipe_texts(section: AnalyzeSection, ctx: StageContext) -> RecipeTexts:
    parallel = read_parallel(section.parallel or [parallel_dir(ctx.inputs["data"])], keep_unsupported=True)
    seed = ctx.recipe.seed
    neurons = representations = None
    if section.neurons is not None:
        neurons = aligned_texts(parallel, section.neurons.languages, section.max_sentences, seed)
    if section.representations is not None:
        representations = aligned_texts(parallel, section.representations.languages, section.max_sentences, seed)
        if section.representations.order_by_share:
            shares = training_shares(ctx.inputs["mix"])
            representations = representations.reordered(order_by_share(representations.languages, shares))
    return RecipeTexts(neurons, representations)


def run_analyze_stage(ctx: StageContext) -> dict[str, Any]:
    section = ctx.recipe.analyze
    texts = recipe_texts(section, ctx)
    neuron_texts, representation_texts = texts.neurons, texts.representations
    settings = Settings(batch_tokens=section.batch_tokens, precision=section.precision, figures=section.figures,
                        save_units=section.neurons is not None and section.neurons.save_units,
                        heatmap_layer=section.representations.heatmap_layer if section.representations else None)
    results = analyze_models(recipe_models(section, ctx), neuron_texts, representation_texts, settings, ctx.console)
    written = write_results(results, ctx.out_dir, settings, neuron_texts, representation_texts, ctx.console)
    summary = {
        "models": results.models,
        "precision": results.precision.as_dict(),
        "device": results.device,
        "neurons": {"languages": list(neuron_texts.languages), "units": len(neuron_texts.unit_ids),
                    "sha256": neuron_texts.digest()} if neuron_texts else None,
        "representations": {"languages": list(representation_texts.languages),
                            "units": len(representation_texts.unit_ids),
                            "sha256": representation_texts.digest()} if representation_texts else None,
        "mean_similarity": {r.model: [round(float(v), 4) for v in r.mean_similarity]
                            for r in results.representations},
        "layer_importance": {r.model: [round(float(v), 6) for v in r.layer_importance.mean(axis=0)]
                             for r in results.neurons},
    }
    return {**summary, **written}


STAGE = Stage("analyze", sections=("analyze",), needs=lambda recipe: recipe.analyze.needs(), run=run_analyze_stage,
              description="neuron importance and representation similarity across languages (paper section 6)",
              enabled=lambda recipe: recipe.analyze is not None)
