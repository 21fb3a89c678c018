"""The pretraining loss alone: our fused cross-entropy (`fuxitranyu.pretrain.loss.linear_cross_entropy`) against
PyTorch's stock `F.cross_entropy(hidden @ W.T)`, forward and backward, in fp32 and under bf16 autocast, at the CPU
benchmark's sizes (2,048 positions against a 32k vocabulary, hidden 256 and 512). Each allocator setting runs in its
own process (it is process-wide): the C allocator's defaults, and freed host memory kept as the trainer does on a
CPU. The two losses alternate within a process; each reports its median over `--repeats`.

    python benchmarks/bench_loss.py [--repeats 7] [--chunk 4096]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime

import torch
import torch.nn.functional as F

POSITIONS, VOCAB = 2048, 32_000


def measure(keep: bool, repeats: int, chunk: int) -> dict:
    from fuxitranyu.pretrain.loss import linear_cross_entropy
    from fuxitranyu.runtime import keep_freed_host_memory

    if keep:
        keep_freed_host_memory(True, torch.device("cpu"))
    torch.set_num_threads(os.cpu_count() or 1)
    results = {}
    for hidden_size in (256, 512):
        hidden = torch.randn(POSITIONS, hidden_size, requires_grad=True)
        weight = (torch.randn(VOCAB, hidden_size) * 0.02).requires_grad_()
        targets = torch.randint(0, VOCAB, (POSITIONS,))
        losses = {"stock": lambda h=hidden, w=weight, t=targets: F.cross_entropy((h @ w.t()).float(), t,
                                                                                  reduction="sum"),
                  "fused": lambda h=hidden, w=weight, t=targets: linear_cross_entropy(h, w, t, chunk)[0]}
        for dtype in (None, torch.bfloat16):
            times = {name: [] for name in losses}
            for _ in range(repeats + 1):  # the first round warms up
                for name, loss in losses.items():
                    started = time.perf_counter()
                    with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
                        value = loss()
                    value.backward()
                    times[name].append(time.perf_counter() - started)
                    hidden.grad = weight.grad = None
            key = f"hidden {hidden_size}, {'bf16' if dtype else 'fp32'}"
            results[key] = {name: statistics.median(t[1:]) * 1000 for name, t in times.items()}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--chunk", type=int, default=4096)
    parser.add_argument("--one", choices=["default", "kept"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one == "kept", args.repeats, args.chunk)))
        return
    load = os.getloadavg()[0]
    runs = {}
    for allocator in ("default", "kept"):
        out = subprocess.run([sys.executable, __file__, "--one", allocator, "--repeats", str(args.repeats),
                              "--chunk", str(args.chunk)], check=True, capture_output=True, text=True)
        runs[allocator] = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, {os.cpu_count()} cores, load "
          f"average {load:.2f} -> {os.getloadavg()[0]:.2f}, torch {torch.__version__}; {POSITIONS} positions, vocab "
          f"{VOCAB:,}, chunk {args.chunk}; forward + backward, median ms of {args.repeats}")
    print("| size, dtype | stock (allocator default) | fused (default) | stock / fused | stock (memory kept) | "
          "fused (kept) | stock / fused |\n|---|---|---|---|---|---|---|")
    for key in runs["default"]:
        d, k = runs["default"][key], runs["kept"][key]
        print(f"| {key} | {d['stock']:.0f} | {d['fused']:.0f} | {d['stock'] / d['fused']:.2f}x | {k['stock']:.0f} | "
              f"{k['fused']:.0f} | {k['stock'] / k['fused']:.2f}x |")
    print(json.dumps(runs))


if __name__ == "__main__":
    main()
