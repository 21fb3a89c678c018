"""The pretraining loop: one loop from 2 CPU cores to a GPU cluster (paper section 3.5).

    torchrun --nproc_per_node N -m fuxitranyu pretrain RECIPE      # or `fuxitranyu pretrain RECIPE` for one process

Each optimizer step: the global batch (in tokens, per the recipe's ramp) is read from the mix shards, split over
ranks and micro-batches; forward/backward per micro-batch with gradient sync only on the last; the divergence guard
looks at the loss; then gradient clipping, AdamW at the scheduled learning rate, metrics, and a checkpoint when one is
due. Data parallelism is PyTorch's own: DDP, or FSDP2 `fully_shard` (ZeRO-2 by default, as the paper; ZeRO-3 with
`reshard_after_forward`). gloo on CPU, NCCL on GPUs.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from rich.console import Console

from fuxitranyu.errors import FuxiError
from fuxitranyu.io import atomic_write_text, set_aside
from fuxitranyu.mix.artifacts import read_index
from fuxitranyu.mix.reader import ShardReader
from fuxitranyu.model.summary import summarize_module
from fuxitranyu.pretrain import schedule
from fuxitranyu.pretrain.architecture import load_config, trainable_parts, width_proxy
from fuxitranyu.pretrain.artifacts import TENSORBOARD
from fuxitranyu.pretrain.checkpoint import (
    Checkpoint,
    CorruptCheckpoint,
    describe,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
    verify,
)
from fuxitranyu.pretrain.config import PretrainSection
from fuxitranyu.pretrain.decisions import (
    attention_decision,
    compile_decision,
    measure_peak_flops,
    setup_runtime,
)
from fuxitranyu.pretrain.loss import per_language_sums
from fuxitranyu.pretrain.parallelize import ReenableSync, all_reduce, load_trainable_model, wrap
from fuxitranyu.pretrain.plan import device_memory_bytes, memory_plan, refuse_if_too_big
from fuxitranyu.runtime import (
    Decision,
    RunDecisions,
    World,
    world,
)
from fuxitranyu.stage import CHECKPOINTS, METRICS


@dataclass
class TrainState:
    step: int = 0
    tokens: int = 0
    """Tokens of the batches consumed so far (trained on or skipped by the divergence guard)."""
    lr_scale: float = 1.0
    """Multiplies the schedule; the divergence guard lowers it after each rollback."""
    loss_ema: float | None = None
    bad_in_a_row: int = 0
    skipped_steps: int = 0
    rollbacks: int = 0


@dataclass(frozen=True)
class StepResult:
    loss: float
    """Mean next-token loss over the global batch."""
    loss_by_language: dict[str, float]
    grad_norm: float
    """Global gradient norm before clipping."""
    applied: bool
    """False when the divergence guard refused the update."""


def make_optimizer(model: torch.nn.Module, recipe: PretrainSection, embeddings: tuple[torch.nn.Parameter, ...]
                   ) -> torch.optim.AdamW:
    """AdamW (paper: β = (0.9, 0.95), ε = 1e-8) with weight decay on matrices only: norms, biases and the (input and
    output) `embeddings` are not decayed."""
    tables = {id(table) for table in embeddings}
    decay, no_decay = [], []
    for parameter in model.parameters():
        (decay if parameter.ndim >= 2 and id(parameter) not in tables else no_decay).append(parameter)
    groups = [{"params": decay, "weight_decay": recipe.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    kwargs = dict(lr=recipe.max_lr, betas=recipe.adam_betas, eps=recipe.adam_eps)
    try:
        return torch.optim.AdamW(groups, fused=True, **kwargs)
    except (RuntimeError, TypeError):  # fused needs plain tensors on a supported device
        return torch.optim.AdamW(groups, foreach=True, **kwargs)


class Trainer:
    """Trains the model in `model_dir` on the mix in `mix_dir`, writing checkpoints and metrics into `out_dir`.

    The mix owns the facts of the data: its index gives the context length and the largest token id."""

    def __init__(self, recipe, model_dir: Path, mix_dir: Path, out_dir: Path, console: Console | None = None,
                 current: World | None = None):
        self.recipe: PretrainSection = recipe.pretrain
        self.seed = recipe.seed
        self.out_dir = out_dir
        self.console = console or Console(stderr=True)
        self.decisions = RunDecisions(out_dir)
        self.runtime = setup_runtime(self.recipe, current or world(), width_proxy(load_config(model_dir)),
                                     self.recipe.micro_batch_size, read_index(mix_dir)["context_length"],
                                     self.decisions)
        self.reader = ShardReader(mix_dir, self.runtime.rank, self.runtime.world_size, seed=self.seed)
        self.verify_shards()
        self.context_length: int = self.reader.index["context_length"]
        random.seed(self.seed)  # Python's and numpy's generator states go into every checkpoint: seeded, two runs
        np.random.seed(self.seed)  # of the same recipe write the same bytes
        torch.manual_seed(self.seed)
        self.compiled = self.decisions.decide(
            "compile", self.recipe.compile,
            lambda: compile_decision(self.recipe, self.runtime, schedule.total_steps(self.recipe)))
        self.attention = self.decisions.decide(
            "attention", self.recipe.attention,
            lambda: attention_decision(self.recipe, self.runtime.device, self.runtime.precision, self.context_length))
        self.model = load_trainable_model(model_dir, self.attention.value)
        if self.reader.index["vocab_size"] > self.model.config.vocab_size:
            raise FuxiError(f"the mix uses token ids up to {self.reader.index['vocab_size'] - 1} but the model's "
                            f"vocabulary has {self.model.config.vocab_size} entries", path=mix_dir)
        if self.context_length > self.model.config.max_position_embeddings:
            raise FuxiError(f"the mix was packed for context {self.context_length}, longer than the model's "
                            f"max_position_embeddings {self.model.config.max_position_embeddings}", path=mix_dir)
        self.summary = summarize_module(self.model, self.context_length)
        self.check_memory()
        self.wrapper, self.sharded = wrap(self.model, self.recipe, self.runtime, self.seed, bool(self.compiled.value))
        self.optimizer = make_optimizer(self.wrapper, self.recipe, trainable_parts(self.model).embeddings)
        self.scaler = torch.amp.GradScaler(self.runtime.device.type, enabled=self.runtime.precision.needs_loss_scaling)
        self.state = TrainState()
        self.checkpoints = out_dir / CHECKPOINTS
        self.peak_flops = float(self.decisions.decide("peak_flops", self.recipe.peak_flops or "auto",
                                                      self.peak_flops_decision).value)
        if self.runtime.rank == 0:
            self.decisions.save()
            shown = {"host_memory": "kept" if self.runtime.host_memory.kept else "returned",
                     "compile": "on" if self.compiled.value else "off", "peak_flops": f"{self.peak_flops:.3g}"}
            for key in self.decisions.made:
                self.console.print(f"  {self.decisions.describe(key, shown.get(key))}")
        self.tensorboard = self.open_tensorboard()
        self.validation: dict[str, Any] | None = None

    def peak_flops_decision(self) -> Decision:
        """The MFU denominator: the recipe's figure, else a matmul measured in the training dtype."""
        if self.recipe.peak_flops:
            return Decision(self.recipe.peak_flops, "set in the recipe")
        dtype = self.runtime.precision.autocast_dtype
        return Decision(measure_peak_flops(self.runtime.device, dtype),
                        f"measured: best of 10 matmuls in {self.runtime.precision.name}")

    def check_memory(self) -> None:
        """Refuse, before any work, a configuration the memory plan says this device cannot hold."""
        if self.recipe.ignore_memory_plan:
            return
        plan = memory_plan(self.model, self.recipe, self.context_length, self.runtime.world_size,
                           self.runtime.precision.autocast_dtype is not None, device_memory_bytes(self.runtime.device),
                           self.attention.value)
        refuse_if_too_big(plan)

    def verify_shards(self) -> None:
        """Hash the mix's shards once per run (each rank a share) against the index; every rank raises the same
        error when one changed after the build."""
        problems = self.reader.verify(self.runtime.rank, self.runtime.world_size)
        if self.runtime.world_size > 1:
            gathered: list[list[FuxiError]] = [[] for _ in range(self.runtime.world_size)]
            dist.all_gather_object(gathered, problems)
            problems = [problem for part in gathered for problem in part]
        if problems:
            raise problems[0]

    def open_tensorboard(self):
        """A TensorBoard writer on rank 0 when the `tensorboard` package is installed (metrics.jsonl always)."""
        if self.runtime.rank != 0:
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            return None
        return SummaryWriter(str(self.out_dir / TENSORBOARD))

    # -- the loop ------------------------------------------------------------------------------------------------

    def resume(self) -> bool:
        """Continue from the newest intact checkpoint, if any; returns whether one was found."""
        restored = self.restore_newest_intact()
        if self.runtime.rank == 0:  # also without a checkpoint: a run killed before its first starts from step 0
            self._forget_metrics_after(self.state.step)
        if restored is None:
            return False
        self.log_event({"event": "resumed", "checkpoint": restored.path.name})
        return True

    def restore_newest_intact(self) -> Checkpoint | None:
        """Load the newest checkpoint that passes verification. Rank 0 checks the hashes, sets corrupt checkpoints
        aside (reporting each) and tells the other ranks which one to load."""
        chosen = None
        if self.runtime.rank == 0:
            for path in reversed(list_checkpoints(self.checkpoints)):
                try:
                    chosen = describe(path)
                    verify(chosen)
                    break
                except CorruptCheckpoint as err:
                    chosen = None
                    moved = set_aside(path)
                    self.log_event({"event": "corrupt_checkpoint", "checkpoint": path.name, "error": str(err),
                                    "moved_to": str(moved)})
        if self.runtime.world_size > 1:
            box = [chosen]
            dist.broadcast_object_list(box, src=0)
            chosen = box[0]
        if chosen is None:
            return None
        rest = load_checkpoint(chosen, self.wrapper, self.model, self.optimizer, self.sharded, verified=True)
        self.reader.load_state_dict(rest["reader"])
        self.state = TrainState(**rest["train"])
        if rest.get("scaler"):  # fp16's loss scale: a resumed run continues with the scale it had reached
            self.scaler.load_state_dict(rest["scaler"])
        return chosen

    def _forget_metrics_after(self, step: int) -> None:
        """Drop the metrics of steps after the checkpoint (the resumed run logs them again) and any line a kill cut
        short."""
        path = self.out_dir / METRICS
        if not path.is_file():
            return
        kept = []
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if record.get("step", 0) <= step:  # what happened after the checkpoint happens again, and is logged again
                kept.append(line + "\n")
        atomic_write_text(path, "".join(kept))

    def train(self) -> dict[str, Any]:
        recipe = self.recipe
        started, tokens_at_start = time.perf_counter(), self.state.tokens
        last_saved = -1
        progress = self.progress_bar()
        while self.state.tokens < recipe.total_tokens:
            state = self.state  # a rollback replaces it
            tokens_before = state.tokens
            global_tokens = schedule.batch_tokens(state.tokens, recipe)
            lr = schedule.learning_rate(state.tokens, recipe, state.lr_scale)
            step_started = time.perf_counter()
            result = self.step(global_tokens, lr)
            state.tokens += global_tokens
            state.step += 1
            if not result.applied and self.recover(result.loss, result.grad_norm):
                continue
            elapsed = time.perf_counter() - step_started
            tokens_per_s = global_tokens / elapsed
            if state.step % recipe.log_every_steps == 0:
                self.log_metrics({
                    "step": state.step, "tokens": state.tokens, "loss": result.loss, "lr": lr,
                    "grad_norm": result.grad_norm,
                    "batch_tokens": global_tokens, "tokens_per_s": round(tokens_per_s, 1),
                    "mfu": round(tokens_per_s * self.summary.training_flops_per_token
                                 / (self.peak_flops * self.runtime.world_size), 4),
                    "loss_by_language": result.loss_by_language,
                })
            if progress is not None:
                progress.update(progress.task_ids[0], completed=state.tokens,
                                description=f"loss {result.loss:.3f} · {tokens_per_s:,.0f} tok/s")
            if schedule.validation_due(tokens_before, state.tokens, recipe):
                self.validation = self.validate()
            if schedule.checkpoint_due(tokens_before, state.tokens, recipe):
                self.save()
                last_saved = state.step
        if progress is not None:
            progress.stop()
        state = self.state
        if last_saved != state.step:
            self.save()
        seconds = time.perf_counter() - started
        return {"steps": state.step, "tokens": state.tokens, "skipped_steps": state.skipped_steps,
                "rollbacks": state.rollbacks, "seconds": round(seconds, 2),
                "tokens_per_s": round((state.tokens - tokens_at_start) / max(seconds, 1e-9), 1),
                "validation": self.validation, "unigram_entropy": self.reader.index.get("unigram_entropy")}

    def validate(self) -> dict[str, Any] | None:
        """Mean next-token loss on the mix's held-out validation sequences, per language; their mean over languages
        is the run's validation loss (every language counts the same). Logged as a `validation` event."""
        validation = self.reader.index.get("validation") or {}
        if not validation:
            return None
        dtype = self.runtime.precision.autocast_dtype
        by_language = {}
        with torch.no_grad(), torch.autocast(self.runtime.device.type, dtype=dtype, enabled=dtype is not None):
            for language, entry in validation.items():
                sequences = np.load(self.reader.mix_dir / entry["file"], mmap_mode="r")
                sequences = sequences[:self.recipe.eval_sequences_per_language]
                total = count = 0.0
                for begin in range(0, len(sequences), self.recipe.micro_batch_size):
                    chunk = torch.from_numpy(np.asarray(sequences[begin:begin + self.recipe.micro_batch_size],
                                                        dtype=np.int64)).to(self.runtime.device)
                    _, losses = self.wrapper(chunk[:, :-1], chunk[:, 1:])
                    total, count = total + float(losses.sum()), count + losses.numel()
                by_language[language] = round(total / count, 4)
        result = {"loss": round(sum(by_language.values()) / len(by_language), 4), "loss_by_language": by_language}
        self.log_event({"event": "validation", "step": self.state.step, "tokens": self.state.tokens, **result},
                       echo=False)
        return result

    def step(self, global_tokens: int, lr: float) -> StepResult:
        """One optimizer step over `global_tokens`. The update is not applied when the divergence guard objects."""
        recipe, runtime = self.recipe, self.runtime
        sequences = global_tokens // self.context_length
        per_rank = sequences // runtime.world_size
        micro = min(recipe.micro_batch_size, per_rank)
        if sequences % runtime.world_size or per_rank % micro:
            raise FuxiError(f"a batch of {sequences} sequences does not split into {runtime.world_size} ranks × "
                            f"micro-batches of {micro}; adjust pretrain.batch or pretrain.micro_batch_size")
        batch = self.reader.next_batch(sequences)
        tokens = torch.from_numpy(batch.tokens).to(runtime.device)
        languages = torch.from_numpy(batch.languages[:, 1:].astype("int64")).to(runtime.device)
        # Each rank's gradient is averaged over ranks by DDP/FSDP; scaling by world/total makes the sum over
        # micro-batches and ranks the mean over the global batch.
        scale = runtime.world_size / (sequences * self.context_length)
        num_languages = len(self.reader.languages)
        sums = torch.zeros(num_languages, dtype=torch.float64, device=runtime.device)
        counts = torch.zeros_like(sums)
        for begin in range(0, per_rank, micro):
            last = begin + micro >= per_rank
            chunk = tokens[begin:begin + micro]
            dtype = runtime.precision.autocast_dtype
            with self.no_sync(last), torch.autocast(runtime.device.type, dtype=dtype, enabled=dtype is not None):
                total, losses = self.wrapper(chunk[:, :-1], chunk[:, 1:])
                loss = total * scale
            self.scaler.scale(loss).backward()
            chunk_sums, chunk_counts = per_language_sums(losses, languages[begin:begin + micro], num_languages)
            sums += chunk_sums
            counts += chunk_counts
        totals = all_reduce(torch.stack([sums, counts]), runtime)
        mean_loss = float(totals[0].sum() / totals[1].sum())
        by_language = {self.reader.languages[i]: round(float(totals[0, i] / totals[1, i]), 4)
                       for i in range(num_languages) if totals[1, i] > 0}
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.scaler.unscale_(self.optimizer)
        max_norm = recipe.grad_clip if recipe.grad_clip > 0 else math.inf
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.wrapper.parameters(), max_norm))
        if self.diverged(mean_loss, grad_norm):
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.update()
            return StepResult(mean_loss, by_language, grad_norm, applied=False)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.state.bad_in_a_row = 0
        decay = self.recipe.divergence.ema_decay
        self.state.loss_ema = mean_loss if self.state.loss_ema is None else \
            decay * self.state.loss_ema + (1 - decay) * mean_loss
        return StepResult(mean_loss, by_language, grad_norm, applied=True)

    def no_sync(self, last_micro_batch: bool):
        """Gradient synchronisation only after the last micro-batch of a step."""
        if last_micro_batch or self.runtime.world_size == 1:
            return contextlib.nullcontext()
        if self.sharded:
            self.wrapper.set_requires_gradient_sync(False)
            return ReenableSync(self.wrapper)
        return self.wrapper.no_sync()

    # -- divergence ----------------------------------------------------------------------------------------------

    def diverged(self, loss: float, grad_norm: float) -> bool:
        guard = self.recipe.divergence
        scaled = self.runtime.precision.needs_loss_scaling  # the GradScaler skips inf-gradient steps by itself
        if not math.isfinite(loss) or (not math.isfinite(grad_norm) and not scaled):
            return True
        ema = self.state.loss_ema
        return ema is not None and self.state.step >= guard.min_steps and loss > guard.spike_factor * ema

    def recover(self, loss: float, grad_norm: float) -> bool:
        """Handle a diverged step; returns True when the loop must continue from a restored state."""
        guard, state = self.recipe.divergence, self.state
        state.bad_in_a_row += 1
        if state.bad_in_a_row > guard.max_retries:
            where = f"; the last rollback restored a verified checkpoint with the learning rate scaled by " \
                    f"{state.lr_scale:g}" if state.rollbacks else ""
            raise FuxiError(f"training diverged {state.bad_in_a_row} times in a row (last loss {loss:.4g}, gradient "
                            f"norm {grad_norm:.4g}){where}; giving up. Lower pretrain.max_lr or raise "
                            f"pretrain.warmup_tokens, and inspect {self.out_dir / METRICS}")
        if guard.action == "skip" or not list_checkpoints(self.checkpoints):
            state.skipped_steps += 1
            self.log_event({"event": "skipped_step", "step": state.step, "loss": loss, "grad_norm": grad_norm})
            return False
        bad_in_a_row, skipped, rollbacks, scale = state.bad_in_a_row, state.skipped_steps, state.rollbacks, \
            state.lr_scale
        restored = self.restore_newest_intact()
        if restored is None:  # every checkpoint was corrupt and set aside
            state.skipped_steps += 1
            self.log_event({"event": "skipped_step", "step": state.step, "loss": loss, "grad_norm": grad_norm})
            return False
        self.state.lr_scale = scale * guard.lr_factor
        self.state.bad_in_a_row, self.state.skipped_steps, self.state.rollbacks = bad_in_a_row, skipped, rollbacks + 1
        self.log_event({"event": "rollback", "step": state.step, "loss": loss, "to": restored.path.name,
                        "lr_scale": self.state.lr_scale})
        return True

    # -- outputs -------------------------------------------------------------------------------------------------

    def save(self) -> None:
        training_state = {"reader": self.reader.state_dict(), "train": asdict(self.state),
                          "scaler": self.scaler.state_dict()}
        save_checkpoint(self.checkpoints, self.state.step, self.state.tokens, self.wrapper, self.model,
                        self.optimizer, training_state, self.sharded, self.runtime.rank,
                        self.recipe.checkpoint_max_shard_size)

    def progress_bar(self):
        """A bar with tokens/s and ETA on rank 0 when stderr is a terminal; None otherwise (logs stay quiet)."""
        if self.runtime.rank != 0 or not sys.stderr.isatty():
            return None
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        progress = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed:,}/"
                            "{task.total:,} tokens"), TimeRemainingColumn(), console=self.console)
        progress.add_task("pretraining", total=self.recipe.total_tokens, completed=self.state.tokens)
        progress.start()
        return progress

    def log_metrics(self, metrics: dict[str, Any]) -> None:
        if self.runtime.rank != 0:
            return
        with open(self.out_dir / METRICS, "a", encoding="utf-8") as f:
            f.write(json.dumps(metrics) + "\n")
        if self.tensorboard is not None:
            for key in ("loss", "lr", "grad_norm", "tokens_per_s", "mfu"):
                self.tensorboard.add_scalar(f"train/{key}", metrics[key], metrics["tokens"])
            for language, value in metrics["loss_by_language"].items():
                self.tensorboard.add_scalar(f"loss_by_language/{language}", value, metrics["tokens"])

    def log_event(self, event: dict[str, Any], echo: bool = True) -> None:
        if self.runtime.rank == 0:
            if echo:
                self.console.print(f"[bold yellow]{event}[/]")
            with open(self.out_dir / METRICS, "a", encoding="utf-8") as f:
                f.write(json.dumps(event) + "\n")


