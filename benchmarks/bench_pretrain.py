"""Pretraining throughput: our loop against the fp32 GEMM rate and a plain loop over transformers' ArceeForCausalLM of
the same architecture, in one run, at two sizes.

- GEMM rate: the best of a few square fp32 matmuls (1024-4096), measured here; the denominator of MFU.
- ours: `fuxitranyu.pretrain.train.Trainer` on a synthetic mix (random tokens), fp32, fused AdamW, chunked loss,
  each decoder layer compiled (`pretrain.compile`), one process.
- baseline: `ArceeForCausalLM(**same config**)`, `loss = model(ids, labels=ids).loss; loss.backward();
  AdamW.step()`, the plain PyTorch loop with transformers' defaults.

FLOPs per token = 6·N_non-embedding + 6·N_lm_head + 12·L·d·T (fuxitranyu.model.summary). Steps after the first
`--warmup` (compilation) are timed; the median step time is reported.

    python benchmarks/bench_pretrain.py [--steps 12] [--warmup 4]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

SIZES = {  # name: (hidden, layers, heads, vocab, sequences, context)
    "hidden 256 x 4 layers, vocab 32k, 8 x 256": (256, 4, 4, 32_000, 8, 256),
    "hidden 512 x 8 layers, vocab 32k, 4 x 512": (512, 8, 8, 32_000, 4, 512),
}


def gemm_flops() -> float:
    best = 0.0
    for size in (1024, 2048, 4096):
        a, b = torch.randn(size, size), torch.randn(size, size)
        a @ b
        for _ in range(3):
            started = time.perf_counter()
            a @ b
            best = max(best, 2 * size**3 / (time.perf_counter() - started))
    return best


def config_for(hidden, layers, heads, vocab, context):
    from fuxitranyu.model import FuxiTranyuConfig

    return FuxiTranyuConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=4 * hidden,
                            num_hidden_layers=layers, num_attention_heads=heads, max_position_embeddings=context)


def synthetic_mix(folder: Path, vocab: int, context: int, tokens: int) -> None:
    from fuxitranyu.mix.build import pack
    from fuxitranyu.mix.config import MixRecipe
    from fuxitranyu.mix.plan import plan_mix

    rng = np.random.default_rng(0)
    docs = rng.integers(1, vocab, tokens).astype(np.uint16)
    (folder / "tokens").mkdir(parents=True)
    docs.tofile(folder / "tokens" / "en.bin")
    np.arange(0, tokens + 1, 1000, dtype=np.int64).tofile(folder / "tokens" / "en.idx")
    available = tokens + tokens // 1000
    plan = plan_mix({"en": available}, MixRecipe(strategy="proportional"), available)
    pack(plan, folder / "tokens", folder / "mix", context, 0, vocab, 4096, 0)


def ours(config, sequences, context, steps, warmup, work: Path) -> list[float]:
    from fuxitranyu.model import FuxiTranyuForCausalLM
    from fuxitranyu.pretrain.train import Trainer
    from fuxitranyu.recipe import load_recipe

    torch.manual_seed(0)
    FuxiTranyuForCausalLM(config).save_pretrained(work / "model")
    batch = sequences * context
    synthetic_mix(work, config.vocab_size, context, batch * (steps + warmup + 2))
    recipe = load_recipe("tiny", [
        f"output_dir={work}", f"pretrain.context_length={context}", f"pretrain.total_tokens={batch * (steps + warmup)}",
        f"pretrain.batch=[{{from_tokens: 0, batch_tokens: {batch}}}]", f"pretrain.micro_batch_size={sequences}",
        "pretrain.compile=true", "pretrain.warmup_tokens=0", f"pretrain.checkpoints=[{{from_tokens: 0, every_tokens: {10**12}}}]",
        "pretrain.peak_flops=1e12"])
    (work / "out").mkdir()
    trainer = Trainer(recipe, work / "model", work / "mix", work / "out")
    times = []
    original = trainer.step

    def timed(*args):
        started = time.perf_counter()
        result = original(*args)
        times.append(time.perf_counter() - started)
        return result

    trainer.step = timed
    trainer.save = lambda: None  # checkpoint writing is not part of the measured loop
    trainer.train()
    return times[warmup:]


def baseline(config, sequences, context, steps, warmup) -> list[float]:
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
    return times[warmup:]


def main():
    from fuxitranyu.model.summary import summarize

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    load = os.getloadavg()
    peak = gemm_flops()
    rows = []
    for name, (hidden, layers, heads, vocab, sequences, context) in SIZES.items():
        config = config_for(hidden, layers, heads, vocab, context)
        flops_per_token = summarize(config, context).training_flops_per_token
        tokens = sequences * context
        with tempfile.TemporaryDirectory() as tmp:
            ours_times = ours(config, sequences, context, args.steps, args.warmup, Path(tmp))
        base_times = baseline(config, sequences, context, args.steps, args.warmup)
        ours_rate, base_rate = tokens / statistics.median(ours_times), tokens / statistics.median(base_times)
        rows.append({"size": name, "ours_tokens_per_s": round(ours_rate, 1), "ours_mfu": ours_rate * flops_per_token / peak,
                     "arcee_tokens_per_s": round(base_rate, 1), "arcee_mfu": base_rate * flops_per_token / peak,
                     "ratio": ours_rate / base_rate})
    print(f"# pretraining throughput on {platform.node()} ({os.cpu_count()} cores), load average "
          f"{load[0]:.2f} -> {os.getloadavg()[0]:.2f}, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, "
          f"torch {torch.__version__}")
    print(f"fp32 GEMM peak measured: {peak / 1e9:.0f} GFLOP/s")
    print("| size | ours tok/s | ours MFU | Arcee loop tok/s | Arcee MFU | ours / Arcee |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['size']} | {r['ours_tokens_per_s']:,.0f} | {r['ours_mfu']:.0%} | {r['arcee_tokens_per_s']:,.0f} | "
              f"{r['arcee_mfu']:.0%} | {r['ratio']:.2f}x |")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
