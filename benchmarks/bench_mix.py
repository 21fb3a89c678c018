"""Mix build throughput (tokens/s): our batched tokenization + numpy packing against a naive baseline, same run.

Corpus: this machine's gettext catalogs (all 43 languages, as the default recipe reads them). Tokenizer: a byte-level
BPE of 16k tokens trained here on the same text. Both sides do the same work — tokenize every document once, append
the end-of-text token, cut the stream into sequences of 1,025 tokens:

- ours: `tokenize_language` (the Rust tokenizer's `encode_batch`, documents in batches) per language, then `pack`
  (numpy: sampling, shuffling, concatenation, shards, language segments);
- baseline: `tokenizer.encode(text)` per document into a Python list, then slicing the list into sequences.

The outputs hold the same multiset of tokens (checked).

    python benchmarks/bench_mix.py [--documents N]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

CONTEXT = 1024


def corpus(limit: int | None) -> dict[str, list[str]]:
    from fuxitranyu.data.config import SourceSpec
    from fuxitranyu.data.readers import SourceReader

    texts: dict[str, list[str]] = {}
    for doc in SourceReader(SourceSpec(type="system")).run(None):
        texts.setdefault(doc.metadata["language"], []).append(doc.text)
        if limit and sum(map(len, texts.values())) >= limit:
            break
    return texts


def train_tokenizer(texts: dict[str, list[str]]):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=16_000, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator((t for docs in texts.values() for t in docs), trainer)
    return tokenizer


def ours(texts, tokenizer, work: Path) -> tuple[float, int, Counter]:
    from fuxitranyu.mix.build import pack, token_dtype, tokenize_language
    from fuxitranyu.mix.config import MixSection
    from fuxitranyu.mix.plan import plan_mix

    dtype = token_dtype(tokenizer.get_vocab_size())
    started = time.perf_counter()
    available = {}
    for language, documents in texts.items():
        count, tokens = tokenize_language(iter(documents), tokenizer, dtype, work / "tokens", language, 1024)
        available[language] = tokens + count
    budget = sum(available.values())
    plan = plan_mix(available, MixSection(strategy="proportional"), budget)
    index = pack(plan, work / "tokens", work / "mix", CONTEXT, 0, tokenizer.get_vocab_size(), 16_384, 0)
    seconds = time.perf_counter() - started
    counts = Counter()
    for shard in index["shards"]:
        counts.update(np.load(work / "mix" / shard["file"]).ravel().tolist())
    return seconds, budget, counts


def baseline(texts, tokenizer) -> tuple[float, Counter, int]:
    started = time.perf_counter()
    stream: list[int] = []
    for documents in texts.values():
        for text in documents:
            stream.extend(tokenizer.encode(text, add_special_tokens=False).ids)
            stream.append(0)
    length = CONTEXT + 1
    sequences = [stream[i:i + length] for i in range(0, len(stream) - length + 1, length)]
    seconds = time.perf_counter() - started
    counts = Counter(token for sequence in sequences for token in sequence)
    return seconds, counts, len(stream)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--documents", type=int, default=None, help="stop reading the corpus after N documents")
    args = parser.parse_args()
    load = os.getloadavg()
    texts = corpus(args.documents)
    tokenizer = train_tokenizer(texts)
    with tempfile.TemporaryDirectory() as tmp:
        ours_seconds, tokens, ours_counts = ours(texts, tokenizer, Path(tmp))
    base_seconds, base_counts, base_tokens = baseline(texts, tokenizer)
    assert base_tokens == tokens, (base_tokens, tokens)
    # Both drop only the tail that does not fill a sequence; the shuffled order makes the tails differ.
    difference = sum(((ours_counts - base_counts) + (base_counts - ours_counts)).values())
    assert difference <= 2 * (CONTEXT + 1), difference
    documents = sum(map(len, texts.values()))
    print(f"# mix build on {platform.node()} ({os.cpu_count()} cores), load average {load[0]:.2f}, "
          f"{datetime.now(UTC):%Y-%m-%d}")
    print(f"corpus: {documents:,} documents in {len(texts)} languages, {tokens:,} tokens (with end-of-text)")
    print(f"ours:     {tokens / ours_seconds:,.0f} tokens/s ({ours_seconds:.2f}s)")
    print(f"baseline: {tokens / base_seconds:,.0f} tokens/s ({base_seconds:.2f}s)")
    print(f"ratio ours/baseline: {base_seconds / ours_seconds:.2f}x")


if __name__ == "__main__":
    main()
