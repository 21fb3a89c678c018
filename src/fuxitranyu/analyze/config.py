"""The `analyze` section of a recipe: the paper's neuron and representation analyses (section 6, Appendix C)."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import Field, field_validator, model_validator

from fuxitranyu.config_base import AnyLanguageList, PrecisionChoice, Section

STAGE_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
"""A `models` entry of this form names a stage (its `model/` directory); anything else is a model directory."""


class NeuronAnalysis(Section):
    """Neuron importance (paper 6.1): Φ(i) = |∂L/∂h_i · h_i| per output unit of the tracked modules, summed over a
    component's units, averaged over a language's sentences."""

    languages: AnyLanguageList = []
    """Languages to compare (empty: every language of the parallel set). Only units that have a text in each of them
    are used. Paper 6.1.1: ar bn es fr id pt ta vi zh en de hu it ru sk."""
    save_units: bool = False
    """Also write the importance of every single unit (`units-<model>.npz`, languages × units per module)."""



class RepresentationAnalysis(Section):
    """Representation similarity (paper 6.2): per layer (the embedding output included), the mean last-token hidden
    state of each language, and the cosine similarity of every pair of languages."""

    languages: AnyLanguageList = []
    """Languages to compare (empty: every language of the parallel set), in this order unless `order_by_share`.
    Paper 6.2.1: en zh de fr es ru it pt nl pl ja vi cs tr hu el sv ro uk hi."""
    order_by_share: bool = True
    """Order the languages by their share of the pretraining data, largest first, as the paper's Figure 3 (from the
    mix stage's sampled tokens; languages the mix does not have come last)."""
    heatmap_layer: int | None = None
    """Layer of the similarity heatmap (Figure 3): 0 is the first decoder layer, -1 the last; default: the middle
    layer. Every layer's matrix is in `similarity.json` either way."""


class AnalyzeSection(Section):
    models: list[str] = ["pretrain"]
    """Models to analyse side by side: stage names (their `model/` directory, e.g. `pretrain`, `sft`, `dpo`) and/or
    Hugging Face model directories, as `PATH` or `NAME=PATH` (e.g. `bloom=/models/bloom-7b1`; the paper compares
    FuxiTranyu-8B with BLOOM-7B1). A lowercase word is a stage; write a relative directory as `./dir`. A directory
    outside the run is not fingerprinted by its content: re-run the stage (`--from analyze`) after changing it."""
    checkpoints: int = Field(0, ge=0)
    """Also analyse up to this many of the pretrain stage's checkpoints, evenly spread over training with the last
    one included, to see how importance and similarity evolve with tokens seen (0: none)."""
    parallel: list[Path] = []
    """Parallel sets (files or folders: our `{"id", "texts"}` JSONL, TSV with a language header, or FLORES-200's
    layout). Empty: the data stage's held-out `parallel/` sets. Paper: Flores-200 (dev + devtest, 2009 sentences)."""
    max_sentences: int | None = Field(200, gt=0)
    """Aligned units per language at most (a seeded sample when there are more); null: all of them."""
    batch_tokens: int = Field(4096, gt=0)
    """Padded tokens per forward pass (batch size × longest sentence): bounds activation memory. A GPU that runs out
    of memory halves the batch and retries."""
    precision: PrecisionChoice = "auto"
    """Weights and activations dtype: `auto` is bf16 where the hardware runs it fast (see pretrain.precision), fp32
    otherwise; fp16 is not offered, single-unit gradients underflow in it."""
    figures: bool = True
    """Write PNG figures in the style of the paper's Figures 3–6 (needs matplotlib)."""
    neurons: NeuronAnalysis | None = NeuronAnalysis()
    """Neuron importance; null leaves it out."""
    representations: RepresentationAnalysis | None = RepresentationAnalysis()
    """Representation similarity; null leaves it out."""

    @field_validator("models")
    @classmethod
    def _models(cls, models: list[str]) -> list[str]:
        if not models:
            raise ValueError("models: name at least one stage or model directory")
        names = [model_name(entry) for entry in models]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"models: two entries are named {', '.join(repeated)}; name them with NAME=PATH")
        return models

    @model_validator(mode="after")
    def _something_to_do(self) -> AnalyzeSection:
        if self.neurons is None and self.representations is None:
            raise ValueError("analyze: neurons and representations are both null; drop the section instead")
        return self

    def model_stages(self) -> list[str]:
        return [entry for entry in self.models if STAGE_NAME.match(entry)]

    def needs(self) -> tuple[str, ...]:
        """The stages this analysis reads, in a stable order."""
        needed = [] if self.parallel else ["data"]
        if self.representations is not None and self.representations.order_by_share:
            needed.append("mix")
        needed += self.model_stages()
        if self.checkpoints:
            needed.append("pretrain")
        return tuple(dict.fromkeys(needed))


def split_named_path(argument: str) -> tuple[str | None, Path]:
    """`NAME=PATH` -> (NAME, PATH); a plain `PATH` (even one with `=` in it that exists) -> (None, PATH)."""
    name, sep, path = argument.partition("=")
    if sep and name and path and "/" not in name and not Path(argument).exists():
        return name, Path(path)
    return None, Path(argument)


def model_name(entry: str) -> str:
    """The name a `models` entry goes by in tables and figures: the stage, NAME of NAME=PATH, or the folder's name."""
    if STAGE_NAME.match(entry):
        return entry
    name, path = split_named_path(entry)
    return name or path.name or entry
