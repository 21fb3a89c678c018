"""Tokenize the clean documents, sample them per the plan, and pack them into training shards (paper 3.5:
shuffle documents, concatenate them, cut the stream into fixed-length sequences).

Layout of a mix directory (read by `fuxitranyu.mix.reader`):
    tokens/<lang>.bin, tokens/<lang>.idx   every document of the language, tokenized (ids; int64 offsets)
    shards/<nnnnn>.npy                     (sequences, context_length + 1) token ids, uint16 or uint32
    segments.npz                           per sequence, the runs of one language: `offsets` (CSR, one more than
                                           sequences), `starts` (position in the sequence), `languages` (index
                                           into index.json's `languages`)
    index.json                             shapes, dtype, shard files and hashes, planned and actual tokens
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fuxitranyu.io import atomic_write_json, atomic_write_text, file_sha256
from fuxitranyu.mix.artifacts import INDEX, SEGMENTS, SHARDS, VALIDATION
from fuxitranyu.mix.plan import MixPlan


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 2**16 else np.dtype(np.uint32)


@dataclass
class TokenStore:
    """One language's documents as one flat array of ids plus document offsets, memory-mapped."""

    tokens: np.ndarray
    offsets: np.ndarray

    @classmethod
    def open(cls, folder: Path, language: str, dtype: np.dtype) -> TokenStore:
        tokens = np.memmap(folder / f"{language}.bin", dtype=dtype, mode="r") \
            if (folder / f"{language}.bin").stat().st_size else np.zeros(0, dtype)
        return cls(tokens, np.fromfile(folder / f"{language}.idx", dtype=np.int64))

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)


def tokenize_language(texts: Iterator[str], tokenizer, dtype: np.dtype, folder: Path, language: str,
                      batch_documents: int) -> tuple[int, int]:
    """Writes `<language>.bin` / `.idx`; returns (documents, tokens). Batches go through the Rust tokenizer, which
    encodes a batch on all cores."""
    folder.mkdir(parents=True, exist_ok=True)
    offsets = [0]
    with open(folder / f"{language}.bin.tmp", "wb") as out:
        batch: list[str] = []

        def flush():
            encodings = tokenizer.encode_batch(batch, add_special_tokens=False)
            for encoding in encodings:
                ids = np.asarray(encoding.ids, dtype=dtype)
                out.write(ids.tobytes())
                offsets.append(offsets[-1] + len(ids))
            batch.clear()

        for text in texts:
            batch.append(text)
            if len(batch) >= batch_documents:
                flush()
        if batch:
            flush()
    # The .idx file marks a finished language for the cache, so it is written last and renamed into place; the
    # .sha256 beside it lets a later run notice a .bin that was truncated or changed since.
    (folder / f"{language}.bin.tmp").replace(folder / f"{language}.bin")
    atomic_write_text(folder / f"{language}.sha256", file_sha256(folder / f"{language}.bin") + "\n")
    np.asarray(offsets, dtype=np.int64).tofile(folder / f"{language}.idx.tmp")
    (folder / f"{language}.idx.tmp").replace(folder / f"{language}.idx")
    return len(offsets) - 1, offsets[-1]


def verified_cache(folder: Path, language: str, dtype: np.dtype) -> tuple[int, int] | None:
    """(documents, tokens) of a finished cached language whose files agree with each other and with the hash written
    with them; None when the language must be tokenized (again)."""
    paths = {kind: folder / f"{language}.{kind}" for kind in ("bin", "idx", "sha256")}
    if not all(path.is_file() for path in paths.values()):
        return None
    offsets = np.fromfile(paths["idx"], dtype=np.int64)
    if len(offsets) == 0 or paths["bin"].stat().st_size != int(offsets[-1]) * dtype.itemsize:
        return None
    if paths["sha256"].read_text(encoding="utf-8").strip() != file_sha256(paths["bin"]):
        return None
    return len(offsets) - 1, int(offsets[-1])


def sample_documents(lengths: np.ndarray, target_tokens: int, rng: np.random.Generator) -> np.ndarray:
    """Document indices whose lengths (each + 1 for the end-of-text token) add up to about `target_tokens`: whole
    epochs in a fresh random order each, then a random part of one more epoch (stopping at the first document
    that reaches the target)."""
    sizes = lengths + 1
    available = int(sizes.sum())
    if available == 0 or target_tokens <= 0:
        return np.zeros(0, dtype=np.int64)
    full_epochs, remainder = divmod(target_tokens, available)
    parts = [rng.permutation(len(sizes)) for _ in range(full_epochs)]
    if remainder:
        order = rng.permutation(len(sizes))
        reached = int(np.searchsorted(np.cumsum(sizes[order]), remainder))
        parts.append(order[: reached + 1])
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


