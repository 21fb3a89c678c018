"""TRL's trainers configured from a recipe section: the arguments, the metrics file, the run and its resume.

TRL owns the loop; this module maps the section's keys onto `SFTConfig` / `DPOConfig` (the table is
`config.OWNED_TRL_FIELDS`), adds the section's checked `overrides`, and leaves the rest at TRL's defaults, except
the two that TRL sets for GPUs and that we decide from the hardware: `bf16` (via `runtime.choose_precision`) and
`gradient_checkpointing` (from the recipe).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from transformers import TrainerCallback
from transformers.trainer_callback import PrinterCallback, ProgressCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from fuxitranyu.errors import FuxiError
from fuxitranyu.io import atomic_write_json, atomic_write_text, file_sha256, set_aside
from fuxitranyu.posttrain.config import DpoSection, PostTrainSection, SftSection
from fuxitranyu.runtime import Precision, World
from fuxitranyu.stage import CHECKPOINTS, METRICS

if TYPE_CHECKING:
    from transformers import Trainer



def gradient_accumulation(section: PostTrainSection, world: World, key: str) -> int:
    per_step = section.micro_batch_size * world.world_size
    if section.global_batch_size % per_step:
        raise FuxiError(f"{key}.global_batch_size {section.global_batch_size} is not a multiple of micro_batch_size "
                        f"{section.micro_batch_size} × {world.world_size} processes")
    return section.global_batch_size // per_step


def _distributed(section: PostTrainSection, key: str, world: World, cpu: bool) -> dict[str, Any]:
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


def trl_arguments(section: PostTrainSection, key: str, seed: int, out_dir: Path, precision: Precision,
                  world: World, cpu: bool) -> dict[str, Any]:
    """Keyword arguments of `SFTConfig` / `DPOConfig` for a section (`key`: sft or dpo; `cpu`: no accelerator)."""
    args: dict[str, Any] = {
        "output_dir": str(out_dir / CHECKPOINTS),
        "report_to": "none",
        "disable_tqdm": True,  # the stage draws its own bar (`StageProgress`)
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
    if isinstance(section, SftSection):
        args.update(neftune_noise_alpha=section.neftune_alpha, assistant_only_loss=section.assistant_only_loss,
                    packing=section.packing, packing_strategy="bfd", padding_free=section.packing)
    if isinstance(section, DpoSection):
        args.update(beta=section.beta)
    args.update(_distributed(section, key, world, cpu))
    args.update(section.overrides)
    return args


def trl_config(section: PostTrainSection, args: dict[str, Any], key: str):
    from fuxitranyu.posttrain.config import trl_config_class

    config_class = trl_config_class(section.trl_config_name)
    try:
        return config_class(**args)
    except (ValueError, TypeError) as err:
        raise FuxiError(f"{key}: TRL's {config_class.__name__} refuses these settings: {err}") from None


class MetricsWriter(TrainerCallback):
    """TRL's logs, one JSON line per logging step, in `metrics.jsonl` (rank 0). On a resume, what the interrupted
    run logged after its checkpoint is dropped (it is logged again), and the closing summary's `train_loss` is the
    whole run's, not only the resumed part's."""

    def __init__(self, path: Path, resumed: Resumption | None):
        self.path, self.resumed = path, resumed
        if resumed is None:
            path.unlink(missing_ok=True)
        elif path.is_file():
            kept = [line for line in path.read_text(encoding="utf-8", errors="replace").splitlines()
                    if _logged_before(line, resumed.step)]
            atomic_write_text(path, "".join(line + "\n" for line in kept))

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            record = {"step": state.global_step, "epoch": round(state.epoch or 0.0, 4), **logs}
            if "train_loss" in record:
                record["train_loss"] = whole_run_loss(record["train_loss"], state.global_step, self.resumed)
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")


def whole_run_loss(call_loss: float, steps: int, resumed: Resumption | None) -> float:
    """The mean training loss over all `steps` of a run, from the mean the Trainer reports for its last `train()`
    call and what the checkpoint that call resumed from carried."""
    if resumed is None:
        return call_loss
    return (call_loss * (steps - resumed.step) + resumed.loss_sum) / max(steps, 1)


def _logged_before(line: str, step: int) -> bool:
    """Whether a metrics line of an interrupted run stays when it resumes from `step`: not a line cut short by the
    kill, nothing the resumed run logs again (later steps), and not the summary of a run that had finished training
    (the resumed run writes its own)."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return False
    return isinstance(record, dict) and record.get("step", 0) <= step and "train_runtime" not in record


DESCRIPTION = "checkpoint.json"
"""Written into a Trainer checkpoint after the Trainer has finished it: step, the sha256 of every file, and the run's
totals so far. A checkpoint without it was cut short by a kill."""


@dataclass(frozen=True)
class Resumption:
    checkpoint: Path
    step: int
    loss_sum: float
    """Sum of the per-step training losses up to the checkpoint (the Trainer reports the mean of one `train()` call
    only, so a resumed run's whole mean needs it)."""
    num_tokens: int | None
    """TRL's count of tokens trained on so far (its trainers restart it at 0 in every `train()` call)."""


