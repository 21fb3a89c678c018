"""Run the analyses over several models (side by side, or a run's checkpoints) and write tables and figures.

    <out>/neurons/          inputs.json, importance.csv, importance.json, layers-<model>.png (Fig. 4),
                            components-<model>.png (Fig. 5), evolution.png (checkpoints), units-<model>.npz
    <out>/representations/  inputs.json, similarity.csv, mean_similarity.csv, similarity.json,
                            heatmap.png (Fig. 3), mean_similarity.png (Fig. 6), evolution.png (checkpoints)
"""

from __future__ import annotations

import gc
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

import fuxitranyu.analyze.plots as plots
from fuxitranyu.analyze.artifacts import INPUTS, NEURONS, REPRESENTATIONS
from fuxitranyu.analyze.hooks import find_layout
from fuxitranyu.analyze.inputs import ModelSpec, ParallelTexts, load_analyzed_model
from fuxitranyu.analyze.neurons import NeuronImportance, neuron_importance
from fuxitranyu.analyze.outputs import file_safe, write_neuron_tables, write_similarity_tables
from fuxitranyu.analyze.representations import RepresentationSimilarity, representation_similarity
from fuxitranyu.errors import FuxiError
from fuxitranyu.io import atomic_write_json
from fuxitranyu.runtime import Precision, choose_precision, default_device


@dataclass(frozen=True)
class Settings:
    batch_tokens: int = 4096
    precision: str = "auto"
    figures: bool = True
    save_units: bool = False
    heatmap_layer: int | None = None


@dataclass
class Results:
    neurons: list[NeuronImportance] = field(default_factory=list)
    representations: list[RepresentationSimilarity] = field(default_factory=list)
    models: list[dict[str, Any]] = field(default_factory=list)
    """Per model: name, path, tokens seen, layout, seconds."""
    precision: Precision | None = None
    device: str = ""


def analysis_precision(requested: str, device: torch.device) -> Precision:
    """`choose_precision`, except that fp16 (what `auto` picks on a GPU without bf16) becomes fp32: the gradients
    of single units underflow in fp16 without loss scaling."""
    chosen = choose_precision(requested, device)
    if chosen.name == "fp16":
        return Precision("fp32", f"{chosen.reason}; fp16 is not used for gradients of single units")
    return chosen


def analyze_models(specs: Sequence[ModelSpec], neuron_texts: ParallelTexts | None,
                   representation_texts: ParallelTexts | None, settings: Settings,
                   console: Console | None = None) -> Results:
    """Each model in turn (one in memory at a time): neuron importance on `neuron_texts`, representation similarity
    on `representation_texts` (either may be None)."""
    console = console or Console(stderr=True)
    device = default_device()
    precision = analysis_precision(settings.precision, device)
    results = Results(precision=precision, device=str(device))
    for spec in specs:
        if spec.same_as is not None:
            _reuse(results, spec)
            continue
        started = time.perf_counter()
        loaded = load_analyzed_model(spec, device, precision.autocast_dtype or torch.float32)
        layout = find_layout(loaded.model)
        if representation_texts is not None:
            check_heatmap_layer(settings.heatmap_layer, len(layout.layers), spec)
        arguments = dict(name=spec.name, batch_tokens=settings.batch_tokens, device=device, console=console,
                         layout=layout)
        if neuron_texts is not None:
            result = neuron_importance(loaded.model, loaded.tokenizer, neuron_texts, **arguments)
            result.tokens_seen = spec.tokens
            results.neurons.append(result)
        if representation_texts is not None:
            result = representation_similarity(loaded.model, loaded.tokenizer, representation_texts, **arguments)
            result.tokens_seen = spec.tokens
            results.representations.append(result)
        seconds = round(time.perf_counter() - started, 2)
        results.models.append({"name": spec.name, "path": str(spec.path), "step": spec.step,
                               "tokens_seen": spec.tokens, "class": layout.model_class,
                               "layers": len(layout.layers), "components": list(layout.components),
                               "seconds": seconds})
        console.print(f"analyze: {spec.name} ({layout.model_class}, {len(layout.layers)} layers) in {seconds:.1f}s")
        del loaded
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return results


