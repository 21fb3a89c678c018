"""The `sft` and `dpo` sections of a recipe (paper section 4 and Appendix A).

TRL's trainers own the loops; these sections hold what the paper specifies and what the pipeline needs to know (where
the data and the base model come from). Any other `SFTConfig` / `DPOConfig` field goes in `overrides`, checked against
TRL's own fields.
"""

from __future__ import annotations

import difflib
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from fuxitranyu.config_base import AdamBetas, Count, LanguageList, PrecisionChoice, Section
from fuxitranyu.languages import CODES


class DataSet(Section):
    """One instruction or preference set of the mixture."""

    path: str
    """A .jsonl / .json / .parquet file, a folder of such files, or a local Hugging Face dataset (`save_to_disk`).
    Chat sets: `messages` ([{role, content}]), ShareGPT `conversations` ([{from, value}], OpenHermes 2.5), or a
    prompt and a response column (prompt/instruction/query/inputs + completion/response/output/targets; Alpaca's
    `input` is appended to the instruction). Preference sets: `prompt` (optional when `chosen` and `rejected` are
    whole conversations, as in UltraFeedback-binarized), `chosen`, `rejected`, each a string or a conversation."""
    name: str | None = None
    """Name in the mix table and the stats (default: the file or folder name)."""
    split: str = "train"
    """Split of a saved `DatasetDict`."""
    columns: dict[str, str] = {}
    """Rename columns before reading, {their name: ours}, e.g. {question: prompt, best_answer: completion}."""
    weight: float = Field(1.0, ge=0)
    """Examples taken = weight × examples kept by the language filter: 1 takes every example once, 0.5 a random
    half, 2 every example twice."""
    max_examples: Count | None = None
    """Cap on the examples taken from this set (after the weight)."""

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        stem = self.path.rstrip("/").rsplit("/", 1)[-1]
        for suffix in (".gz", ".jsonl", ".json", ".parquet"):
            stem = stem.removesuffix(suffix)
        return stem


class DemoData(Section):
    """Translation instructions built from the data stage's held-out parallel sets, so that post-training runs with
    nothing downloaded. Demo data only: it teaches the chat format and translation, not general instruction
    following. Give it other parallel sets than the evaluation's (`parallel_sets`), or the translation scores of the
    post-trained model are no longer held out."""

    examples: Count = Field(512, gt=0)
    """SFT conversations (or DPO preference pairs) to build."""
    prompt_languages: list[str] = ["en", "zh", "es", "fr", "ru", "ar"]
    """Languages the instructions are written in (each has a template in `posttrain/demo.py`)."""
    max_chars: int = Field(300, gt=0)
    """Units whose texts are longer than this are left out (short UI strings keep the demo fast)."""
    parallel_sets: list[str] = []
    """Which of the data stage's parallel sets to build from (file names without `.jsonl`); empty: all of them.
    Sets used here should not be the evaluation's or the analyses' (`evaluate.offline.parallel_sets`)."""

    @field_validator("prompt_languages")
    @classmethod
    def _templated(cls, value: list[str]) -> list[str]:
        from fuxitranyu.posttrain.demo import INSTRUCTIONS

        unknown = [code for code in value if code not in INSTRUCTIONS]
        if unknown or not value:
            raise ValueError(f"no instruction template for {unknown or 'an empty list'}; templates: "
                             f"{', '.join(INSTRUCTIONS)}")
        return value


class DataMixture(Section):
    sets: list[DataSet] = []
    """The mixture: the primary set first (paper: OpenHermes 2.5), then the supplements with their weights or caps
    (paper: Aya, Chinese sets, dart-math, Magicoder)."""
    demo: DemoData | None = DemoData()
    """Add demo data built from the held-out parallel sets (needs the data stage); null: only `sets`."""

    @model_validator(mode="after")
    def _something_to_train_on(self) -> DataMixture:
        if not self.sets and self.demo is None:
            raise ValueError("data: give `sets` or `demo` (or both)")
        labels = [s.label for s in self.sets] + (["demo"] if self.demo else [])
        repeated = sorted({name for name in labels if labels.count(name) > 1})
        if repeated:
            raise ValueError(f"data.sets: names must differ ({', '.join(repeated)} repeats); set `name`")
        return self