class RunCheckpoints(TrainerCallback):
    """Makes the Trainer's checkpoints resumable after any kill. transformers writes `checkpoint-N/` in place, file by
    file, so a kill leaves a folder that looks like a checkpoint and fails to load. After each save this callback
    hashes the finished folder into its `checkpoint.json`, together with the totals the Trainer does not carry over a
    resume: the running loss sum and TRL's token count, which it puts back when a resumed run starts."""

    def __init__(self, trainer: Trainer, resumed: Resumption | None):
        self.trainer = trainer
        self.resumed = resumed

    def on_train_begin(self, args, state, control, **kwargs):
        if self.resumed is not None and self.resumed.num_tokens is not None:
            self.trainer._total_train_tokens = self.resumed.num_tokens  # TRL's counter behind `num_tokens`

    def loss_sum(self) -> float:
        """The Trainer's running loss sum of this `train()` call (logged part + the part since the last log), plus
        what the resumed checkpoint carried."""
        trainer = self.trainer
        this_call = trainer._total_loss_scalar + float(trainer._tr_loss.item())
        return this_call + (self.resumed.loss_sum if self.resumed else 0.0)

    def on_save(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        folder = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
        files = {p.name: file_sha256(p) for p in sorted(folder.iterdir()) if p.is_file() and p.name != DESCRIPTION}
        atomic_write_json(folder / DESCRIPTION, {
            "step": state.global_step, "files": files, "loss_sum": self.loss_sum(),
            "num_tokens": getattr(self.trainer, "_total_train_tokens", None)})


def newest_intact_checkpoint(out_dir: Path, console, main_process: bool) -> Resumption | None:
    """The newest Trainer checkpoint whose files match their `checkpoint.json`. The main process moves each one that
    does not (cut short by a kill, changed since) to `checkpoints/corrupt/` with a line saying why, as pretraining
    does; the other ranks look after it has, and so find the same one."""
    folder = out_dir / CHECKPOINTS
    if not folder.is_dir():
        return None
    numbered = [(int(p.name.rsplit("-", 1)[1]), p) for p in folder.glob(f"{PREFIX_CHECKPOINT_DIR}-*")
                if p.is_dir() and p.name.rsplit("-", 1)[1].isdigit()]
    for step, path in sorted(numbered, reverse=True):
        problem = checkpoint_problem(path)
        if problem is None:
            described = json.loads((path / DESCRIPTION).read_text(encoding="utf-8"))
            return Resumption(path, step, float(described["loss_sum"]), described.get("num_tokens"))
        if main_process:
            console.print(f"[yellow]{path.name}: {problem}; set aside in {set_aside(path).parent}[/]")
    return None


def checkpoint_problem(path: Path) -> str | None:
    """Why a Trainer checkpoint cannot be resumed from, or None."""
    try:
        described = json.loads((path / DESCRIPTION).read_text(encoding="utf-8"))
        files, _ = dict(described["files"]), float(described["loss_sum"])
    except FileNotFoundError:
        return f"no {DESCRIPTION}: the save was cut short"
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as err:
        return f"unreadable {DESCRIPTION} ({err})"
    for name, digest in files.items():
        if not (path / name).is_file():
            return f"{name} is missing"
        if file_sha256(path / name) != digest:
            return f"{name} differs from the hash written with the checkpoint"
    return None


class StageProgress(TrainerCallback):
    """The stage's one progress display on a terminal: a rich bar of steps with the latest loss, as pretraining's
    (transformers' own tqdm bar draws a new line per update under any other live display)."""

    def __init__(self, console):
        self.console, self.progress = console, None

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero or not self.console.is_terminal:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("steps"), TimeRemainingColumn(), console=self.console, transient=True)
        self.progress.add_task(args.run_name or "training", total=state.max_steps, completed=state.global_step)
        self.progress.start()

    def on_step_end(self, args, state, control, **kwargs):
        if self.progress is not None:
            self.progress.update(self.progress.task_ids[0], completed=state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.progress is not None and logs and "loss" in logs:
            self.progress.update(self.progress.task_ids[0], description=f"{args.run_name} loss {logs['loss']:.3f}")

    def on_train_end(self, args, state, control, **kwargs):
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def train(trainer: Trainer, out_dir: Path, resume: bool, console) -> dict[str, Any]:
    """Run the trainer (from the newest intact checkpoint when resuming) and summarise the whole run, also across
    resumes: the step count, the mean training loss over every step, and TRL's token count."""
    main_process = trainer.accelerator.is_main_process
    resumed = None
    if resume:
        if main_process:
            resumed = newest_intact_checkpoint(out_dir, console, main_process)
        trainer.accelerator.wait_for_everyone()
        if not main_process:
            resumed = newest_intact_checkpoint(out_dir, console, main_process)
    # Every log goes to metrics.jsonl; the terminal keeps one progress display per stage (without a terminal
    # transformers would print each log dict to stdout, with one it writes them under the bar).
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(StageProgress(console))
    if main_process:
        trainer.add_callback(MetricsWriter(out_dir / METRICS, resumed))
    trainer.add_callback(RunCheckpoints(trainer, resumed))
    result = trainer.train(resume_from_checkpoint=str(resumed.checkpoint) if resumed else None)
    steps = trainer.state.global_step
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    return {
        "steps": steps,
        "resumed_from_step": resumed.step if resumed else None,
        "train_loss": whole_run_loss(result.training_loss, steps, resumed),
        "num_tokens": getattr(trainer, "_total_train_tokens", None),
        "seconds": round(result.metrics.get("train_runtime", 0.0), 3),
        "first_log": logged[0] if logged else None,
        "last_log": logged[-1] if logged else None,
    }
