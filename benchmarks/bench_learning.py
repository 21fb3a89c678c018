"""Does our trainer learn as fast as a plain shuffled training loop? Same mix, same initial weights, same schedule.

- ours: `fuxitranyu.pretrain.train.Trainer` on the run's mix (the reader's seeded permutation per epoch, chunked loss,
  per-language sums, divergence guard), one process.
- baseline: the textbook loop over transformers: all sequences of the same mix in one `np.random.permutation`,
  `AutoModelForCausalLM.from_pretrained(<the same initial weights>)`, `loss = model(ids, labels=ids).loss`,
  `torch.optim.AdamW` with the same β, ε, weight decay and gradient clipping, and transformers'
  `get_cosine_with_min_lr_schedule_with_warmup` (floor 10%, as the recipe).

Both train the same number of tokens at a constant batch; the script prints both loss curves in windows and the
ratio of the mean losses at equal tokens (ours / baseline; above 1 means ours learns slower), next to the unigram
entropy of the mix (the loss of a model that learned no context).

    fuxitranyu run tiny --only data --only tokenizer --only model --only mix     # once: the default run's inputs
    python benchmarks/bench_learning.py --run runs/tiny [--tokens 600K] [--batch-tokens 4096]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch


def unigram_entropy(reader) -> float:
    """Entropy (nats) of the token distribution of the mix's targets: what a context-free model can reach."""
    counts = np.zeros(reader.index["vocab_size"], dtype=np.int64)
    for shard in reader.shards:
        counts += np.bincount(np.asarray(shard[:, 1:]).ravel(), minlength=len(counts))
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def ours(run: Path, recipe, work: Path) -> list[tuple[int, float]]:
    from fuxitranyu.pretrain.train import Trainer

    trainer = Trainer(recipe, run / "model", run / "mix", work)
    trainer.save = lambda: None  # checkpoints are not part of the comparison
    trainer.train()
    rows = [json.loads(line) for line in (work / "metrics.jsonl").read_text().splitlines()]
    return [(r["tokens"], r["loss"]) for r in rows if "loss" in r and "event" not in r]


def baseline(run: Path, recipe, seed: int) -> list[tuple[int, float]]:
    from transformers import AutoModelForCausalLM, get_cosine_with_min_lr_schedule_with_warmup

    import fuxitranyu  # noqa: F401  (registers the model type)
    from fuxitranyu.mix.reader import ShardReader

    config = recipe.pretrain
    reader = ShardReader(run / "mix")
    sequences = np.concatenate([np.asarray(s) for s in reader.shards]).astype(np.int64)
    context = reader.index["context_length"]
    batch = config.batch[0].batch_tokens // context
    steps = config.total_tokens // (batch * context)
    torch.manual_seed(seed)
    order = np.concatenate([np.random.default_rng(seed).permutation(len(sequences))
                            for _ in range(math.ceil(steps * batch / len(sequences)))])
    model = AutoModelForCausalLM.from_pretrained(run / "model", dtype=torch.float32)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.max_lr, betas=config.adam_betas, eps=config.adam_eps,
                                  weight_decay=config.weight_decay)
    schedule = get_cosine_with_min_lr_schedule_with_warmup(
        optimizer, num_warmup_steps=config.warmup_tokens // (batch * context), num_training_steps=steps,
        min_lr_rate=config.min_lr_ratio)
    curve = []
    for step in range(steps):
        ids = torch.from_numpy(sequences[order[step * batch:(step + 1) * batch]])
        loss = model(input_ids=ids, labels=ids).loss  # predicts ids[:, 1:] from ids[:, :-1], as ours
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        curve.append(((step + 1) * batch * context, loss.item()))
    return curve


def window_means(curve: list[tuple[int, float]], windows: int) -> list[float]:
    losses = np.array([loss for _, loss in curve])
    return [float(part.mean()) for part in np.array_split(losses, windows)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, default=Path("runs/tiny"), help="run directory with model/ and mix/")
    parser.add_argument("--recipe", default="tiny")
    parser.add_argument("--tokens", default="600K")
    parser.add_argument("--batch-tokens", type=int, default=4096)
    parser.add_argument("--windows", type=int, default=10)
    args = parser.parse_args()

    from fuxitranyu.mix.reader import ShardReader
    from fuxitranyu.recipe import load_recipe

    recipe = load_recipe(args.recipe, [
        f"output_dir={args.run}", f"pretrain.total_tokens={args.tokens}", "pretrain.precision=fp32",
        f"pretrain.batch=[{{from_tokens: 0, batch_tokens: {args.batch_tokens}}}]"])
    entropy = unigram_entropy(ShardReader(args.run / "mix"))
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as work:
        mine = ours(args.run, recipe, Path(work))
    theirs = baseline(args.run, recipe, recipe.seed)
    a, b = window_means(mine, args.windows), window_means(theirs, args.windows)
    print(f"# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.processor() or platform.machine()}, "
          f"load average {load:.2f} -> {os.getloadavg()[0]:.2f}")
    print(f"tokens {recipe.pretrain.total_tokens:,} at {args.batch_tokens} tokens/step, fp32; unigram entropy of the "
          f"mix {entropy:.3f} nats")
    print("| window | ours | plain shuffled loop | ours / plain |\n|---|---|---|---|")
    for i, (x, y) in enumerate(zip(a, b)):
        print(f"| {i + 1}/{args.windows} | {x:.3f} | {y:.3f} | {x / y:.3f} |")
    print(f"last window: ours {a[-1]:.3f}, plain {b[-1]:.3f}, ratio {a[-1] / b[-1]:.3f}; "
          f"below the unigram entropy by {entropy - a[-1]:.3f} (ours) and {entropy - b[-1]:.3f} (plain) nats")


if __name__ == "__main__":
    main()
