"""Facts about the process and the hardware it runs on, decided in one place.

`world()` reads the distributed launch (torchrun's RANK / WORLD_SIZE / LOCAL_RANK) once; `choose_precision()`
decides the training dtype from what the hardware does fast, for pretraining, SFT/DPO and evaluation alike;
`keep_freed_host_memory()` stops the C allocator from handing a CPU training step's large tensors back to the kernel;
`RunDecisions` records what a run decided from the machine so that a resumed run reuses it (DESIGN.md decision 11).
"""

from __future__ import annotations

import ctypes
import json
import os
import platform
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import torch

from fuxitranyu.errors import FuxiError
from fuxitranyu.io import atomic_write_json


@dataclass(frozen=True)
class World:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def world() -> World:
    """This process's rank among `world_size` (torchrun's environment), or rank 0 of 1."""
    values = {}
    for name, default in (("RANK", 0), ("WORLD_SIZE", 1), ("LOCAL_RANK", 0)):
        raw = os.environ.get(name)
        try:
            values[name] = default if raw in (None, "") else int(raw)
        except ValueError:
            raise FuxiError(f"environment variable {name}={raw!r} is not an integer") from None
    result = World(values["RANK"], values["WORLD_SIZE"], values["LOCAL_RANK"])
    if not 0 <= result.rank < result.world_size:
        raise FuxiError(f"RANK={result.rank} is not in [0, WORLD_SIZE={result.world_size})")
    return result


def default_device(current: World | None = None) -> torch.device:
    """The GPU of this local rank when there is one, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", (current or world()).local_rank)
    return torch.device("cpu")


@dataclass(frozen=True)
class Precision:
    name: str
    """fp32, bf16 or fp16."""
    reason: str
    """Why this precision was chosen (printed and written to manifests)."""

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[self.name]

    @property
    def needs_loss_scaling(self) -> bool:
        return self.name == "fp16"

    def as_dict(self) -> dict[str, str]:
        return {"precision": self.name, "reason": self.reason}

    @property
    def decision(self) -> Decision:
        return Decision(self.name, self.reason)


@cache
def cpu_has_bf16_unit() -> bool:
    """Whether oneDNN runs bf16 matmuls natively here (AMX or AVX512-BF16), as PyTorch itself checks it.

    On a CPU without such a unit bf16 autocast is ~35x slower than fp32; with AMX it is several times faster."""
    probe = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    try:
        return bool(probe()) if probe is not None else False
    except RuntimeError:
        return False


BF16_MIN_SPEEDUP = 1.2
"""On a CPU with a bf16 unit, `auto` takes bf16 only when the probe measures at least this speed-up: for small
matrices the casts can cost more than the unit saves (benchmarks/RESULTS.md: a decoder layer of width 256 once ran
0.7x in bf16; the whole step now runs ~2x at widths 256 and 512, bench_pretrain.py)."""


def choose_precision(requested: str, device: torch.device,
                     bf16_speedup: Callable[[], float] | None = None) -> Precision:
    """`auto` picks the fastest precision that trains safely on `device`; an explicit choice is kept (with the
    reason that it was asked for). `bf16_speedup`, when given, measures on a CPU with a bf16 unit how much faster bf16
    runs the model's own layers (fp32 time / bf16 time)."""
    if requested != "auto":
        if requested not in ("fp32", "bf16", "fp16"):
            raise FuxiError(f"unknown precision {requested!r}; expected auto, fp32, bf16 or fp16")
        return Precision(requested, "set in the recipe")
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return Precision("bf16", f"{torch.cuda.get_device_name(device)} supports bf16")
        return Precision("fp16", f"{torch.cuda.get_device_name(device)} has no bf16: fp16 with loss scaling")
    if device.type == "cpu":
        if not cpu_has_bf16_unit():
            return Precision("fp32", "the CPU has no bf16 matrix unit: bf16 would be far slower than fp32")
        if bf16_speedup is None:
            return Precision("bf16", "the CPU has a bf16 matrix unit (AMX or AVX512-BF16, per oneDNN)")
        speedup = bf16_speedup()
        if speedup >= BF16_MIN_SPEEDUP:
            return Precision("bf16", f"the CPU has a bf16 matrix unit and bf16 runs this model's layers {speedup:.1f}x "
                                     f"as fast as fp32 (measured)")
        return Precision("fp32", f"the CPU has a bf16 matrix unit, but at this model's sizes bf16 runs {speedup:.1f}x "
                                 f"as fast as fp32 (measured; needs {BF16_MIN_SPEEDUP}x)")
    return Precision("fp32", f"no mixed-precision rule for device type {device.type!r}")


@dataclass(frozen=True)
class HostMemory:
    kept: bool
    """Whether freed host memory stays in the process for reuse."""
    reason: str

    def as_dict(self) -> dict[str, object]:
        return {"kept": self.kept, "reason": self.reason}

    @property
    def decision(self) -> Decision:
        return Decision(self.kept, self.reason)


_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # mallopt parameters, from glibc's <malloc.h>


