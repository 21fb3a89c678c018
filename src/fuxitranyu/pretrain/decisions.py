"""What the trainer decides from the machine, once per run: the device and process group, kept host memory,
precision (measured by the bf16 probe on CPUs with a bf16 unit), the attention kernel, compile, and the peak FLOP/s that
MFU divides by. `Trainer` records these in the run's `decisions.json` (`fuxitranyu.runtime.RunDecisions`) and a resumed
run takes them from there."""

from __future__ import annotations

import copy
import functools
import math
import shutil
import time
from dataclasses import dataclass

import torch
import torch.distributed as dist

from fuxitranyu.pretrain.config import PretrainSection
from fuxitranyu.runtime import (
    Decision,
    HostMemory,
    Precision,
    RunDecisions,
    World,
    decided_host_memory,
    decided_precision,
    default_device,
)


@dataclass(frozen=True)
class Runtime:
    world: World
    device: torch.device
    precision: Precision
    host_memory: HostMemory

    @property
    def rank(self) -> int:
        return self.world.rank

    @property
    def world_size(self) -> int:
        return self.world.world_size


def sharded(recipe: PretrainSection, current: World) -> bool:
    """FSDP2 under several ranks by default (`auto`), or whenever the recipe asks for it: one process then shards
    over a mesh of one device, which is how the memory and speed of the sharded path are measured on one GPU."""
    return recipe.distributed == "fsdp" or (recipe.distributed == "auto" and current.distributed)


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def attention_implementation(kernel: str) -> str:
    """transformers' `attn_implementation` name of a recipe's attention kernel."""
    from fuxitranyu.model.matmul_attention import MATMUL_ATTENTION

    return MATMUL_ATTENTION if kernel == "matmul" else kernel


def leaves_random_state_alone(probe):
    """A probe that draws random tensors must not move the run's generators: a resumed run takes the probe's answer
    from decisions.json instead of measuring, and would otherwise draw other numbers than the run it continues."""

    @functools.wraps(probe)
    def measured(*args, **kwargs):
        devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
        with torch.random.fork_rng(devices=devices):
            return probe(*args, **kwargs)

    return measured


@leaves_random_state_alone
def layer_bf16_speedup(config, batch: int, context: int, kernels: tuple[str, str], repeats: int = 5) -> float:
    """One decoder layer's forward and backward on a micro-batch of `batch` × `context` tokens: fp32 time over
    bf16-autocast time, each with the attention kernel the trainer would use in that precision (`kernels`). Measured
    rather than assumed: at small widths the casts and the fp32 norms cost more than the bf16 unit saves. The two
    dtypes alternate and each keeps its best time, so a burst of load elsewhere does not decide the choice."""
    from fuxitranyu.model.modeling import FuxiTranyuDecoderLayer, FuxiTranyuRotaryEmbedding

    layers = {}
    for dtype, kernel in zip((None, torch.bfloat16), kernels):
        layer_config = copy.deepcopy(config)
        layer_config._attn_implementation = attention_implementation(kernel)
        layers[dtype] = FuxiTranyuDecoderLayer(layer_config, 0)
    x = torch.randn(batch, context, config.hidden_size, requires_grad=True)
    rope = FuxiTranyuRotaryEmbedding(config)

    def seconds(dtype: torch.dtype | None) -> float:
        started = time.perf_counter()
        with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
            cos_sin = rope(x, torch.arange(context)[None])
            out = layers[dtype](x, position_embeddings=cos_sin, attention_mask=None)
        out.float().sum().backward()
        return time.perf_counter() - started

    seconds(None), seconds(torch.bfloat16)  # warm-up: first calls pick kernels
    fp32 = min(seconds(None) for _ in range(repeats))
    bf16 = min(seconds(torch.bfloat16) for _ in range(repeats))
    for _ in range(repeats):  # a second, interleaved pass
        fp32, bf16 = min(fp32, seconds(None)), min(bf16, seconds(torch.bfloat16))
    return fp32 / bf16


def setup_runtime(recipe: PretrainSection, current: World, config=None, micro_batch: int = 0, context: int = 0,
                  decisions: RunDecisions | None = None) -> Runtime:
    """Device, process group, host memory and precision. With the model's `config` and the micro-batch's shape, a
    CPU with a bf16 unit measures whether bf16 pays for this model (`layer_bf16_speedup`). What `decisions` holds
    from an earlier start of the same run is reused instead of decided again."""
    decisions = decisions or RunDecisions(None)
    device = default_device(current)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        if current.distributed:
            dist.init_process_group(backend)
        elif sharded(recipe, current):  # a process group of one, without torchrun's environment
            dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1)
    # first: the bf16 probe measures with it
    host_memory = decided_host_memory(decisions, recipe.keep_host_memory, device)
    probe = None
    if config is not None and context:
        kernels = tuple(attention_decision(recipe, device, Precision(name, "probe"), context).value
                        for name in ("fp32", "bf16"))
        probe = functools.partial(layer_bf16_speedup, config, micro_batch, context, kernels)
    precision = decided_precision(decisions, recipe.precision, device, probe)
    if dist.is_initialized() and dist.get_world_size() > 1:  # a measured choice must be the same on every rank
        box = [precision]
        dist.broadcast_object_list(box, src=0)
        precision = box[0]
    return Runtime(current, device, precision, host_memory)


