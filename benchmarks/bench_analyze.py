"""Neuron importance: our one forward + one backward per batch with tensor hooks against the strongest plain loop a
user would write, and the memory an 8B model needs.

- ours: `fuxitranyu.analyze.neurons.importance_of_ids`: hooks on every tracked module; each module's |grad · output|
  is summed into its totals during the backward pass, as soon as its gradient exists, and the gradient is freed.
- baseline: the same batches and the same forward (forward hooks keep every tracked output), then one
  `torch.autograd.grad(loss, [every tracked output])` — one backward pass for all modules — and the same sums.

Both run on 15 languages × `--sentences` random "sentences" (token ids, 8–96 tokens, longer for some languages as
real fertility differs) through a random-weight model of the `small` preset (59M parameters, vocab 32k), fp32 on CPU
(bf16 where --precision bf16), `--rounds` times each, alternating, every run a fresh subprocess so that its peak
resident memory (ru_maxrss) is its own; the two results are checked to agree.

`--memory-8b` measures, in bf16, the memory the neuron analysis takes per token per layer at the 8B width (hidden
4096, MLP 16384) and per token per vocabulary entry, from one- and two-layer models of that width, and prints what
the 30-layer model with its 250,752-entry vocabulary needs.

    python benchmarks/bench_analyze.py [--languages 15] [--sentences 24] [--rounds 3] [--memory-8b]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime

import numpy as np
import torch

from fuxitranyu.analyze.batches import Encoded, collate, plan_batches
from fuxitranyu.analyze.hooks import find_layout
from fuxitranyu.analyze.neurons import importance_of_ids, sentence_losses

GIB = 2**30


def rss_gib() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB


def synthetic_sentences(languages: int, per_language: int, vocab: int, seed: int = 0) -> Encoded:
    rng = np.random.default_rng(seed)
    fertility = rng.uniform(1.0, 2.0, size=languages)  # some languages take twice the tokens of others
    ids, language = [], []
    for lang in range(languages):
        lengths = np.clip(rng.normal(28, 10, size=per_language) * fertility[lang], 8, 96).astype(int)
        ids += [rng.integers(1, vocab, size=n).tolist() for n in lengths]
        language += [lang] * per_language
    return Encoded(ids, language, 0, 0)


def build_model(preset: str, dtype: torch.dtype, **overrides):
    from fuxitranyu.model import FuxiTranyuForCausalLM, preset_config

    torch.manual_seed(0)
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # built in its dtype: no fp32 copy raises the peak memory before the run
    try:
        return FuxiTranyuForCausalLM(preset_config(preset, **overrides)).eval()
    finally:
        torch.set_default_dtype(default)


def one_grad_importance(model, encoded: Encoded, languages: int, batch_tokens: int) -> np.ndarray:
    """Per module (languages, units) totals: forward hooks keep the outputs, one `autograd.grad` over all of them."""
    layout = find_layout(model)
    model.requires_grad_(False)
    model.enable_input_require_grads()
    outputs: dict[int, torch.Tensor] = {}
    handles = [t.module.register_forward_hook(lambda m, a, out, i=i: outputs.__setitem__(i, out))
               for i, t in enumerate(layout.modules)]
    totals = [None] * len(layout.modules)
    for indices in plan_batches([len(i) for i in encoded.ids], batch_tokens):
        batch = collate(encoded, indices, torch.device("cpu"))
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False).logits
        loss = sentence_losses(logits, batch.input_ids, batch.attention_mask).sum()
        mask = batch.attention_mask[..., None].float()
        kept = [outputs[i] for i in range(len(layout.modules))]
        for i, grad in enumerate(torch.autograd.grad(loss, kept)):
            phi = (grad.float() * kept[i].detach().float() * mask).sum(1, dtype=torch.float64).abs()
            if totals[i] is None:
                totals[i] = torch.zeros(languages, phi.shape[1], dtype=torch.float64)
            totals[i].index_put_((batch.language,), phi, accumulate=True)
        outputs.clear()
    for handle in handles:
        handle.remove()
    return np.concatenate([t.numpy() for t in totals], axis=1)


def worker(args) -> dict:
    """One measurement in this (fresh) process."""
    torch.set_num_threads(args.threads)
    dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
    model = build_model(args.preset, dtype, **json.loads(args.overrides))
    encoded = synthetic_sentences(args.languages, args.count, model.config.vocab_size)
    before = rss_gib()
    started = time.perf_counter()
    if args.worker == "baseline":
        totals = one_grad_importance(model, encoded, args.languages, args.batch_tokens)
    else:
        result = importance_of_ids(model, encoded, tuple(map(str, range(args.languages))), name="bench",
                                   batch_tokens=args.batch_tokens, device=torch.device("cpu"))
        counts = result.sentences[:, None].astype(np.float64)
        totals = np.concatenate([units * counts for units in result.units.values()], axis=1)
    seconds = time.perf_counter() - started
    if args.save:
        np.save(args.save, totals)
    return {"seconds": seconds, "peak_gib": rss_gib(), "setup_gib": before, "sentences": len(encoded.ids),
            "tokens": sum(map(len, encoded.ids))}


def spawn(args, kind: str, count: int, save: str = "", overrides: dict | None = None, preset: str | None = None,
          precision: str | None = None) -> dict:
    command = [sys.executable, __file__, "--worker", kind, "--count", str(count), "--languages", str(args.languages),
               "--batch-tokens", str(args.batch_tokens), "--precision", precision or args.precision,
               "--preset", preset or args.preset, "--threads", str(args.threads),
               "--overrides", json.dumps(overrides or {}), "--save", save]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def compare(args) -> None:
    load = os.getloadavg()[0]
    saved = f"/tmp/bench_analyze_{os.getpid()}"
    runs: dict[str, list[dict]] = {"ours": [], "baseline": []}
    for round_ in range(args.rounds):
        for kind in runs:
            runs[kind].append(spawn(args, kind, args.sentences, save=f"{saved}_{kind}.npy" if round_ == 0 else ""))
    a, b = np.load(f"{saved}_ours.npy"), np.load(f"{saved}_baseline.npy")
    agreement = float(np.abs(a - b).max() / np.abs(b).max())
    seconds = {kind: [run["seconds"] for run in done] for kind, done in runs.items()}
    peak = {kind: [run["peak_gib"] - run["setup_gib"] for run in done] for kind, done in runs.items()}
    print(f"## Analyses: neuron importance, hooks against one autograd.grad over all outputs\n\n"
          f"`python benchmarks/bench_analyze.py` — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {args.threads} threads, "
          f"torch {torch.__version__}, load average {load:.2f} at the start, {os.getloadavg()[0]:.2f} at the end, "
          f"{args.precision}, {runs['ours'][0]['sentences']:,} sentences ({runs['ours'][0]['tokens']:,} tokens), "
          f"{args.rounds} rounds.\n")
    print("| run | seconds, min | seconds, median | sentences/s (median) | peak RSS over setup GiB, min | median |")
    print("|---|---:|---:|---:|---:|---:|")
    for kind in runs:
        middle = statistics.median(seconds[kind])
        print(f"| {kind} | {min(seconds[kind]):.1f} | {middle:.1f} | {runs[kind][0]['sentences'] / middle:.1f} | "
              f"{min(peak[kind]):.2f} | {statistics.median(peak[kind]):.2f} |")
    memory = statistics.median(peak["baseline"]) / statistics.median(peak["ours"])
    print(f"\nTime baseline / ours: {min(seconds['baseline']) / min(seconds['ours']):.2f}× (minima), "
          f"{statistics.median(seconds['baseline']) / statistics.median(seconds['ours']):.2f}× (medians); "
          f"peak memory over setup baseline / ours: {memory:.2f}× (medians). Largest difference between the two "
          f"results: {agreement:.1e} of the largest value.")


def memory_8b(args) -> None:
    """Per token per layer and per token per vocabulary entry at the 8B width, bf16, from three small models."""
    width = dict(hidden_size=4096, intermediate_size=16384, num_attention_heads=32, max_position_embeddings=4096)
    runs = {}
    for layers, vocab in ((1, 8192), (2, 8192), (1, 32768)):
        runs[(layers, vocab)] = spawn(args, "ours", args.sentences, preset="tiny", precision="bf16",
                                      overrides={**width, "num_hidden_layers": layers, "vocab_size": vocab})
    activations = {key: run["peak_gib"] - run["setup_gib"] for key, run in runs.items()}
    tokens = args.batch_tokens
    per_layer = (activations[(2, 8192)] - activations[(1, 8192)]) * GIB / tokens
    per_vocab = (activations[(1, 32768)] - activations[(1, 8192)]) * GIB / tokens / (32768 - 8192)
    weights = 8_095_313_920 * 2 / GIB
    total = weights + (30 * per_layer + 250_752 * per_vocab) * tokens / GIB
    print(f"bf16 at the 8B width, {tokens} tokens per batch: {per_layer / 2**10:.0f} KiB per token per layer, "
          f"{per_vocab:.1f} B per token per vocabulary entry; 8B model: weights {weights:.1f} GiB + activations "
          f"{total - weights:.1f} GiB = {total:.1f} GiB")
    for (layers, vocab), run in runs.items():
        print(f"  {layers} layer(s), vocab {vocab}: peak {run['peak_gib']:.2f} GiB, after setup {run['setup_gib']:.2f} "
              f"GiB, {run['tokens']:,} tokens in {run['seconds']:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--languages", type=int, default=15)
    parser.add_argument("--sentences", type=int, default=24, help="per language")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each, alternating")
    parser.add_argument("--batch-tokens", type=int, default=4096)
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--preset", default="small")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--memory-8b", action="store_true")
    parser.add_argument("--worker", choices=("ours", "baseline"), help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--overrides", default="{}", help=argparse.SUPPRESS)
    parser.add_argument("--save", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
    elif args.memory_8b:
        memory_8b(args)
    else:
        compare(args)


if __name__ == "__main__":
    main()