def check_heatmap_layer(layer: int | None, layers: int, spec: ModelSpec) -> None:
    """The heatmap's layer must be one of the model's: 0 … layers − 1, or counted from the end (−1 the last)."""
    if layer is not None and not -layers <= layer < layers:
        raise FuxiError(f"heatmap layer {layer} does not exist: {spec.name} has {layers} decoder layers (0 … "
                        f"{layers - 1}, or -1 … -{layers} from the last)", path=spec.path)


def _reuse(results: Results, spec: ModelSpec) -> None:
    """Results of the model `spec.same_as` (analysed before it) under `spec`'s name and tokens seen."""
    for found in (results.neurons, results.representations):
        found += [replace(r, model=spec.name, tokens_seen=spec.tokens) for r in found if r.model == spec.same_as]
    entry = next(m for m in results.models if m["name"] == spec.same_as)
    results.models.append({**entry, "name": spec.name, "path": str(spec.path), "step": spec.step,
                           "tokens_seen": spec.tokens, "seconds": 0.0, "same_as": spec.same_as})


def write_results(results: Results, out_dir: Path, settings: Settings, neuron_texts: ParallelTexts | None,
                  representation_texts: ParallelTexts | None, console: Console | None = None) -> dict[str, Any]:
    """Tables, figures and the inputs of each analysis under `out_dir`; returns what was written, for a manifest."""
    console = console or Console(stderr=True)
    figures = settings.figures and not plots.matplotlib_missing()
    if settings.figures and not figures:
        console.print("[yellow]analyze: matplotlib is not installed, no figures (pip install 'fuxitranyu[plot]')")
    written: dict[str, list[str]] = {}
    common = {"models": results.models, "device": results.device,
              "precision": results.precision.as_dict() if results.precision else None}
    if results.neurons:
        folder = out_dir / NEURONS
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_json(folder / INPUTS, {**common, "parallel": neuron_texts.describe()})
        written["neurons"] = [INPUTS, *write_neuron_tables(results.neurons, folder, settings.save_units)]
        if figures:
            written["neurons"] += _neuron_figures(results.neurons, folder)
    if results.representations:
        folder = out_dir / REPRESENTATIONS
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_json(folder / INPUTS, {**common, "parallel": representation_texts.describe()})
        written["representations"] = [INPUTS, *write_similarity_tables(results.representations, folder)]
        if figures:
            written["representations"] += _similarity_figures(results.representations, folder, settings)
    return {"files": written, "figures": figures}


def _neuron_figures(results: Sequence[NeuronImportance], folder: Path) -> list[str]:
    names = []
    for result in results:
        if result.tokens_seen is not None:
            continue
        for kind, draw in (("layers", plots.layer_importance_figure), ("components",
                                                                       plots.component_importance_figure)):
            name = f"{kind}-{file_safe(result.model)}.png"
            draw(result, folder / name)
            names.append(name)
    checkpoints = [r for r in results if r.tokens_seen is not None]
    if len(checkpoints) > 1:
        plots.importance_evolution_figure(checkpoints, folder / "evolution.png")
        names.append("evolution.png")
    return names


def _similarity_figures(results: Sequence[RepresentationSimilarity], folder: Path, settings: Settings) -> list[str]:
    models = [r for r in results if r.tokens_seen is None] or [max(results, key=lambda r: r.tokens_seen)]
    plots.similarity_heatmaps_figure(models, settings.heatmap_layer, folder / "heatmap.png")
    plots.mean_similarity_figure(models, folder / "mean_similarity.png", "mean similarity between languages")
    names = ["heatmap.png", "mean_similarity.png"]
    checkpoints = [r for r in results if r.tokens_seen is not None]
    if len(checkpoints) > 1:
        plots.mean_similarity_figure(sorted(checkpoints, key=lambda r: r.tokens_seen), folder / "evolution.png",
                                     "mean similarity between languages across checkpoints")
        names.append("evolution.png")
    return names