class LanguageFilter(Section):
    """Drops examples whose language (of what the model learns to write: the assistant's turns, or the chosen answer)
    is outside `languages`, with the data stage's identifiers: fastText lid.176, and py3langid as a second vote."""

    enabled: bool = True
    """Identify and filter; false keeps every example (counted as `und`)."""
    languages: LanguageList = list(CODES)
    """Languages kept (default: the 43 of paper Table 2)."""
    min_confidence: float = Field(0.5, ge=0, le=1)
    """fastText's answer counts only with at least this probability; below it, py3langid decides."""
    second_vote: bool = True
    """Ask py3langid when fastText is unsure or names a language outside the list; an example is dropped only when
    neither places it in the list."""



# Recipe field -> the TRL / TrainingArguments fields it sets (`overrides` may not set them too).
OWNED_TRL_FIELDS = {
    "epochs": ("num_train_epochs",),
    "max_lr": ("learning_rate",),
    "min_lr_ratio": ("lr_scheduler_type", "lr_scheduler_kwargs"),
    "warmup_ratio": ("warmup_steps",),
    "global_batch_size": ("gradient_accumulation_steps",),
    "micro_batch_size": ("per_device_train_batch_size",),
    "max_length": ("max_length",),
    "adam_betas": ("adam_beta1", "adam_beta2"),
    "adam_eps": ("adam_epsilon",),
    "weight_decay": ("weight_decay",),
    "grad_clip": ("max_grad_norm",),
    "precision": ("bf16", "fp16"),
    "activation_checkpointing": ("activation_checkpointing", "gradient_checkpointing"),
    "distributed": ("fsdp", "fsdp_config"),
    "log_every_steps": ("logging_steps",),
    "save_every_steps": ("save_strategy", "save_steps"),
    "seed": ("seed", "data_seed"),
    "neftune_alpha": ("neftune_noise_alpha",),
    "assistant_only_loss": ("assistant_only_loss",),
    "packing": ("packing", "packing_strategy", "padding_free"),
    "beta": ("beta",),
}
STAGE_TRL_FIELDS = ("output_dir", "report_to", "disable_tqdm", "run_name", "use_cpu")
"""TRL fields the stage sets from where it runs (its directory, the terminal)."""


class PostTrainSection(Section):
    """What SFT and DPO share."""

    model: str | None = None
    """Base model directory (any Hugging Face causal LM with a chat template in its tokenizer); default: the model
    of the stage before (`pretrain` for sft, `sft` for dpo)."""
    data: DataMixture = DataMixture()
    language_filter: LanguageFilter = LanguageFilter()
    max_length: int = Field(4096, gt=0)
    """Longest tokenized example (paper A: 4096 for both stages)."""
    min_lr_ratio: float = Field(0.0, ge=0, le=1)
    """The cosine schedule decays to this fraction of the peak (paper A: cosine; its floor is not given)."""
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    """Linear warmup over this fraction of the steps (paper A: 10%)."""
    global_batch_size: int = Field(320, gt=0)
    """Examples (SFT conversations, DPO pairs) per optimizer step over all devices (paper A: 320); reached by
    gradient accumulation, so it must be a multiple of micro_batch_size × devices."""
    micro_batch_size: int = Field(4, gt=0)
    """Examples per device per forward/backward."""
    adam_betas: AdamBetas = (0.9, 0.999)
    """AdamW β1, β2 (paper A: AdamW; its betas are not given, these are TRL's defaults)."""
    adam_eps: float = Field(1e-8, gt=0)
    """AdamW ε (not given in the paper; TRL's default)."""
    weight_decay: float = Field(0.0, ge=0)
    """AdamW weight decay (not given in the paper; TRL's default)."""
    grad_clip: float = Field(1.0, ge=0)
    """Clip the global gradient norm to this value; 0 turns clipping off (not given in the paper)."""
    precision: PrecisionChoice = "auto"
    """`auto` decides from the hardware as pretraining does (`fuxitranyu.runtime.choose_precision`): bf16 on GPUs
    that have it and on CPUs with a bf16 matrix unit, fp16 on older GPUs, fp32 on other CPUs."""
    activation_checkpointing: bool = False
    """Recompute activations in the backward pass to save memory (paper A: on for both stages)."""
    attention: Literal["sdpa", "flash_attention_2", "eager"] = "sdpa"
    """Attention kernel (paper A: FlashAttention-2)."""
    distributed: Literal["auto", "ddp", "fsdp"] = "auto"
    """Data parallelism under torchrun / accelerate launch: `fsdp` is FSDP2 through the Trainer (GPUs only: accelerate
    does not shard on CPUs); `auto` picks fsdp when there is more than one process on GPUs, ddp on CPUs."""
    reshard_after_forward: bool = False
    """FSDP: False keeps the weights gathered between forward and backward (ZeRO-2, the paper's SFT); True frees them
    (ZeRO-3, the paper's DPO policy)."""
    log_every_steps: int = Field(10, gt=0)
    """Write TRL's metrics to metrics.jsonl every this many optimizer steps."""
    save_every_steps: int | None = Field(None, gt=0)
    """Save a resumable checkpoint every this many steps (null: only the final model)."""
    overrides: dict[str, Any] = {}
    """Further TRL config fields, e.g. {lr_scheduler_type: linear, dataloader_num_workers: 2}; checked against TRL's
    config class. Fields that a key of this section sets are refused (set that key instead)."""

    trl_config_name: ClassVar[str] = "SFTConfig"

    @model_validator(mode="after")
    def _batch_divides(self) -> PostTrainSection:
        if self.global_batch_size % self.micro_batch_size:
            raise ValueError(f"global_batch_size {self.global_batch_size} is not a multiple of micro_batch_size "
                             f"{self.micro_batch_size}")
        if self.overrides:
            owned = {field: key for key, fields in OWNED_TRL_FIELDS.items() for field in fields
                     if key in type(self).model_fields or key == "seed"}
            check_overrides(self.overrides, trl_config_class(self.trl_config_name), owned)
        return self


