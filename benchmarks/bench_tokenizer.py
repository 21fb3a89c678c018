"""Tokenizer throughput, each against its obvious baseline in the same run.

- Training (MB/s of sampled text): our stage path, all of it timed (a counting pass and a sampling pass over gzip
  JSONL, BPE, saving the HF directory), against the bare `tokenizers` trainer on the same texts already in a Python
  list (loading them not timed). Each run is a fresh process that reports its peak memory: the streamed path never
  holds the corpus.
- Encoding (MB/s): `encode_batch` / `encode_batch_fast` (what fertility uses) and transformers' batched call, against a
  plain Python loop over `tokenizer.encode`.

The corpus is the default one (this machine's gettext catalogs, as bench_fertility.py writes it), or --corpus DIR.

    python benchmarks/bench_tokenizer.py
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import resource
import tempfile
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from bench_fertility import write_gettext_corpus

from fuxitranyu.recipe import TokenizerSection
from fuxitranyu.tokenizer import (
    VocabularyLayout,
    plan_sample,
    train_bpe,
    train_tokenizer,
)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _train(mode: str, corpus: Path, vocab_size: int, out: Path, result) -> None:
    """One training run in a fresh process: (seconds, sampled bytes, peak RSS in MB, RSS before) into `result`."""
    baseline_rss = _peak_rss_mb()
    if mode == "streamed":
        started = time.perf_counter()
        stats = train_tokenizer(TokenizerSection(vocab_size=vocab_size, max_documents_per_language=10**9),
                                [corpus], out, seed=0)
        seconds, size = time.perf_counter() - started, stats["sample"]["bytes"]
    else:
        texts = list(plan_sample([corpus], cap=10**9, sampling="balanced", seed=0).texts())
        started = time.perf_counter()
        train_bpe(texts, VocabularyLayout(vocab_size, True, 128))
        seconds, size = time.perf_counter() - started, sum(len(t.encode()) for t in texts)
    result.put((seconds, size, _peak_rss_mb(), baseline_rss))


def bench_training(corpus: Path, vocab_size: int, work: Path, repeats: int) -> dict[str, tuple]:
    """Best time of `repeats` interleaved runs per path (so that a busy neighbour slows both alike), highest RSS."""
    context = multiprocessing.get_context("spawn")
    runs: dict[str, tuple] = {}
    for _ in range(repeats):
        for mode in ("in-memory list", "streamed"):
            result = context.Queue()
            out = work / mode.replace(" ", "-")
            process = context.Process(target=_train, args=(mode, corpus, vocab_size, out, result))
            process.start()
            seconds, size, peak, before = result.get()
            process.join()
            if mode in runs:
                seconds, peak = min(seconds, runs[mode][0]), max(peak, runs[mode][2])
            runs[mode] = (seconds, size, peak, before)
    return runs


def bench_encoding(tokenizer_dir: Path, texts: list[str], repeats: int) -> dict[str, float]:
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    fast = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
    auto = AutoTokenizer.from_pretrained(tokenizer_dir)
    variants = {
        "loop over Tokenizer.encode (baseline)": lambda: [fast.encode(t) for t in texts],
        "Tokenizer.encode_batch": lambda: fast.encode_batch(texts),
        "Tokenizer.encode_batch_fast": lambda: fast.encode_batch_fast(texts),
        "loop over AutoTokenizer.encode": lambda: [auto.encode(t) for t in texts],
        "AutoTokenizer(batch)": lambda: auto(texts),
    }
    best = dict.fromkeys(variants, float("inf"))
    for _ in range(repeats):  # rounds over all variants, so that a busy neighbour slows them alike
        for name, function in variants.items():
            started = time.perf_counter()
            function()
            best[name] = min(best[name], time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, help="a folder of <label>/*.jsonl.gz (default: write the gettext one)")
    parser.add_argument("--vocab-size", type=int, default=8064)
    parser.add_argument("--encode-documents", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=5, help="encoding rounds (best of)")
    parser.add_argument("--train-repeats", type=int, default=2, help="training runs per path (best of)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        corpus = args.corpus
        if corpus is None:
            corpus = work / "clean"
            write_gettext_corpus("/usr/share/locale", 4000, corpus)
        training = bench_training(corpus, args.vocab_size, work, args.train_repeats)
        documents = list(plan_sample([corpus], cap=10**9, sampling="balanced", seed=0).texts())[::7]
        documents = documents[: args.encode_documents]
        lines = [line for doc in documents for line in doc.split("\n")]  # short texts: the per-call cost shows
        inputs = {"documents": documents, "lines": lines}
        encoding = {kind: bench_encoding(work / "streamed", texts, args.repeats) for kind, texts in inputs.items()}

    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor())
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {cpu}, {os.cpu_count()} cores, load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}, tokenizers {metadata.version('tokenizers')}, "
          f"transformers {metadata.version('transformers')}\n")
    base_seconds, base_bytes, _, _ = training["in-memory list"]
    print(f"Training, vocabulary {args.vocab_size:,}, {base_bytes / 1e6:.1f} MB of text, best of "
          f"{args.train_repeats}\n")
    print("| path | seconds | MB/s | ratio | peak RSS (MB) | RSS before (MB) |\n|---|---:|---:|---:|---:|---:|")
    for mode, (seconds, nbytes, peak, before) in training.items():
        ratio = (nbytes / seconds) / (base_bytes / base_seconds)
        print(f"| {mode} | {seconds:.1f} | {nbytes / 1e6 / seconds:.2f} | {ratio:.2f} | {peak:.0f} | {before:.0f} |")
    size = {kind: sum(len(t.encode()) for t in texts) for kind, texts in inputs.items()}
    print(f"\nEncoding the same text ({size['documents'] / 1e6:.1f} MB) as {len(documents):,} documents and as "
          f"{len(lines):,} lines, best of {args.repeats}\n")
    print("| call | documents: s | MB/s | ratio to the loop | lines: s | MB/s | ratio to the loop |\n"
          "|---|---:|---:|---:|---:|---:|---:|")
    baseline = {kind: seconds["loop over Tokenizer.encode (baseline)"] for kind, seconds in encoding.items()}
    for name in encoding["documents"]:
        cells = [f"{encoding[kind][name]:.3f} | {size[kind] / 1e6 / encoding[kind][name]:.1f} | "
                 f"{baseline[kind] / encoding[kind][name]:.2f}" for kind in ("documents", "lines")]
        print(f"| {name} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
