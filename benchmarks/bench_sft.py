"""SFT throughput: TRL's padding-free packing against padded batches, on the same examples, in one run.

- data: the SFT demo conversations built from a run's held-out parallel sets (`posttrain.demo`, short translations of
  interface strings: lengths vary, so padding matters), or the same built from `--parallel DIR`.
- model: a run's pretrained `pretrain/model` (default `runs/tiny`), loaded fresh for every measurement.
- padded (the baseline): `SFTTrainer` with `packing=False`; each micro-batch of `--batch` conversations is padded to its
  longest (TRL's collator), attention masked.
- packed: `packing=True, packing_strategy="bfd"`: best-fit-decreasing packing into rows of `--max-length` tokens,
  padding-free (one row per micro-batch row, attention kept within each example through position ids). Its
  micro-batch is sized to hold about as many examples as a padded one (`--batch` × mean length / max length rows).

Both train one epoch, fp32, assistant-only loss, no NEFTune; the figure is example tokens (prompt + answer, no padding)
per second of `train_runtime`. The two alternate `--repeats` times; medians are reported.

    python benchmarks/bench_sft.py [--run runs/tiny] [--examples 1024] [--batch 16] [--repeats 3] [--threads N]
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import subprocess
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import torch


def conversations(parallel: Path, examples: int, seed: int) -> list[dict]:
    from fuxitranyu.posttrain.demo import build_demo

    return build_demo(parallel, examples, ["en", "zh", "es", "fr", "ru", "ar"], 300, seed, preference=False).records


def example_tokens(tokenizer, records: list[dict]) -> list[int]:
    return [len(tokenizer.apply_chat_template(r["messages"], tokenize=True, return_dict=True)["input_ids"])
            for r in records]


def measure(model_dir: Path, records: list[dict], packed: bool, batch: int, max_length: int) -> float:
    """Seconds of one epoch of SFT over `records`."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from fuxitranyu.posttrain.model import load_base_model, load_chat_tokenizer

    chat = load_chat_tokenizer(model_dir)
    with tempfile.TemporaryDirectory() as tmp:
        args = SFTConfig(output_dir=tmp, per_device_train_batch_size=batch, num_train_epochs=1, learning_rate=1e-4,
                         bf16=False, use_cpu=True, activation_checkpointing=False, report_to="none",
                         max_length=max_length, assistant_only_loss=True, packing=packed, packing_strategy="bfd",
                         save_strategy="no", disable_tqdm=True, logging_steps=10_000, seed=0)
        trainer = SFTTrainer(model=load_base_model(model_dir, chat, "sdpa"), args=args,
                             train_dataset=Dataset.from_list(records), processing_class=chat.tokenizer)
        return trainer.train().metrics["train_runtime"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, default=Path("runs/tiny"))
    parser.add_argument("--parallel", type=Path, default=None)
    parser.add_argument("--examples", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="torch threads (on a loaded machine 1 avoids OpenMP spin contention)")
    args = parser.parse_args()

    import fuxitranyu  # noqa: F401
    from fuxitranyu.posttrain.model import load_chat_tokenizer

    torch.set_num_threads(args.threads)
    model_dir = args.run / "pretrain" / "model"
    records = conversations(args.parallel or args.run / "data" / "parallel", args.examples, seed=0)
    lengths = example_tokens(load_chat_tokenizer(model_dir).tokenizer, records)
    tokens, mean = sum(lengths), statistics.mean(lengths)
    padded_tokens = sum(max(lengths[i:i + args.batch]) * len(lengths[i:i + args.batch])
                        for i in range(0, len(lengths), args.batch))  # an estimate: the trainer shuffles
    rows = max(1, math.floor(args.batch * mean / args.max_length))
    load = os.getloadavg()[0]
    seconds = {"padded": [], "packed": []}
    for _ in range(args.repeats):
        seconds["padded"].append(measure(model_dir, records, False, args.batch, args.max_length))
        seconds["packed"].append(measure(model_dir, records, True, rows, args.max_length))
    rates = {name: tokens / statistics.median(values) for name, values in seconds.items()}
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model_name = next((line.split(":", 1)[1].strip() for line in cpu.splitlines() if "Model name" in line), "?")
    print(f"# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {model_name}, {os.cpu_count()} cores, "
          f"{args.threads} torch threads, torch {torch.__version__}, load average {load:.2f} at the start, "
          f"Python {platform.python_version()}")
    print(f"{len(records)} conversations, {tokens:,} tokens (mean {mean:.1f}, max {max(lengths)}); padded batches of "
          f"{args.batch} hold ~{padded_tokens:,} positions ({100 * (1 - tokens / padded_tokens):.0f}% padding); "
          f"packed: {rows} rows of {args.max_length}")
    print("| method | seconds per epoch (each repeat) | example tokens/s (median) |")
    print("|---|---|---|")
    for name, values in seconds.items():
        print(f"| {name} | {', '.join(f'{v:.1f}' for v in values)} | {rates[name]:,.0f} |")
    print(f"ratio packed / padded: {rates['packed'] / rates['padded']:.2f}x")


if __name__ == "__main__":
    main()