class SftSection(PostTrainSection):
    max_lr: float = Field(2e-5, gt=0)
    """Peak learning rate (paper A: 2e-5)."""
    epochs: float = Field(2.0, gt=0)
    """Passes over the mixture (paper A: 2)."""
    neftune_alpha: float | None = Field(5.0, gt=0)
    """NEFTune noise scale α (paper A uses NEFTune without giving α; 5 is the NEFTune paper's usual value); null
    turns it off."""
    assistant_only_loss: bool = True
    """Train on the assistant's turns only (with their `<|im_end|>`), through the `{% generation %}` markers of the
    chat template (not stated in the paper)."""
    packing: bool = False
    """Pack examples into rows of max_length tokens without padding (TRL's best-fit-decreasing packing, padding-free:
    attention stays within each example through position ids); micro_batch_size and global_batch_size then count
    packed rows. benchmarks/bench_sft.py measures what it gains."""


class DpoSection(PostTrainSection):
    reference: str | None = None
    """Reference model directory (default: the base model, i.e. the SFT model as in the paper)."""
    beta: float = Field(0.01, gt=0)
    """DPO's β (paper A: 0.01)."""
    max_lr: float = Field(5e-7, gt=0)
    """Peak learning rate (paper A: 5e-7)."""
    epochs: float = Field(1.0, gt=0)
    """Passes over the preference set (paper A: 1)."""
    reshard_after_forward: bool = True
    """FSDP: True shards the policy ZeRO-3-style (paper A); False keeps its weights gathered (ZeRO-2)."""

    trl_config_name: ClassVar[str] = "DPOConfig"


def trl_config_class(name: str) -> type:
    import trl

    return getattr(trl, name)


def check_overrides(overrides: dict[str, Any], config_class: type, owned: dict[str, str]) -> None:
    """Every key must be a field of TRL's config class, and not one that a recipe key (`owned`: TRL field -> recipe
    key) or the stage sets."""
    import dataclasses

    known = {f.name for f in dataclasses.fields(config_class) if f.init}
    for key in overrides:
        if key in owned:
            where = "seed (the recipe's)" if owned[key] == "seed" else owned[key]
            raise ValueError(f"overrides.{key} is set by the recipe: use {where} instead")
        if key in STAGE_TRL_FIELDS:
            raise ValueError(f"overrides.{key} is set by the stage (it follows the run directory and the terminal)")
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise ValueError(f"overrides.{key} is not a field of TRL's {config_class.__name__}{hint}")