class ShardWriter:
    """Cuts a token stream into sequences of `sequence_length` and writes them `per_shard` at a time."""

    def __init__(self, folder: Path, sequence_length: int, per_shard: int, dtype: np.dtype):
        self.folder, self.sequence_length, self.per_shard, self.dtype = folder, sequence_length, per_shard, dtype
        folder.mkdir(parents=True, exist_ok=True)
        self.pending = np.zeros(0, dtype=dtype)
        self.shards: list[dict] = []
        self.sequences = 0

    def add(self, stream: np.ndarray) -> None:
        self.pending = np.concatenate([self.pending, stream])
        per_shard_tokens = self.per_shard * self.sequence_length
        while len(self.pending) >= per_shard_tokens:
            self._write(self.pending[:per_shard_tokens])
            self.pending = self.pending[per_shard_tokens:]

    def close(self) -> int:
        """Writes the last full sequences; returns the number of tail tokens that do not fill a sequence."""
        full = len(self.pending) // self.sequence_length * self.sequence_length
        if full:
            self._write(self.pending[:full])
        return len(self.pending) - full

    def _write(self, tokens: np.ndarray) -> None:
        array = tokens.reshape(-1, self.sequence_length)
        name = f"{len(self.shards):05d}.npy"
        tmp = self.folder / f".{name}.tmp"
        with open(tmp, "wb") as f:
            np.save(f, array)
        tmp.replace(self.folder / name)
        digest = hashlib.sha256(array.tobytes()).hexdigest()
        self.shards.append({"file": f"{SHARDS}/{name}", "sequences": len(array), "sha256": digest})
        self.sequences += len(array)


