"""The `evaluate` section of a recipe: which models, which suite, and how lm-evaluation-harness runs them."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator, model_validator

from fuxitranyu.config_base import PrecisionChoice, Section


def is_stage(entry: str) -> bool:
    """A `models` entry that names a stage (not a directory, not `base`)."""
    return not is_model_path(entry) and entry != "base"


def is_model_path(entry: str) -> bool:
    """A `models` entry is a directory when written as a path (`./m`, `/data/m`, `runs/x/sft/model`), else the name
    of a stage."""
    return "/" in entry or entry.startswith(("~", "."))


class OfflineTasks(Section):
    """How the stage turns the data stage's held-out parallel sets into the files of the suite's offline tasks (the
    translation tasks translate from English into every other language of the sets)."""

    units_per_language: int = Field(64, gt=0)
    """Units per language for bits per byte and for the translation multiple choice (the first ones in a seeded
    order)."""
    translation_units: int = Field(16, gt=0)
    """Units per target language for the translation chrF task (generation costs far more than scoring)."""
    max_bytes: int = Field(200, gt=0)
    """Units longer than this many UTF-8 bytes in the source or target language are left out: catalogs hold a few
    long help texts that would dominate every task, and a byte-level tokenizer never makes more tokens than bytes,
    so a limit below the model's context keeps every choice inside it."""
    min_units: int = Field(8, ge=4)
    """A language enters the offline tasks only with at least this many units (the multiple choice needs three wrong
    translations beside the right one)."""
    parallel_sets: list[str] = []
    """Which of the data stage's parallel sets the tasks are cut from (file names without `.jsonl`); empty: all of
    them. Keep them apart from the sets post-training's demo data learns from (`sft.data.demo.parallel_sets`)."""


class EvaluateSection(Section):
    suite: str = "local"
    """A suite shipped with fuxitranyu (`local`: offline tasks on the held-out parallel sets; `paper-base`: the
    paper's Table 5; `paper-chat`: Table 6) or the path of a suite YAML file."""
    models: list[str] = ["pretrain"]
    """What to evaluate: names of stages that write a model directory (`<stage>/model/`) and/or paths of Hugging
    Face model directories (written with a `/`, e.g. `./my-model`); `base` is the model `model.init_from` names,
    and every other model is then compared with it language by language (gain against forgetting)."""
    chat_models: list[str] = []
    """Entries of `models` that are prompted through their chat template (lm-eval's `apply_chat_template`, few-shot
    examples as turns); the others get plain text prompts."""
    data_dir: Path | None = None
    """Folder holding local copies of benchmarks, each at `<data_dir>/<dataset path>` in the original schema (as
    `hf download --repo-type dataset <path> --local-dir <data_dir>/<path>` writes it). Benchmarks not there must be
    in the Hugging Face cache; nothing is ever downloaded."""
    backend: str = "hf"
    """lm-eval model type: `hf` (transformers, any causal LM incl. ours) or another one lm-eval knows (`vllm`,
    `sglang`, ...) for a checkpoint exported to a stock architecture (`fuxitranyu export`)."""
    model_args: dict[str, str | int | float | bool] = {}
    """Extra model arguments passed to the backend (e.g. `tensor_parallel_size` for vLLM)."""
    precision: PrecisionChoice = "auto"
    """dtype of the evaluated weights; `auto` decides from the hardware (`fuxitranyu.runtime.choose_precision`)."""
    batch_size: int = Field(16, gt=0)
    """Requests per forward pass."""
    limit: int | None = Field(None, gt=0)
    """Evaluate only the first this-many examples of every task (lm-eval's `--limit`: for quick looks, not for
    reporting)."""
    bootstrap_iters: int = Field(1000, ge=0)
    """Bootstrap resamples for the standard error of corpus metrics (BLEU, chrF); 0 skips them."""
    max_new_tokens: int = Field(128, gt=0)
    """Upper bound on generated tokens per answer in generation tasks."""
    checkpoint_every: int = Field(0, ge=0)
    """Also evaluate every k-th checkpoint of each evaluated stage that keeps `checkpoints/` (the last one always),
    and draw per-language curves against tokens seen; 0: only the final models."""
    offline: OfflineTasks = OfflineTasks()

    @field_validator("models")
    @classmethod
    def _some_models(cls, models: list[str]) -> list[str]:
        if not models:
            raise ValueError("list at least one stage name or model directory")
        if len(set(models)) != len(models):
            raise ValueError(f"a model is listed twice: {models}")
        return models

    @model_validator(mode="after")
    def _chat_models_listed(self) -> EvaluateSection:
        unknown = [name for name in self.chat_models if name not in self.models]
        if unknown:
            raise ValueError(f"evaluate.chat_models: {', '.join(unknown)} not in evaluate.models {self.models}")
        return self