MATMUL_ATTENTION_MAX_CONTEXT = 2048
"""`attention: auto` uses the matmul kernel on a CPU only up to this context: it keeps (heads × T × T)
probabilities per layer, 64 MiB per sequence and layer at 8 heads and T = 2048 in bf16."""


def attention_decision(recipe: PretrainSection, device: torch.device, precision: Precision, context: int) -> Decision:
    """The attention kernel. `auto`: SDPA (FlashAttention-2-class kernels on GPUs, as the paper), except on a CPU
    under bf16/fp16 autocast at short contexts, where PyTorch's CPU flash kernel hardly uses the bf16 unit and two
    batched matmuls do: the whole step ran 1.06-1.11x as fast at hidden 256-512 (benchmarks/RESULTS.md). In fp32 the
    two kernels are equally fast, so SDPA stays."""
    if recipe.attention != "auto":
        return Decision(recipe.attention, "set in the recipe")
    if device.type == "cpu" and precision.autocast_dtype is not None:
        if context <= MATMUL_ATTENTION_MAX_CONTEXT:
            return Decision("matmul", f"on a CPU in {precision.name} batched matmuls use the bf16 unit, "
                                      f"the CPU flash kernel hardly does (context {context} <= "
                                      f"{MATMUL_ATTENTION_MAX_CONTEXT})")
        return Decision("sdpa", f"context {context} > {MATMUL_ATTENTION_MAX_CONTEXT}: the matmul kernel's (T × T) "
                                f"probabilities would cost too much memory")
    return Decision("sdpa", "PyTorch's fused attention kernels (flash / memory-efficient)")


CPU_COMPILE_MIN_STEPS = 1000
"""`compile: auto` compiles on a CPU under bf16 only for runs of at least this many steps. Compiling the layers cold
took ~29 s before the first step at hidden 256 (and compiles again for the no-grad validation graph); compiled steps
ran 1.07-1.13x as fast step by step (0.99-1.44x across rounds; benchmarks/RESULTS.md), a break-even of ~180 steps at
hidden 256: a run of 1000 steps repays it several times over."""


def cpp_compiler_found() -> bool:
    """Whether a C++ compiler is on PATH: torch.compile's CPU backend (Inductor) builds its kernels with one."""
    return any(shutil.which(name) for name in ("c++", "g++", "clang++"))


def compile_decision(recipe: PretrainSection, runtime: Runtime, steps: int) -> Decision:
    """Whether to compile the decoder layers with torch.compile, and why. `auto`: on GPUs; on a CPU only under
    bf16/fp16 autocast (fused norms, RoPE and GeLU in low precision), for runs long enough to repay the compile time,
    and when a C++ compiler is there (Inductor's CPU backend needs one). In fp32 compiled layers ran 1.04-1.06x as
    fast as eager: not worth the compile time."""
    if recipe.compile != "auto":
        return Decision(bool(recipe.compile), "set in the recipe")
    if runtime.device.type == "cuda":
        return Decision(True, "on a GPU compiling pays within the first steps")
    if runtime.precision.autocast_dtype is None:
        return Decision(False, "on a CPU in fp32 compiled layers are hardly faster than eager (benchmarks/RESULTS.md)")
    if steps < CPU_COMPILE_MIN_STEPS:
        return Decision(False, f"{steps} steps are too few to repay compiling on a CPU (needs {CPU_COMPILE_MIN_STEPS})")
    if not cpp_compiler_found():
        return Decision(False, "no C++ compiler found (torch.compile's CPU backend needs one)")
    return Decision(True, f"on a CPU in {runtime.precision.name} compiled layers ran ~1.1x as fast as eager "
                          f"(benchmarks/RESULTS.md), which repays the compile time over {steps} steps")


@leaves_random_state_alone
def measure_peak_flops(device: torch.device, dtype: torch.dtype | None) -> float:
    """Matmul FLOP/s on this device in the training dtype: the denominator of MFU when the recipe gives none."""
    size = 2048 if device.type == "cpu" else 8192
    a = torch.randn(size, size, device=device, dtype=dtype or torch.float32)
    b = torch.randn(size, size, device=device, dtype=dtype or torch.float32)
    a @ b
    best = math.inf
    for _ in range(10):  # the best of several: a VM's cores were measured at half speed in some single calls
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best