def keep_freed_host_memory(requested: bool | str, device: torch.device) -> HostMemory:
    """Keep freed memory inside the process instead of returning it to the kernel (`auto`: when training on a CPU).

    A CPU training step allocates and frees the same large tensors every time (activations, a chunk of logits,
    gradients). glibc serves every allocation above 32 MiB with a fresh `mmap` and unmaps it when freed, so each step
    faults the same pages in again and the kernel zero-fills them: on a 2-core Xeon VM that measured ~0.3 ms per MB,
    and it was most of what made the loss and the bf16 casts slow (benchmarks/RESULTS.md). Two `mallopt` settings
    — no mmap-served allocations, no heap trimming — make freed blocks reusable; the process's resident memory then
    stays at its peak instead of shrinking between steps. Process-wide and kept for the process's life, which is a
    training run's. Only glibc has these knobs; elsewhere this says so and changes nothing."""
    if requested is False or (requested == "auto" and device.type != "cpu"):
        reason = "set in the recipe" if requested is False else "the step's large tensors live on the accelerator"
        return HostMemory(False, reason)
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return HostMemory(False, f"needs glibc's mallopt; this is {platform.system()} {platform.libc_ver()[0]}".strip())
    mallopt = ctypes.CDLL(None).mallopt
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    if not (mallopt(_M_MMAP_MAX, 0) and mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)):
        return HostMemory(False, "glibc refused the mallopt settings")
    why = "set in the recipe" if requested is True else "training on a CPU"
    return HostMemory(True, f"{why}: freed tensors are reused instead of unmapped and faulted in again each step")


@dataclass(frozen=True)
class Decision:
    """What a run chose for a setting (from the machine when the recipe says `auto`, else as the recipe says), and
    why: printed at start-up, written to the manifest, recorded in the run's `decisions.json`."""
    value: bool | str | float
    reason: str

    def as_dict(self, key: str) -> dict[str, Any]:
        return {key: self.value, "reason": self.reason}


DECISIONS = "decisions.json"
"""A stage's record of its decisions, in its working directory beside its checkpoints."""


class RunDecisions:
    """Decide once, record, reuse: what a training stage chose from the machine (precision, attention kernel,
    compile, kept host memory, the peak FLOP/s of MFU) is part of the run. The first start decides and records it in
    `<stage dir>/decisions.json`; a resumed start takes the recorded choice instead of measuring again, so a probe
    that answers differently under another load cannot switch a run's precision or kernel half-way (DESIGN.md
    decision 11). A recipe that now asks explicitly for something else than the run started with is refused."""

    def __init__(self, directory: Path | None):
        self.path = None if directory is None else Path(directory) / DECISIONS
        self.recorded = self._read()
        self.made: dict[str, dict[str, Any]] = {}
        self.reused: set[str] = set()

    def _read(self) -> dict[str, dict[str, Any]]:
        if self.path is None or not self.path.is_file():
            return {}
        try:
            recorded = json.loads(self.path.read_text(encoding="utf-8"))
            if not all({"requested", "value", "reason"} <= set(entry) for entry in recorded.values()):
                raise ValueError("an entry lacks requested, value or reason")
        except (OSError, UnicodeDecodeError, ValueError, AttributeError, TypeError) as err:
            raise FuxiError(f"the run's record of its decisions is unreadable ({err}); delete it to let this run "
                            f"decide afresh, or start over with --no-resume", path=self.path) from None
        return recorded

    def decide(self, key: str, requested: Any, choose: Callable[[], Decision]) -> Decision:
        """The recorded decision for `key` when this run made one before, else `choose()`'s."""
        record = self.recorded.get(key)
        if record is None:
            decision = choose()
        else:
            if requested != "auto" and requested not in (record["requested"], record["value"]):
                raise FuxiError(f"{key}: this run started with {record['value']!r} ({record['reason']}) and the "
                                f"recipe now asks for {requested!r}; a resumed run keeps what it started with: set "
                                f"it back, or start over with --no-resume", path=self.path)
            decision = Decision(record["value"], record["reason"])
            self.reused.add(key)
        self.made[key] = {"requested": requested, "value": decision.value, "reason": decision.reason}
        return decision

    def describe(self, key: str, shown: str | None = None) -> str:
        """One line for the terminal: the choice, why, and whether it was taken from the run's record."""
        made = self.made[key]
        again = f" [decided when this run started ({DECISIONS}), reused]" if key in self.reused else ""
        return f"{key.replace('_', ' ')} {shown if shown is not None else made['value']}: {made['reason']}{again}"

    def save(self) -> None:
        if self.path is not None and self.made != self.recorded:
            atomic_write_json(self.path, self.made)


def decided_precision(decisions: RunDecisions, requested: str, device: torch.device,
                      bf16_speedup: Callable[[], float] | None = None) -> Precision:
    """`choose_precision` made once per run: at its first start, else as `decisions` recorded it."""
    chosen = decisions.decide("precision", requested,
                              lambda: choose_precision(requested, device, bf16_speedup).decision)
    return Precision(str(chosen.value), chosen.reason)


def decided_host_memory(decisions: RunDecisions, requested: bool | str, device: torch.device) -> HostMemory:
    """`keep_freed_host_memory` made once per run; a recorded `kept` is applied again, since the setting lives in the
    process."""
    kept = decisions.decide("host_memory", requested, lambda: keep_freed_host_memory(requested, device).decision)
    if "host_memory" in decisions.reused and kept.value:
        keep_freed_host_memory(True, device)
    return HostMemory(bool(kept.value), kept.reason)
