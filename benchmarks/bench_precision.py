"""Does bf16 cost quality? The default recipe's pretraining, the first few hundred steps, once in fp32 and once under
bf16 autocast: same data, same initial weights, same order. Prints both loss curves' means over windows of steps, their
largest gap and the gap of the validation loss, against a stated tolerance: 0.05 nats on a 20-step window mean. For
scale, a third run in fp32 with another seed (another batch order, same initial weights) shows how far two fp32
curves that differ only by chance drift apart; the verdict is on the stated tolerance alone.

Needs the default run's data, tokenizer, model and mix (`fuxitranyu run --only data --only tokenizer --only model
--only mix`, or a whole `fuxitranyu run`).

    python benchmarks/bench_precision.py [--run runs/tiny] [--steps 300]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

TOLERANCE = 0.05
WINDOW = 20


def train(run: Path, out: Path, precision: str, steps: int, batch_tokens: int, seed: int | None = None
          ) -> tuple[list[float], float, float]:
    """Per-step losses, the final validation loss and the seconds of one pretraining run."""
    from rich.console import Console

    from fuxitranyu.pipeline import run_pipeline
    from fuxitranyu.recipe import load_recipe

    out.mkdir(parents=True)
    for stage in ("data", "tokenizer", "model", "mix"):
        (out / stage).symlink_to((run / stage).resolve(), target_is_directory=True)
    recipe = load_recipe("tiny", [f"output_dir={out}", f"pretrain.precision={precision}", "pretrain.compile=false",
                                  f"pretrain.total_tokens={steps * batch_tokens}",
                                  f"pretrain.batch=[{{from_tokens: 0, batch_tokens: {batch_tokens}}}]",
                                  "pretrain.checkpoints=[]", f"pretrain.eval_every_tokens={steps * batch_tokens}",
                                  *([f"seed={seed}"] if seed is not None else [])])
    started = time.perf_counter()
    run_pipeline(recipe, only=["pretrain"], console=Console(quiet=True))
    seconds = time.perf_counter() - started
    rows = [json.loads(line) for line in (out / "pretrain" / "metrics.jsonl").read_text().splitlines()]
    losses = [row["loss"] for row in rows if "event" not in row]
    validation = [row["loss"] for row in rows if row.get("event") == "validation"][-1]
    return losses, validation, seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, default=Path("runs/tiny"), help="a finished default run")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-tokens", type=int, default=4096)
    args = parser.parse_args()
    import torch

    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"bf16 unit: {torch.ops.mkldnn._is_mkldnn_bf16_supported()}, load {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        curves = {}
        for name, precision, seed in (("fp32", "fp32", None), ("bf16", "bf16", None),
                                      ("fp32, another seed", "fp32", 4321)):
            curves[name] = train(args.run, Path(tmp) / str(len(curves)), precision, args.steps, args.batch_tokens, seed)
            losses, validation, seconds = curves[name]
            print(f"{name}: {len(losses)} steps in {seconds:.0f} s, final window loss "
                  f"{np.mean(losses[-WINDOW:]):.4f}, validation {validation:.4f}")
    fp32, bf16, other = (np.asarray(curves[p][0]) for p in ("fp32", "bf16", "fp32, another seed"))
    windows = len(fp32) // WINDOW

    def window_gaps(a, b):
        return [abs(a[i * WINDOW:(i + 1) * WINDOW].mean() - b[i * WINDOW:(i + 1) * WINDOW].mean())
                for i in range(windows)]

    gaps, chance = window_gaps(fp32, bf16), window_gaps(fp32, other)
    validation_gap = abs(curves["fp32"][1] - curves["bf16"][1])
    print(f"{WINDOW}-step window means: largest |fp32 - bf16| {max(gaps):.4f} nats (window {int(np.argmax(gaps))} of "
          f"{windows}), mean {np.mean(gaps):.4f}; validation gap {validation_gap:.4f}; per-step largest "
          f"{np.abs(fp32 - bf16).max():.4f}")
    print(f"for scale, fp32 against fp32 with another seed: largest window gap {max(chance):.4f} (window "
          f"{int(np.argmax(chance))}), mean {np.mean(chance):.4f}; validation gap "
          f"{abs(curves['fp32'][1] - curves['fp32, another seed'][1]):.4f}")
    verdict = "within" if max(gaps) <= TOLERANCE and validation_gap <= TOLERANCE else "OUTSIDE"
    print(f"{verdict} the tolerance of {TOLERANCE} nats; bf16/fp32 time {curves['bf16'][2] / curves['fp32'][2]:.2f}; "
          f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
