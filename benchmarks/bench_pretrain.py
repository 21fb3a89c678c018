"""Pretraining throughput and MFU of our trainer, against a plain transformers loop, on a CPU or a GPU.

CPU (default), two sizes, in one run:
- ours in the precision `auto` picks here (bf16 autocast where the CPU has a bf16 unit, else fp32), as a short run
  gets it (`compile: auto` compiles on a CPU only for runs of 1000 steps or more), and compiled, as a long run gets it
  (with an empty compile cache, so that its first step shows the whole compile time, and the break-even in steps),
- ours in fp32,
- baseline: the plain loop over transformers' `ArceeForCausalLM` of the same architecture in fp32
  (`loss = model(ids, labels=ids).loss; loss.backward(); AdamW.step()`), in a process with the C allocator's
  defaults, as a user's loop runs;
- the same plain loop with freed host memory kept (what our trainer does on a CPU), to show how much of our lead is
  the allocator and how much the rest (the fused loss, fused AdamW).
Ours: `fuxitranyu.pretrain.train.Trainer` on a synthetic packed mix (random tokens) with the trainer's defaults
(`attention: auto`, the matmul kernel on a CPU in bf16; `keep_host_memory: auto`, kept on a CPU). `--compiled` adds
ours compiled in fp32. Every measurement runs in a fresh process (the allocator setting is
process-wide), the variants alternate over `--rounds` rounds and each reports its median round, because this kind of
VM moves by ±15% from minute to minute. MFU divides by the matmul peak of the dtype in use, measured with the
trainer's own probe.

GPU: `--device cuda --preset fuxitranyu-1b`: bf16 autocast, SDPA (FlashAttention kernels), FSDP2 on one device
(`distributed: fsdp`, a process group of one), activation checkpointing off and on; tokens/s, MFU against the GPU's
dense bf16 peak (from its name), and peak memory. About 3-4 minutes on an H100.

    python benchmarks/bench_pretrain.py [--steps 12] [--warmup 3] [--rounds 3] [--compiled]
    python benchmarks/bench_pretrain.py --device cuda --preset fuxitranyu-1b [--micro-batch 4 --context 4096]
    python benchmarks/bench_pretrain.py --device cpu --preset tiny --micro-batch 2 --context 64 --steps 2  # path check
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

CPU_SIZES = {  # name: (hidden, layers, heads, sequences, context)
    "hidden 256 x 4 layers, vocab 32k, 8 x 256": (256, 4, 4, 8, 256),
    "hidden 512 x 8 layers, vocab 32k, 4 x 512": (512, 8, 8, 4, 512),
}
CPU_VOCAB = 32_000

# Dense bf16 peak FLOP/s (no sparsity) from the vendors' datasheets, by a substring of torch.cuda.get_device_name().
GPU_BF16_PEAK = {"H200": 989e12, "H100 SXM": 989e12, "H100 NVL": 835e12, "H100 PCIe": 756e12, "H100": 989e12,
                 "H800": 989e12, "A100": 312e12, "A800": 312e12, "L40S": 362e12, "A10G": 70e12, "L4": 121e12}


def gpu_peak(name: str) -> float | None:
    return next((peak for key, peak in GPU_BF16_PEAK.items() if key in name), None)


def synthetic_mix(folder: Path, vocab: int, context: int, tokens: int) -> None:
    from fuxitranyu.mix.build import pack
    from fuxitranyu.mix.config import MixSection
    from fuxitranyu.mix.plan import plan_mix

    rng = np.random.default_rng(0)
    dtype = np.uint16 if vocab <= 2**16 else np.uint32
    (folder / "tokens").mkdir(parents=True)
    document = max(min(1000, tokens // 8), 1)
    tokens = tokens // document * document
    rng.integers(1, vocab, tokens).astype(dtype).tofile(folder / "tokens" / "en.bin")
    np.arange(0, tokens + 1, document, dtype=np.int64).tofile(folder / "tokens" / "en.idx")
    available = tokens + tokens // document
    plan = plan_mix({"en": available}, MixSection(strategy="proportional"), available)
    pack(plan, folder / "tokens", folder / "mix", context, 0, vocab, 4096, 0)


@dataclass
class Measured:
    tokens_per_s: float
    first_step_s: float
    peak_flops: float
    precision: str
    peak_memory_gib: float | None = None


def ours(config, sequences: int, context: int, steps: int, warmup: int, work: Path, settings: list[str],
         materialize_now: bool = True) -> Measured:
    """Our Trainer on `steps + warmup` steps of a synthetic mix; the median of the steps after `warmup`."""
    from fuxitranyu.model import FuxiTranyuForCausalLM
    from fuxitranyu.pretrain.train import Trainer
    from fuxitranyu.recipe import load_recipe

    torch.manual_seed(0)
    if materialize_now:
        FuxiTranyuForCausalLM(config).save_pretrained(work / "model")
    else:  # as the model stage writes a large preset: the config; weights are initialised after sharding
        config.save_pretrained(work / "model")
    batch = sequences * context
    synthetic_mix(work, config.vocab_size, context, batch * (steps + warmup + 2))
    recipe = load_recipe("tiny", [
        f"output_dir={work}", f"mix.context_length={context}", f"pretrain.total_tokens={batch * (steps + warmup)}",
        f"pretrain.batch=[{{from_tokens: 0, batch_tokens: {batch}}}]", f"pretrain.micro_batch_size={sequences}",
        "pretrain.warmup_tokens=0", f"pretrain.checkpoints=[{{from_tokens: 0, every_tokens: {10**15}}}]",
        f"model.overrides.max_position_embeddings={context}", *settings])
    (work / "out").mkdir()
    trainer = Trainer(recipe, work / "model", work / "mix", work / "out")
    if trainer.runtime.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    original = trainer.step

    def timed(*args):
        if trainer.runtime.device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        result = original(*args)
        if trainer.runtime.device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
        return result

    trainer.step = timed
    trainer.save = lambda: None  # checkpoint writing is not part of the measured loop
    trainer.train()
    memory = torch.cuda.max_memory_allocated() / 2**30 if trainer.runtime.device.type == "cuda" else None
    return Measured(batch / statistics.median(times[warmup:]), times[0], trainer.peak_flops,
                    trainer.runtime.precision.name, memory)


def baseline(config, sequences: int, context: int, steps: int, warmup: int) -> float:
    """tokens/s of the plain transformers loop over ArceeForCausalLM in fp32."""
    from transformers import ArceeForCausalLM

    from fuxitranyu.model.export import convert_config

    torch.manual_seed(0)
    model = ArceeForCausalLM(convert_config(config, "arcee"))
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    times = []
    for _ in range(steps + warmup):
        ids = torch.randint(1, config.vocab_size, (sequences, context + 1))
        started = time.perf_counter()
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - started)
    return sequences * context / statistics.median(times[warmup:])


VARIANTS = {  # name: (our trainer's settings, or None for the plain Arcee loop; keep host memory in the Arcee loop)
    "auto": (["pretrain.precision=auto"], False),
    "auto compiled": (["pretrain.precision=auto", "pretrain.compile=true"], False),
    "fp32": (["pretrain.precision=fp32"], False),
    "arcee": (None, False),
    "arcee kept": (None, True),
    "fp32 compiled": (["pretrain.precision=fp32", "pretrain.compile=true"], False),
}


def cpu_config(size: str):
    from fuxitranyu.model import FuxiTranyuConfig

    hidden, layers, heads, sequences, context = CPU_SIZES[size]
    config = FuxiTranyuConfig(vocab_size=CPU_VOCAB, hidden_size=hidden, intermediate_size=4 * hidden,
                              num_hidden_layers=layers, num_attention_heads=heads, max_position_embeddings=context)
    return config, sequences, context


def measure_one(size: str, variant: str, steps: int, warmup: int) -> dict:
    """One variant at one size, in this (fresh) process: tokens/s, first step, the peak FLOP/s of its dtype."""
    from fuxitranyu.runtime import keep_freed_host_memory

    torch.set_num_threads(os.cpu_count() or 1)
    config, sequences, context = cpu_config(size)
    settings, keep = VARIANTS[variant]
    if settings is None:
        if keep:
            keep_freed_host_memory(True, torch.device("cpu"))
        return {"tokens_per_s": baseline(config, sequences, context, steps, warmup)}
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(Path(tmp) / "inductor")  # compiled variants: a cold compile
        m = ours(config, sequences, context, steps, warmup, Path(tmp), settings)
    return {"tokens_per_s": m.tokens_per_s, "first_step_s": m.first_step_s, "peak_flops": m.peak_flops,
            "precision": m.precision}


def break_even(eager: list[dict], compiled: list[dict], tokens_per_step: int) -> int | None:
    """Steps after which compiling has paid for its first (compiling) step; None when compiled steps are not faster."""
    def median(runs, key):
        return statistics.median(r[key] for r in runs)

    saved = (1 / median(eager, "tokens_per_s") - 1 / median(compiled, "tokens_per_s")) * tokens_per_step
    extra = median(compiled, "first_step_s") - median(eager, "first_step_s")
    return round(extra / saved) if saved > 0 else None


def cpu(args) -> None:
    import subprocess
    import sys

    from fuxitranyu.model.summary import summarize
    from fuxitranyu.runtime import choose_precision

    load = os.getloadavg()[0]
    auto = choose_precision("auto", torch.device("cpu"))
    variants = [v for v in VARIANTS if args.compiled or v != "fp32 compiled"]
    runs: dict[tuple[str, str], list[dict]] = {}
    for round_ in range(args.rounds):
        for size in CPU_SIZES:
            # the order turns every round, so no variant always runs first (or last) on a warming / loaded machine
            for variant in variants[round_ % len(variants):] + variants[:round_ % len(variants)]:
                out = subprocess.run([sys.executable, __file__, "--one", size, variant, "--steps", str(args.steps),
                                      "--warmup", str(args.warmup)], check=True, capture_output=True, text=True)
                runs.setdefault((size, variant), []).append(json.loads(out.stdout.strip().splitlines()[-1]))
                print(f"  round {round_ + 1} {size}: {variant} {runs[size, variant][-1]['tokens_per_s']:,.0f} tok/s",
                      file=sys.stderr)
    rows = []
    for size in CPU_SIZES:
        config, sequences, context = cpu_config(size)
        flops = summarize(config, context).training_flops_per_token
        median = {v: statistics.median(r["tokens_per_s"] for r in runs[size, v]) for v in variants}
        # a peak is a peak: the best probe of all rounds (single probes on this VM sometimes ran at half speed)
        peak = {v: max(r["peak_flops"] for r in runs[size, v]) for v in variants if "peak_flops" in runs[size, v][0]}
        row = {"size": size, "auto_precision": runs[size, "auto"][0]["precision"],
               **{f"{v.replace(' ', '_')}_tokens_per_s": [round(r["tokens_per_s"], 1) for r in runs[size, v]]
                  for v in variants},
               "auto_over_fp32": median["auto"] / median["fp32"],
               "auto_compiled_over_fp32": median["auto compiled"] / median["fp32"],
               "auto_compiled_over_auto": median["auto compiled"] / median["auto"],
               "auto_compile_break_even_steps": break_even(runs[size, "auto"], runs[size, "auto compiled"],
                                                           sequences * context),
               "fp32_over_arcee": median["fp32"] / median["arcee"],
               "auto_over_arcee": median["auto"] / median["arcee"],
               "arcee_kept_over_arcee": median["arcee kept"] / median["arcee"],
               "fp32_over_arcee_kept": median["fp32"] / median["arcee kept"],
               "mfu": {v: round(median[v] * flops / peak.get(v, peak["fp32"]), 4) for v in variants},
               "median_tokens_per_s": {v: round(t, 1) for v, t in median.items()}}
        if args.compiled:
            row["compiled_over_eager"] = median["fp32 compiled"] / median["fp32"]
            row["compile_break_even_steps"] = break_even(runs[size, "fp32"], runs[size, "fp32 compiled"],
                                                         sequences * context)
        rows.append(row)
    print(f"# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, load average {load:.2f} -> {os.getloadavg()[0]:.2f}, torch {torch.__version__}; "
          f"auto = {auto.name} ({auto.reason}); median of {args.rounds} rounds, {args.steps} steps each")
    print("| size | ours auto | ours auto, compiled | ours fp32 | Arcee fp32 | Arcee fp32, memory kept | auto / fp32 | "
          "auto compiled / fp32 | fp32 / Arcee | auto / Arcee | fp32 / Arcee kept | "
          "MFU auto / auto compiled / fp32 / Arcee |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        t, mfu = r["median_tokens_per_s"], r["mfu"]
        print(f"| {r['size']} | {t['auto']:,.0f} tok/s ({r['auto_precision']}) | {t['auto compiled']:,.0f} | "
              f"{t['fp32']:,.0f} | {t['arcee']:,.0f} | {t['arcee kept']:,.0f} | {r['auto_over_fp32']:.2f}x | "
              f"{r['auto_compiled_over_fp32']:.2f}x | {r['fp32_over_arcee']:.2f}x | {r['auto_over_arcee']:.2f}x | "
              f"{r['fp32_over_arcee_kept']:.2f}x | {mfu['auto']:.0%} / {mfu['auto compiled']:.0%} / "
              f"{mfu['fp32']:.0%} / {mfu['arcee']:.0%} |")
        print(f"  auto compiled / auto: {r['auto_compiled_over_auto']:.2f}x, break-even of a cold compile "
              f"{r['auto_compile_break_even_steps'] or 'never'} steps")
        if args.compiled:
            print(f"  compiled / eager fp32: {r['compiled_over_eager']:.2f}x, break-even "
                  f"{r['compile_break_even_steps'] or 'never'} steps")
    print(json.dumps(rows))


def preset_run(args) -> None:
    """One preset on one device: FSDP2 over a mesh of one, bf16 on a GPU (auto on a CPU), activation checkpointing
    off and on. On a CPU this checks the GPU path end to end with a tiny preset; its numbers mean little."""
    from fuxitranyu.model import preset_config
    from fuxitranyu.model.summary import summarize

    on_gpu = args.device == "cuda"
    name = torch.cuda.get_device_name() if on_gpu else platform.processor() or platform.machine()
    peak = gpu_peak(name) if on_gpu else None
    config = preset_config(args.preset, max_position_embeddings=args.context)
    flops = summarize(config, args.context).training_flops_per_token
    rows = []
    for checkpointing in (False, True):
        settings = [f"pretrain.precision={'bf16' if on_gpu else 'auto'}", "pretrain.attention=sdpa",
                    "pretrain.distributed=fsdp", f"pretrain.compile={str(on_gpu).lower()}",
                    f"pretrain.activation_checkpointing={str(checkpointing).lower()}",
                    *([f"pretrain.peak_flops={peak}"] if peak else [])]
        with tempfile.TemporaryDirectory() as tmp:
            measured = ours(config, args.micro_batch, args.context, args.steps, args.warmup, Path(tmp), settings,
                            materialize_now=False)
        rows.append({"activation_checkpointing": checkpointing, "tokens_per_s": round(measured.tokens_per_s, 1),
                     "mfu": round(measured.tokens_per_s * flops / measured.peak_flops, 4),
                     "peak_memory_gib": None if measured.peak_memory_gib is None
                     else round(measured.peak_memory_gib, 2),
                     "first_step_s": round(measured.first_step_s, 1), "precision": measured.precision})
    peak_text = f"dense bf16 peak {peak / 1e12:.0f} TFLOP/s" if peak else "peak measured by the trainer's probe"
    print(f"# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {name} ({peak_text}), torch {torch.__version__}, "
          f"preset {args.preset}, micro-batch {args.micro_batch} x {args.context}, {rows[0]['precision']}, SDPA, "
          f"FSDP2 on one device")
    print("| activation checkpointing | tokens/s | MFU | peak memory | first step |\n|---|---|---|---|---|")
    for r in rows:
        mfu = "n/a" if r["mfu"] is None else f"{r['mfu']:.0%}"
        memory = "n/a" if r["peak_memory_gib"] is None else f"{r['peak_memory_gib']} GiB"
        print(f"| {'on' if r['activation_checkpointing'] else 'off'} | {r['tokens_per_s']:,.0f} | {mfu} | {memory} | "
              f"{r['first_step_s']} s |")
    print(json.dumps(rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--preset", help="train this model preset on --device (FSDP2 on one device, activation "
                                             "checkpointing off and on) instead of the CPU comparison")
    parser.add_argument("--micro-batch", type=int, default=4, help="--preset: sequences per step")
    parser.add_argument("--context", type=int, default=4096, help="--preset: tokens per sequence")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3, help="CPU comparison: alternating rounds, median reported")
    parser.add_argument("--compiled", action="store_true", help="CPU comparison: add ours compiled in fp32")
    parser.add_argument("--one", nargs=2, metavar=("SIZE", "VARIANT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure_one(*args.one, args.steps, args.warmup)))
        return
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device here")
    if args.preset:
        preset_run(args)
    elif args.device == "cpu":
        cpu(args)
    else:
        raise SystemExit("--device cuda needs --preset (e.g. fuxitranyu-1b)")


if __name__ == "__main__":
    main()
