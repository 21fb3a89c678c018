"""TRL's trainers configured from a recipe section: the arguments, the metrics file, the run and its resume.

TRL owns the loop; this module maps the section's keys onto `SFTConfig` / `DPOConfig` (the table is
`config.OWNED_TRL_FIELDS`), adds the section's checked `overrides`, and leaves the rest at TRL's defaults, except
the two that TRL sets for GPUs and that we decide from the hardware: `bf16` (via `runtime.choose_precision`) and
`gradient_checkpointing` (from the recipe).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from transformers import TrainerCallback
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from fuxitranyu.errors import FuxiError
from fuxitranyu.posttrain.config import DpoRecipe, PostTrainRecipe, SftRecipe
from fuxitranyu.runtime import Precision, World

if TYPE_CHECKING:
    from transformers import Trainer

METRICS = "metrics.jsonl"
CHECKPOINTS = "checkpoints"


def gradient_accumulation(section: PostTrainRecipe, world: World, key: str) -> int:
    per_step = section.micro_batch_size * world.world_size
    if section.global_batch_size % per_step:
        raise FuxiError(f"{key}.global_batch_size {section.global_batch_size} is not a multiple of micro_batch_size "
                        f"{section.micro_batch_size} × {world.world_size} processes")
    return section.global_batch_size // per_step


def _distributed(section: PostTrainRecipe, key: str, world: World, cpu: bool) -> dict[str, Any]:
    """FSDP2 through the Trainer, or nothing (the Trainer then runs DDP under torchrun). accelerate shards with FSDP
    only on accelerators: on CPUs it would silently run DDP, so an explicit `fsdp` there is an error."""
    if section.distributed == "fsdp" and cpu:
        raise FuxiError(f"{key}.distributed=fsdp: accelerate runs FSDP only on GPUs (and other accelerators); on CPUs "
                        f"use ddp (or auto, which picks it)")
    fsdp = section.distributed == "fsdp" or (section.distributed == "auto" and world.distributed and not cpu)
    if not fsdp:
        return {}
    config = {"version": 2, "reshard_after_forward": section.reshard_after_forward}
    if section.activation_checkpointing:  # FSDP's own checkpointing avoids a second all-gather in the backward
        config["activation_checkpointing"] = True
    return {"fsdp": True, "fsdp_config": config, "activation_checkpointing": False}


def trl_arguments(section: PostTrainRecipe, key: str, seed: int, out_dir: Path, precision: Precision,
                  world: World, cpu: bool) -> dict[str, Any]:
    """Keyword arguments of `SFTConfig` / `DPOConfig` for a section (`key`: sft or dpo; `cpu`: no accelerator)."""
    args: dict[str, Any] = {
        "output_dir": str(out_dir / CHECKPOINTS),
        "report_to": "none",
        "disable_tqdm": not sys.stderr.isatty(),
        "run_name": key,
        "num_train_epochs": section.epochs,
        "learning_rate": section.max_lr,
        "lr_scheduler_type": "cosine_with_min_lr",
        "lr_scheduler_kwargs": {"min_lr_rate": section.min_lr_ratio},
        "warmup_steps": section.warmup_ratio,  # below 1: a fraction of the steps
        "per_device_train_batch_size": section.micro_batch_size,
        "gradient_accumulation_steps": gradient_accumulation(section, world, key),
        "max_length": section.max_length,
        "adam_beta1": section.adam_betas[0],
        "adam_beta2": section.adam_betas[1],
        "adam_epsilon": section.adam_eps,
        "weight_decay": section.weight_decay,
        "max_grad_norm": section.grad_clip,
        "use_cpu": cpu,  # transformers accepts bf16 on a CPU only when told that it trains on the CPU
        "bf16": precision.name == "bf16",
        "fp16": precision.name == "fp16",
        "activation_checkpointing": section.activation_checkpointing,  # transformers 5's name of gradient_checkpointing
        "logging_steps": section.log_every_steps,
        "save_strategy": "steps" if section.save_every_steps else "no",
        "save_steps": section.save_every_steps or 500,
        "seed": seed,
        "data_seed": seed,
    }
    if isinstance(section, SftRecipe):
        args.update(neftune_noise_alpha=section.neftune_alpha, assistant_only_loss=section.assistant_only_loss,
                    packing=section.packing, packing_strategy="bfd", padding_free=section.packing)
    if isinstance(section, DpoRecipe):
        args.update(beta=section.beta)
    args.update(_distributed(section, key, world, cpu))
    args.update(section.overrides)
    return args


def trl_config(section: PostTrainRecipe, args: dict[str, Any], key: str):
    from fuxitranyu.posttrain.config import trl_config_class

    config_class = trl_config_class(section.trl_config_name)
    try:
        return config_class(**args)
    except (ValueError, TypeError) as err:
        raise FuxiError(f"{key}: TRL's {config_class.__name__} refuses these settings: {err}") from None


class MetricsWriter(TrainerCallback):
    """TRL's logs, one JSON line per logging step, in `metrics.jsonl` (rank 0)."""

    def __init__(self, path: Path, resumed_at_step: int | None):
        self.path = path
        if resumed_at_step is None:
            path.unlink(missing_ok=True)
        elif path.is_file():  # lines logged after the checkpoint we resume from are logged again
            kept = [line for line in path.read_text(encoding="utf-8").splitlines()
                    if json.loads(line).get("step", 0) <= resumed_at_step]
            path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            record = {"step": state.global_step, "epoch": round(state.epoch or 0.0, 4), **logs}
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")


def last_checkpoint(out_dir: Path) -> Path | None:
    from transformers.trainer_utils import get_last_checkpoint

    folder = out_dir / CHECKPOINTS
    found = get_last_checkpoint(str(folder)) if folder.is_dir() else None
    return Path(found) if found else None


class BarWithLoss(ProgressCallback):
    """transformers' progress bar with the latest loss on it, instead of every log dict written under it."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and self.training_bar is not None and logs and "loss" in logs:
            self.training_bar.set_postfix(loss=f"{float(logs['loss']):.3f}")


def train(trainer: Trainer, out_dir: Path, resume: bool) -> dict[str, Any]:
    """Run the trainer (from the newest checkpoint when resuming) and summarise its logs."""
    checkpoint = last_checkpoint(out_dir) if resume else None
    step = None
    if checkpoint is not None:
        step = json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))["global_step"]
    # Every log goes to metrics.jsonl; the terminal keeps one progress display per stage (without a terminal
    # transformers would print each log dict to stdout, with one it writes them under the bar).
    trainer.remove_callback(PrinterCallback)
    if trainer.pop_callback(ProgressCallback) is not None:
        trainer.add_callback(BarWithLoss)
    trainer.add_callback(MetricsWriter(out_dir / METRICS, step))
    result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    return {
        "steps": trainer.state.global_step,
        "resumed_from_step": step,
        "train_loss": result.training_loss,
        "seconds": round(result.metrics.get("train_runtime", 0.0), 3),
        "first_log": logged[0] if logged else None,
        "last_log": logged[-1] if logged else None,
    }
