"""Which attention kernel and whether torch.compile pay on this CPU: training steps of the same model in several
settings, alternating step by step in one process, so that each pair of neighbouring steps sees the same machine.

bench_pretrain.py runs every variant in a fresh process and compares medians of rounds minutes apart; on a VM whose
speed moves by ±15% from minute to minute that hides effects of 10%. Here the variants take turns (the order reversed
every step), and each is compared with the first by the median ratio of its step time to the neighbouring step of
the first. The step is the trainer's: `CausalLMLoss` (fused cross-entropy), the trainer's AdamW (fused), gradient
clipping, with freed host memory kept as the trainer does on a CPU.

Variants: `fp32` (SDPA), `fp32 matmul`, `fp32 compiled`, `bf16` (bf16 autocast, SDPA), `bf16 matmul` (our matmul
attention kernel), `bf16 matmul compiled` (decoder layers compiled; the kernel stays outside the graph),
`bf16 compiled` (SDPA). The sizes are bench_pretrain.py's.

    python benchmarks/bench_cpu_kernels.py [--steps 14] [--warmup 2]
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import time
from datetime import UTC, datetime

import torch
from bench_pretrain import CPU_SIZES, cpu_config

VARIANTS = {  # name: (autocast dtype, attention kernel, compiled)
    "fp32": (None, "sdpa", False),
    "fp32 matmul": (None, "matmul", False),
    "fp32 compiled": (None, "sdpa", True),
    "bf16": (torch.bfloat16, "sdpa", False),
    "bf16 matmul": (torch.bfloat16, "matmul", False),
    "bf16 matmul compiled": (torch.bfloat16, "matmul", True),
    "bf16 compiled": (torch.bfloat16, "sdpa", True),
}


def training_step(config, dtype, kernel: str, compiled: bool):
    from fuxitranyu.model import FuxiTranyuForCausalLM
    from fuxitranyu.pretrain.config import PretrainSection
    from fuxitranyu.pretrain.decisions import attention_implementation
    from fuxitranyu.pretrain.loss import CausalLMLoss
    from fuxitranyu.pretrain.train import make_optimizer

    config._attn_implementation = attention_implementation(kernel)
    torch.manual_seed(0)
    model = FuxiTranyuForCausalLM(config).train()
    if compiled:
        for layer in model.model.layers:
            layer.compile()
    wrapper = CausalLMLoss(model, 4096)
    optimizer = make_optimizer(wrapper, PretrainSection())

    def step(ids: torch.Tensor) -> float:
        with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
            total, losses = wrapper(ids[:, :-1], ids[:, 1:])
        (total / losses.numel()).backward()
        torch.nn.utils.clip_grad_norm_(wrapper.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return total.item() / losses.numel()

    return step


def main() -> None:
    from fuxitranyu.runtime import keep_freed_host_memory

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=14)
    parser.add_argument("--warmup", type=int, default=2, help="steps per variant left out (the first compiles)")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    keep_freed_host_memory(True, torch.device("cpu"))
    print(f"# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}, torch {torch.__version__}, "
          f"{args.steps} steps per variant, the first {args.warmup} left out")
    print("| size | variant | tok/s (median step) | first step | / fp32, median of paired steps | "
          "/ bf16 (SDPA), paired |\n|---|---|---|---|---|---|")
    for name in CPU_SIZES:
        torch._dynamo.reset()  # each size compiles afresh with static shapes, as a training run does
        config, sequences, context = cpu_config(name)
        steps = {variant: training_step(copy.deepcopy(config), *settings) for variant, settings in VARIANTS.items()}
        times: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
        for index in range(args.steps):
            ids = torch.randint(1, config.vocab_size, (sequences, context + 1),
                                generator=torch.Generator().manual_seed(index))
            order = list(VARIANTS) if index % 2 == 0 else list(reversed(VARIANTS))
            for variant in order:
                started = time.perf_counter()
                loss = steps[variant](ids)
                times[variant].append(time.perf_counter() - started)
                if loss != loss:
                    raise SystemExit(f"{variant}: NaN loss at step {index}")
        kept = {variant: t[args.warmup:] for variant, t in times.items()}

        def paired(variant: str, base: str, kept: dict = kept) -> float:
            return statistics.median(b / a for a, b in zip(kept[variant], kept[base]))

        for variant in VARIANTS:
            print(f"| {name} | {variant} | {sequences * context / statistics.median(kept[variant]):,.0f} | "
                  f"{times[variant][0]:.1f} s | {paired(variant, 'fp32'):.2f}x | {paired(variant, 'bf16'):.2f}x |")


if __name__ == "__main__":
    main()