def language_segments(unit_languages: np.ndarray, unit_sizes: np.ndarray, sequences: int, sequence_length: int
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR of the language runs inside each sequence: (offsets, starts within the sequence, language indices).

    The stream is the concatenation of the units; a run is a maximal stretch of consecutive units of one language."""
    unit_starts = np.concatenate([[0], np.cumsum(unit_sizes)[:-1]]).astype(np.int64)
    new_run = np.ones(len(unit_languages), dtype=bool)
    new_run[1:] = unit_languages[1:] != unit_languages[:-1]
    run_starts, run_languages = unit_starts[new_run], unit_languages[new_run]
    sequence_starts = np.arange(sequences, dtype=np.int64) * sequence_length
    first = np.searchsorted(run_starts, sequence_starts, side="right") - 1
    last = np.searchsorted(run_starts, sequence_starts + sequence_length, side="left") - 1
    counts = last - first + 1
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    runs = np.repeat(first, counts) + (np.arange(offsets[-1]) - np.repeat(offsets[:-1], counts))
    starts = np.maximum(run_starts[runs] - np.repeat(sequence_starts, counts), 0)
    return offsets, starts.astype(np.uint32), run_languages[runs].astype(np.uint8)


def split_validation(documents: int, wanted: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(training, validation) document indices: `wanted` documents drawn for validation, but never more than a tenth
    of a language's documents (a language with fewer than 10 keeps all of them for training)."""
    count = min(wanted, documents // 10)
    order = rng.permutation(documents)
    return np.sort(order[count:]), np.sort(order[:count])


def document_stream(stores: list[TokenStore], unit_language: np.ndarray, unit_document: np.ndarray, eos: np.ndarray,
                    block: int = 4096) -> Iterator[np.ndarray]:
    """The documents in order, each followed by the end-of-text token, `block` documents per array (bounds memory,
    amortises Python overhead)."""
    for begin in range(0, len(unit_document), block):
        pieces = []
        for lang, doc in zip(unit_language[begin:begin + block], unit_document[begin:begin + block]):
            store = stores[lang]
            pieces.append(store.tokens[store.offsets[doc]:store.offsets[doc + 1]])
            pieces.append(eos)
        yield np.concatenate(pieces)


def write_validation(stores: list[TokenStore], languages: list[str], held_out: list[np.ndarray], out_dir: Path,
                     sequence_length: int, eos: np.ndarray) -> dict[str, dict]:
    """validation/<lang>.npy: each language's held-out documents packed like the training data."""
    entries = {}
    for i, (language, documents) in enumerate(zip(languages, held_out)):
        if len(documents) == 0:
            continue
        tokens = np.concatenate(list(document_stream(stores, np.full(len(documents), i), documents, eos)))
        sequences = len(tokens) // sequence_length
        if sequences == 0:
            continue
        name = f"{VALIDATION}/{language}.npy"
        (out_dir / VALIDATION).mkdir(exist_ok=True)
        array = tokens[:sequences * sequence_length].reshape(sequences, sequence_length)
        with open(out_dir / f"{name}.tmp", "wb") as f:
            np.save(f, array)
        (out_dir / f"{name}.tmp").replace(out_dir / name)
        entries[language] = {"file": name, "documents": int(len(documents)), "sequences": int(sequences),
                             "sha256": hashlib.sha256(array.tobytes()).hexdigest()}
    return entries


def unigram_entropy(shards: list[dict], folder: Path, vocab_size: int) -> float:
    """Entropy (nats) of the training targets' token distribution: the loss of a model that learned no context."""
    counts = np.zeros(vocab_size, dtype=np.int64)
    for shard in shards:
        counts += np.bincount(np.load(folder / shard["file"], mmap_mode="r")[:, 1:].ravel(), minlength=vocab_size)
    p = counts[counts > 0] / max(counts.sum(), 1)
    return float(-(p * np.log(p)).sum())


def pack(plan: MixPlan, token_dir: Path, out_dir: Path, context_length: int, eos_id: int, vocab_size: int,
         per_shard: int, seed: int, validation_documents: int = 0) -> dict:
    """Set `validation_documents` documents per language aside, sample the rest per the plan, shuffle, concatenate
    with `eos_id` after every document, cut into `context_length + 1`-token sequences and write the shards; returns
    the index (also written to `index.json`)."""
    dtype = token_dtype(vocab_size)
    rng = np.random.default_rng(seed)
    languages = [row.language for row in plan.languages]
    stores = [TokenStore.open(token_dir, lang, dtype) for lang in languages]
    splits = [split_validation(len(store.lengths), validation_documents, rng) for store in stores]
    picks = [train[sample_documents(store.lengths[train], row.tokens, rng)]
             for store, row, (train, _) in zip(stores, plan.languages, splits)]
    unit_language = np.concatenate([np.full(len(p), i, dtype=np.int64) for i, p in enumerate(picks)])
    unit_document = np.concatenate(picks) if picks else np.zeros(0, dtype=np.int64)
    order = rng.permutation(len(unit_document))
    unit_language, unit_document = unit_language[order], unit_document[order]
    unit_sizes = np.empty(len(order), dtype=np.int64)
    for i, store in enumerate(stores):
        mine = unit_language == i
        unit_sizes[mine] = store.lengths[unit_document[mine]] + 1

    sequence_length = context_length + 1
    writer = ShardWriter(out_dir / SHARDS, sequence_length, per_shard, dtype)
    eos = np.asarray([eos_id], dtype=dtype)
    for stream in document_stream(stores, unit_language, unit_document, eos):
        writer.add(stream)
    tail = writer.close()

    offsets, starts, segment_languages = language_segments(unit_language, unit_sizes, writer.sequences,
                                                           sequence_length)
    np.savez(out_dir / SEGMENTS, offsets=offsets, starts=starts, languages=segment_languages)
    sampled = {lang: int(unit_sizes[unit_language == i].sum()) for i, lang in enumerate(languages)}
    index = {
        "context_length": context_length,
        "sequence_length": sequence_length,
        "dtype": dtype.name,
        "vocab_size": vocab_size,
        "eos_id": eos_id,
        "seed": seed,
        "languages": languages,
        "total_sequences": writer.sequences,
        "shards": writer.shards,
        "planned_tokens": {row.language: row.tokens for row in plan.languages},
        "sampled_tokens": sampled,
        "tail_tokens_dropped": tail,
        "unigram_entropy": round(unigram_entropy(writer.shards, out_dir, vocab_size), 4),
        "validation": write_validation(stores, languages, [held for _, held in splits], out_dir, sequence_length,
                                       eos),
    }
    atomic_write_json(out_dir / INDEX, index)
    return index
