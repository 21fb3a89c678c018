"""MinHash fuzzy deduplication (paper 3.2), with memory bounded by sharding to disk, as datatrove steps.

    documents ─ MinHashSignatures ─▶ signatures/<shard>/<rank>-<part>.npy  (band key, doc), sharded by key
                                     documents/<rank>-<part>.npy            (label, characters) of each document
              MinHashBuckets ──────▶ pairs/<shard>.npy                      candidate pairs: equal band keys
              MinHashClusters ─────▶ removed.npy, stats.json                union-find; first of a cluster kept
           or MinHashMicroDedup ───▶ removed.npy, stats.json                the paper's multi-turn micro-dedup
    documents ─ MinHashFilter ─────▶ documents without their duplicates

A document is `(rank << 32) | index`: the task that read it and its position in that task's input, so "first in
input order" means the lowest rank, then the earliest position (file order when each task reads one contiguous
run of files, e.g. tasks=1 or one file per task). No step holds the corpus: signatures stream to
disk in bounded buffers, a bucket task holds one shard (about bands × documents / num_shards records of 16 bytes),
and the cluster step holds only the candidate pairs. `deduplicate` runs the same steps in-process.

Steps count per language what they see, keep and drop (`in/`, `kept/`, `dropped/duplicate/` + `<lang>/docs|chars`,
the convention of `fuxitranyu.data.steps`); the cluster step also writes the exact totals to `stats.json`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from datatrove.data import Document, DocumentsPipeline
from datatrove.io import DataFolder, DataFolderLike, get_datafolder
from datatrove.pipeline.writers.disk_base import DiskWriter

from fuxitranyu.data.shingles import MAX_NGRAM, mix64, normalize, shingle_hashes
from fuxitranyu.data.steps import UNKNOWN, CountingStep, language_of
from fuxitranyu.errors import FuxiError

RECORD = np.dtype([("key", "<u8"), ("doc", "<u8")])
DOCUMENT = np.dtype([("label", "<u2"), ("chars", "<u8")])

_PRIME = np.uint64((1 << 31) - 1)
_RANK_SHIFT, _INDEX_MASK = np.uint64(32), np.uint64((1 << 32) - 1)


@dataclass(frozen=True)
class MinHashConfig:
    """Every parameter that changes signatures, buckets or clusters; `str(config)` names their folder."""

    word_ngrams: int = 5
    """Shingle size, in words, for scripts that separate words with spaces."""
    char_ngrams: int = 5
    """Shingle size, in characters, for scripts written without spaces (Han, Kana, Thai, Lao, Khmer, Myanmar)."""
    code_ngrams: int = 5
    """Shingle size, in identifier/number/operator tokens, for source code (labels `code-*`)."""
    bands: int = 16
    """LSH bands: two documents are candidates when all the rows of one band agree."""
    rows: int = 7
    """Permutations per band. Pairs of Jaccard similarity s become candidates with probability 1-(1-s^rows)^bands:
    16 × 7 finds 98% of pairs at s = 0.8, 75% at 0.7 and 12% at 0.5 (threshold ≈ (1/bands)^(1/rows) = 0.67)."""
    seed: int = 1
    """Seeds the permutations and the micro-dedup's choices; every task must use the same."""
    num_shards: int = 16
    """Band-key shards; a bucket task holds one shard, about 16 × bands × documents / num_shards bytes."""
    per_language: bool = False
    """Only documents with the same `metadata["language"]` can be duplicates; False dedups across languages."""

    def __post_init__(self):
        for name in ("word_ngrams", "char_ngrams", "code_ngrams"):
            value = getattr(self, name)
            if not isinstance(value, int) or not 1 <= value <= MAX_NGRAM:
                raise FuxiError(f"MinHashConfig.{name} must be an integer in [1, {MAX_NGRAM}], got {value!r}")
        for name in ("bands", "rows", "num_shards"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise FuxiError(f"MinHashConfig.{name} must be a positive integer, got {value!r}")

    @property
    def num_perm(self) -> int:
        return self.bands * self.rows

    def __str__(self) -> str:
        scope = "perlang" if self.per_language else "crosslang"
        return (
            f"minhash-{self.word_ngrams}w{self.char_ngrams}c{self.code_ngrams}t-{self.bands}x{self.rows}"
            f"-seed{self.seed}-{self.num_shards}shards-{scope}"
        )


@dataclass(frozen=True)
class MicroDedupConfig:
    """The paper's multi-turn micro-deduplication: a pool of chunks, deduplicated a random handful at a time."""

    chunk_size: int = 100_000
    """Documents per chunk of the initial pool (consecutive documents in input order)."""
    chunks_per_round: int = 4
    """Chunks drawn from the pool in each round; their documents are deduplicated among themselves."""
    min_removal: float = 0.01
    """A round that removes less than this fraction of the documents it looked at counts towards stopping."""
    patience: int = 1
    """Stop after this many such rounds in a row. 1 is the paper's rule; more guards against a round that, by chance,
    drew only chunks whose documents were already deduplicated together."""
    max_rounds: int = 50

    def __post_init__(self):
        for name in ("chunk_size", "chunks_per_round", "patience", "max_rounds"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise FuxiError(f"MicroDedupConfig.{name} must be a positive integer, got {value!r}")
        if not 0 <= self.min_removal <= 1:
            raise FuxiError(f"MicroDedupConfig.min_removal must be in [0, 1], got {self.min_removal!r}")


# --- MinHash ------------------------------------------------------------------------------------------------------


class MinHasher:
    """Band keys of documents: shingles → MinHash signature → one uint64 key per band. Drawn from `config.seed`."""

    def __init__(self, config: MinHashConfig):
        self.config = config
        rng = np.random.default_rng(config.seed)
        self.a = rng.integers(1, _PRIME, size=config.num_perm, dtype=np.uint64)
        self.b = rng.integers(0, _PRIME, size=config.num_perm, dtype=np.uint64)
        self._row_weights = rng.integers(0, 2**64, size=config.rows, dtype=np.uint64) | np.uint64(1)
        self._band_salts = rng.integers(0, 2**64, size=config.bands, dtype=np.uint64)

    def signatures(self, hashes: np.ndarray, offsets: np.ndarray, chunk: int = 4096) -> np.ndarray:
        """MinHash signatures, shape (documents, num_perm) uint32; a document without shingles gets all 2**32 - 1.

        Permutation i maps a shingle hash x < 2**31 to (a_i*x + b_i) mod p, p = 2**31 - 1, with a_i, b_i uniform in
        [1, p) and [0, p): a*x + b < 2**62 is exact in uint64, and two folds (2**31 ≡ 1 mod p) reduce it. `chunk`
        shingles are done at a time in reused buffers (fresh large arrays cost a page fault per 4 KiB).
        """
        num_docs, num_perm = len(offsets) - 1, self.config.num_perm
        sig = np.full((num_docs, num_perm), np.iinfo(np.uint32).max, dtype=np.uint32)
        nonempty = np.flatnonzero(np.diff(offsets) > 0)
        doc_starts = offsets[nonempty]
        a, b = self.a[:, None], self.b[:, None]
        wide = np.empty((num_perm, chunk), dtype=np.uint64)
        wide_carry = np.empty((num_perm, chunk), dtype=np.uint64)
        narrow = np.empty((num_perm, chunk), dtype=np.uint32)
        narrow_carry = np.empty((num_perm, chunk), dtype=np.uint32)
        for lo in range(0, len(hashes), chunk):
            hi = min(lo + chunk, len(hashes))
            first = np.searchsorted(doc_starts, lo, side="right")
            end = np.searchsorted(doc_starts, hi, side="left")
            docs = nonempty[first - 1 : end]  # documents with shingles in [lo, hi)
            y = np.multiply(a, hashes[lo:hi], out=wide[:, : hi - lo])  # (num_perm, shingles)
            y += b
            carry = np.right_shift(y, np.uint64(31), out=wide_carry[:, : hi - lo])
            y &= _PRIME
            y += carry  # < 2**32, so the second fold runs on uint32
            z = narrow[:, : hi - lo]
            z[...] = y
            carry32 = np.right_shift(z, np.uint32(31), out=narrow_carry[:, : hi - lo])
            z &= np.uint32(_PRIME)
            z += carry32  # ≡ a*x + b (mod p)
            mins = np.minimum.reduceat(z, np.maximum(doc_starts[first - 1 : end], lo) - lo, axis=1)
            sig[docs] = np.minimum(sig[docs], mins.T)
        return sig

    def band_keys(self, sig: np.ndarray, salts: np.ndarray) -> np.ndarray:
        """One key per band, shape (documents, bands): a hash of the band's rows, its index and the document's salt."""
        rows = sig.reshape(len(sig), self.config.bands, self.config.rows)
        keys = (rows.astype(np.uint64) * self._row_weights).sum(axis=2, dtype=np.uint64)
        keys += self._band_salts
        keys += salts[:, None]
        return mix64(keys)


def language_salt(label: str) -> int:
    """Added to band keys in per-language mode, so documents of different languages never share a key."""
    return int.from_bytes(hashlib.blake2b(label.encode(), digest_size=8).digest(), "little")


def document_shingles(text: str, label: str | None = None, config: MinHashConfig = MinHashConfig()) -> np.ndarray:
    """The sorted distinct shingle hashes of one document, e.g. to measure true Jaccard similarity."""
    normalized, row = normalize(text, label)
    hashes, _ = shingle_hashes([normalized], [row], config.word_ngrams, config.char_ngrams, config.code_ngrams)
    return np.unique(hashes)


# --- files ----------------------------------------------------------------------------------------------------------


def _save(folder: DataFolder, path: str, array: np.ndarray) -> None:
    """Write a .npy file under a temporary name, then rename it: readers never see half a file."""
    with folder.open(f"{path}.tmp", "wb") as f:
        np.save(f, array)
    folder.mv(f"{path}.tmp", path)


def _load(folder: DataFolder, path: str) -> np.ndarray:
    with folder.open(path, "rb") as f:
        return np.load(f)


def _save_json(folder: DataFolder, path: str, data) -> None:
    with folder.open(f"{path}.tmp", "w") as f:
        json.dump(data, f, indent=2, ensure_ascii=False)
    folder.mv(f"{path}.tmp", path)


def _load_json(folder: DataFolder, path: str, needed_by: str):
    if not folder.exists(path):
        raise FuxiError(f"missing; {needed_by}", path=folder.resolve_paths(path))
    with folder.open(path, "r") as f:
        return json.load(f)


def _ranks(folder: DataFolder) -> list[int]:
    """The ranks whose signature step finished (it writes `documents/<rank>.json` last)."""
    return [int(Path(p).stem) for p in folder.list_files("documents", glob_pattern="*.json", recursive=False)]


def _load_shard(folder: DataFolder, shard: int) -> np.ndarray:
    parts = folder.list_files(f"signatures/{shard:04d}", glob_pattern="*.npy", recursive=False)
    return np.concatenate([_load(folder, p) for p in parts]) if parts else np.zeros(0, RECORD)


# --- candidate pairs and clusters ---------------------------------------------------------------------------------


def shard_pairs(records: np.ndarray, among: np.ndarray | None = None) -> np.ndarray:
    """Candidate pairs (first, other) of one shard: documents with an equal band key, each joined to the first.

    `among` (sorted document ids) restricts the search to those documents, as a micro-dedup round does.
    """
    if among is not None:
        records = records[np.isin(records["doc"], among)]
    order = np.lexsort((records["doc"], records["key"]))
    key, doc = records["key"][order], records["doc"][order]
    run_start = np.ones(len(key), dtype=bool)
    run_start[1:] = key[1:] != key[:-1]
    first = np.maximum.accumulate(np.where(run_start, np.arange(len(key)), 0))
    return np.stack([doc[first[~run_start]], doc[~run_start]], axis=1)


def clusters(pairs: np.ndarray) -> np.ndarray:
    """Union-find over candidate pairs. Returns (removed, kept_as) rows sorted by removed: every document of a
    cluster except its first (lowest id), which is kept in their place."""
    if len(pairs) == 0:
        return np.zeros((0, 2), dtype=np.uint64)
    nodes, index = np.unique(pairs, return_inverse=True)
    u, v = index.reshape(-1, 2).T
    parent = np.arange(len(nodes))
    while True:  # hook each root under the smaller root it is joined to, then compress paths fully
        pu, pv = parent[u], parent[v]
        differ = pu != pv
        if not differ.any():
            break
        np.minimum.at(parent, np.maximum(pu, pv)[differ], np.minimum(pu, pv)[differ])
        while not np.array_equal(grand := parent[parent], parent):
            parent = grand
    removed = parent != np.arange(len(nodes))
    return np.stack([nodes[removed], nodes[parent[removed]]], axis=1)


def _cluster_shards(shards: Iterable[np.ndarray]) -> tuple[np.ndarray, int]:
    """`clusters` of the pairs of all shards, one shard at a time: memory follows the documents that have a
    duplicate, not the pairs (a pair recurs in up to `bands` shards). Returns (removed, kept_as) and the pair count."""
    removed, num_pairs = np.zeros((0, 2), dtype=np.uint64), 0
    for pairs in shards:
        removed = clusters(np.concatenate([removed, pairs]))  # (removed, kept_as) rows are star-shaped clusters
        num_pairs += len(pairs)
    return removed, num_pairs


def _dedup_stats(folder: DataFolder, removed: np.ndarray) -> dict:
    """Documents and characters in / kept / dropped as duplicates, overall and per language label."""
    totals: dict[str, np.ndarray] = {}  # label -> [in docs, in chars, dropped docs, dropped chars]
    removed_docs = np.sort(removed[:, 0]) if len(removed) else np.zeros(0, np.uint64)
    for rank in _ranks(folder):
        meta = _load_json(folder, f"documents/{rank:05d}.json", "written by MinHashSignatures")
        mine = removed_docs[(removed_docs >> _RANK_SHIFT) == rank] & _INDEX_MASK
        start = 0
        for part in range(meta["parts"]):
            docs = _load(folder, f"documents/{rank:05d}-{part:05d}.npy")
            lo, hi = np.searchsorted(mine, [start, start + len(docs)])
            dropped = docs[(mine[lo:hi] - np.uint64(start)).astype(np.int64)]
            n = len(meta["labels"])
            counts = np.stack([
                np.bincount(docs["label"], minlength=n),
                np.bincount(docs["label"], weights=docs["chars"], minlength=n),
                np.bincount(dropped["label"], minlength=n),
                np.bincount(dropped["label"], weights=dropped["chars"], minlength=n),
            ], axis=1).astype(np.int64)
            for label, row in zip(meta["labels"], counts):
                totals[label] = totals.get(label, 0) + row
            start += len(docs)

    def outcome(docs_in, chars_in, docs_out, chars_out) -> dict:  # the layout of `accounting.tabulate`
        dropped = {"duplicate": {"docs": int(docs_out), "chars": int(chars_out)}} if docs_out else {}
        return {
            "in_docs": int(docs_in), "in_chars": int(chars_in),
            "kept_docs": int(docs_in - docs_out), "kept_chars": int(chars_in - chars_out), "dropped": dropped,
        }

    overall = sum(totals.values(), np.zeros(4, np.int64))
    return {
        "total": outcome(*overall),
        "languages": {label: outcome(*totals[label]) for label in sorted(totals)},
        "clusters": int(len(np.unique(removed[:, 1]))) if len(removed) else 0,
    }


def _write_result(folder: DataFolder, config: MinHashConfig, removed: np.ndarray, extra: dict) -> dict:
    stats = _dedup_stats(folder, removed) | extra | {"config": asdict(config)}
    _save(folder, "removed.npy", removed)
    _save_json(folder, "stats.json", stats)
    return stats


# --- datatrove steps ----------------------------------------------------------------------------------------------


class _DedupStep(CountingStep):
    type = "🫂 - DEDUP"

    def __init__(self, folder: DataFolderLike, config: MinHashConfig = MinHashConfig()):
        super().__init__()
        self.folder = get_datafolder(str(folder) if isinstance(folder, Path) else folder)
        self.config = config


class _ShardWriter:
    """Buffers one task's (key, doc) records and document rows; each flush writes one part file per shard."""

    def __init__(self, folder: DataFolder, rank: int, num_shards: int, limit: int):
        self.folder, self.rank, self.num_shards, self.limit = folder, rank, num_shards, limit
        self.records: list[np.ndarray] = []
        self.documents: list[np.ndarray] = []
        self.buffered = self.parts = 0

    def add(self, records: np.ndarray, documents: np.ndarray) -> None:
        self.records.append(records)
        self.documents.append(documents)
        self.buffered += len(records)
        if self.buffered >= self.limit:
            self.flush()

    def flush(self) -> None:
        records = np.concatenate(self.records or [np.zeros(0, RECORD)])
        shard = records["key"] % np.uint64(self.num_shards)
        order = np.argsort(shard, kind="stable")
        bounds = np.searchsorted(shard[order], np.arange(self.num_shards + 1))
        for s in range(self.num_shards):
            if bounds[s] < bounds[s + 1]:
                part = records[order[bounds[s] : bounds[s + 1]]]
                _save(self.folder, f"signatures/{s:04d}/{self.rank:05d}-{self.parts:05d}.npy", part)
        documents = np.concatenate(self.documents or [np.zeros(0, DOCUMENT)])
        _save(self.folder, f"documents/{self.rank:05d}-{self.parts:05d}.npy", documents)
        self.records, self.documents, self.buffered = [], [], 0
        self.parts += 1

    def close(self, num_docs: int, labels: list[str]) -> None:
        """Flush, then write `documents/<rank>.json`, which marks the task's files complete."""
        self.flush()
        meta = {"documents": num_docs, "parts": self.parts, "labels": labels}
        _save_json(self.folder, f"documents/{self.rank:05d}.json", meta)


class MinHashSignatures(_DedupStep):
    """Step 1 (any number of tasks): band keys of every document, sharded by key, plus each document's label and
    length. Consumes the documents; run `MinHashFilter` over the same input with the same tasks afterwards."""

    name = "🔏 MinHash signatures"

    def __init__(
        self,
        folder: DataFolderLike,
        config: MinHashConfig = MinHashConfig(),
        batch_chars: int = 1 << 17,
        buffer_records: int = 1 << 18,
    ):
        super().__init__(folder, config)
        self.batch_chars = batch_chars
        """Characters shingled together in one vectorised batch."""
        self.buffer_records = buffer_records
        """(key, doc) records kept in memory before they are flushed to the shard files (16 bytes each)."""

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> None:
        for stale in self.folder.glob(f"signatures/*/{rank:05d}-*") + self.folder.glob(f"documents/{rank:05d}*"):
            self.folder.rm(stale)  # left by a failed attempt of this task
        hasher = MinHasher(self.config)
        writer = _ShardWriter(self.folder, rank, self.config.num_shards, self.buffer_records)
        labels: dict[str, int] = {}
        num_docs = 0
        with self.track_time():
            for batch in _batches(data, self.batch_chars):
                if num_docs + len(batch) > 1 << 32:
                    raise FuxiError(f"task {rank} has more than 2**32 documents; split the input into more tasks")
                documents, keys, has_shingles = self._band_keys(batch, labels, hasher)
                ids = (np.uint64(rank) << _RANK_SHIFT) | np.arange(num_docs, num_docs + len(batch), dtype=np.uint64)
                records = np.empty((int(has_shingles.sum()), self.config.bands), RECORD)
                records["key"] = keys[has_shingles]
                records["doc"] = ids[has_shingles, None]
                writer.add(records.ravel(), documents)
                num_docs += len(batch)
            writer.close(num_docs, list(labels))

    def _band_keys(self, batch: list[Document], labels: dict[str, int], hasher: MinHasher):
        """(label id, characters) and band keys of each document, and whether it has shingles (else no keys)."""
        texts, rows = [], []
        documents = np.zeros(len(batch), DOCUMENT)
        for i, doc in enumerate(batch):
            label = language_of(doc)
            try:
                text, row = normalize(doc.text, None if label == UNKNOWN else label)
            except FuxiError as e:
                raise FuxiError(e.message, record=doc.id) from None
            texts.append(text)
            rows.append(row)
            documents[i] = labels.setdefault(label, len(labels)), len(doc.text)
        if len(labels) > 1 << 16:
            raise FuxiError(f"more than {1 << 16} distinct metadata['language'] labels, e.g. {label!r}", record=doc.id)
        for label, label_id in labels.items():  # counted per batch: per document would cost 15% of the step
            mine = documents["label"] == label_id
            if mine.any():
                self.stat_update(f"in/{label}/docs", value=int(mine.sum()), unit="batch")
                self.stat_update(f"in/{label}/chars", value=int(documents["chars"][mine].sum()), unit="batch")

        config = self.config
        hashes, offsets = shingle_hashes(texts, rows, config.word_ngrams, config.char_ngrams, config.code_ngrams)
        salts = np.zeros(len(batch), np.uint64)
        if config.per_language:
            salts = np.array([language_salt(label) for label in labels], dtype=np.uint64)[documents["label"]]
        keys = hasher.band_keys(hasher.signatures(hashes, offsets), salts)
        has_shingles = np.diff(offsets) > 0
        if not has_shingles.all():
            self.stat_update("without_shingles", value=int((~has_shingles).sum()), unit="batch")
        return documents, keys, has_shingles


def _batches(data: Iterable[Document], batch_chars: int) -> Iterator[list[Document]]:
    batch, chars = [], 0
    for doc in data:
        if not isinstance(doc.text, str):
            raise FuxiError(f"document text must be a string, got {type(doc.text).__name__}", record=doc.id)
        batch.append(doc)
        chars += len(doc.text)
        if chars >= batch_chars:
            yield batch
            batch, chars = [], 0
    if batch:
        yield batch


class MinHashBuckets(_DedupStep):
    """Step 2 (any number of tasks; shard s goes to task s mod tasks): candidate pairs of each shard."""

    name = "🪣 MinHash buckets"

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> None:
        with self.track_time():
            for shard in range(rank, self.config.num_shards, world_size):
                records = _load_shard(self.folder, shard)
                pairs = shard_pairs(records)
                _save(self.folder, f"pairs/{shard:04d}.npy", pairs)
                self.stat_update("records", value=len(records))
                self.stat_update("candidate_pairs", value=len(pairs))


class MinHashClusters(_DedupStep):
    """Step 3 (one task): clusters of the candidate pairs → `removed.npy` and per-language `stats.json`."""

    name = "🧩 MinHash clusters"

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> None:
        if world_size != 1:
            raise FuxiError(f"MinHashClusters runs as a single task, got tasks={world_size}")
        with self.track_time():
            files = [f"pairs/{s:04d}.npy" for s in range(self.config.num_shards)]
            missing = [f for f in files if not self.folder.exists(f)]
            if missing:
                where = self.folder.resolve_paths(missing[0])
                raise FuxiError(f"missing, with {len(missing) - 1} more; run MinHashBuckets first", path=where)
            removed, num_pairs = _cluster_shards(_load(self.folder, f) for f in files)
            _write_result(self.folder, self.config, removed, {"candidate_pairs": num_pairs})
            self.stat_update("candidate_pairs", value=num_pairs)
            self.stat_update("to_remove", value=len(removed))


class MinHashMicroDedup(_DedupStep):
    """Step 3, alternative (one task): the paper's multi-turn micro-deduplication over the signature shards.

    The pool starts as consecutive chunks of `chunk_size` documents. Each round draws `chunks_per_round` chunks at
    random, deduplicates their documents among themselves, shuffles the survivors into as many new chunks and
    returns them to the pool; it stops after `patience` rounds in a row that each removed less than `min_removal`
    of what they looked at.
    A round holds its chunks' document ids and, one shard at a time, their band keys.
    """

    name = "🔁 MinHash micro-dedup"

    def __init__(
        self,
        folder: DataFolderLike,
        config: MinHashConfig = MinHashConfig(),
        micro: MicroDedupConfig = MicroDedupConfig(),
    ):
        super().__init__(folder, config)
        self.micro = micro

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> None:
        if world_size != 1:
            raise FuxiError(f"MinHashMicroDedup runs as a single task, got tasks={world_size}")
        with self.track_time():
            pool = self._initial_pool()
            rng = np.random.default_rng(self.config.seed)
            removed, rounds, quiet = [], [], 0
            for round_ in range(1, self.micro.max_rounds + 1):
                chosen = np.sort(rng.choice(len(pool), size=min(self.micro.chunks_per_round, len(pool)), replace=False))
                docs = np.sort(np.concatenate([_load(self.folder, pool[c]) for c in chosen]))
                shards = range(self.config.num_shards)
                found, _ = _cluster_shards(shard_pairs(_load_shard(self.folder, s), among=docs) for s in shards)
                survivors = np.setdiff1d(docs, found[:, 0], assume_unique=True)
                rng.shuffle(survivors)
                for c, chunk in zip(chosen, np.array_split(survivors, len(chosen))):
                    _save(self.folder, pool[c], chunk)
                removed.append(found)
                rounds.append({"round": round_, "chunks": len(chosen), "documents": len(docs), "removed": len(found)})
                self.stat_update("rounds")
                quiet = quiet + 1 if len(found) < self.micro.min_removal * len(docs) else 0
                if quiet == self.micro.patience:
                    break
            removed = _resolve_chains(np.concatenate(removed))
            _write_result(self.folder, self.config, removed, {"rounds": rounds, "micro": asdict(self.micro)})
            self.stat_update("to_remove", value=len(removed))

    def _initial_pool(self) -> list[str]:
        for stale in self.folder.glob("micro/*"):
            self.folder.rm(stale)
        pool = []
        for rank in _ranks(self.folder):
            n = _load_json(self.folder, f"documents/{rank:05d}.json", "written by MinHashSignatures")["documents"]
            for lo in range(0, n, self.micro.chunk_size):
                index = np.arange(lo, min(lo + self.micro.chunk_size, n), dtype=np.uint64)
                pool.append(f"micro/{len(pool):06d}.npy")
                _save(self.folder, pool[-1], (np.uint64(rank) << _RANK_SHIFT) | index)
        if not pool:
            raise FuxiError("no documents; run MinHashSignatures first", path=self.folder.resolve_paths("documents"))
        return pool


def _resolve_chains(removed: np.ndarray) -> np.ndarray:
    """Rounds may remove a document that an earlier round kept in another's place; point to the final keeper."""
    if len(removed) == 0:
        return removed
    removed = removed[np.argsort(removed[:, 0])]
    kept = removed[:, 1].copy()
    while True:
        at = np.minimum(np.searchsorted(removed[:, 0], kept), len(removed) - 1)
        hop = removed[at, 0] == kept
        if not hop.any():
            return np.stack([removed[:, 0], kept], axis=1)
        kept[hop] = removed[at[hop], 1]


class MinHashFilter(_DedupStep):
    """Step 4 (same input and tasks as step 1): drops the duplicates and counts kept and dropped per language."""

    name = "dedup"

    def __init__(
        self,
        folder: DataFolderLike,
        config: MinHashConfig = MinHashConfig(),
        exclusion_writer: DiskWriter | None = None,
    ):
        super().__init__(folder, config)
        self.exclusion_writer = exclusion_writer
        """Receives the dropped documents, with `metadata["drop_reason"] = "duplicate"`."""

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        if not self.folder.exists("removed.npy"):
            where = self.folder.resolve_paths("removed.npy")
            raise FuxiError("missing; run MinHashClusters or MinHashMicroDedup first", path=where)
        expected = _load_json(self.folder, f"documents/{rank:05d}.json", "written by MinHashSignatures")["documents"]
        removed = _load(self.folder, "removed.npy")[:, 0]
        drop = set((removed[(removed >> _RANK_SHIFT) == rank] & _INDEX_MASK).tolist())
        index = -1
        with self.exclusion_writer or contextlib.nullcontext() as excluded:
            for index, doc in enumerate(data):
                self.count("in", doc)
                if index not in drop:
                    self.count("kept", doc)
                    yield doc
                    continue
                self.count("dropped/duplicate", doc)
                if excluded is not None:
                    doc.metadata["drop_reason"] = "duplicate"
                    excluded.write(doc, rank)
        if index + 1 != expected:
            raise FuxiError(
                f"task {rank} read {index + 1} documents but MinHashSignatures read {expected}; "
                "run MinHashFilter on the same input with the same number of tasks"
            )


# --- Python API ---------------------------------------------------------------------------------------------------


@dataclass
class DedupResult:
    """What a deduplication removed. Documents are numbered by input position (rank 0 for `deduplicate`)."""

    removed: np.ndarray
    """Positions of the removed documents, ascending."""
    kept_as: np.ndarray
    """For each removed document, the position of the document kept in its place (the first of its cluster)."""
    stats: dict
    """`total` and per-`languages` docs and chars in / kept / dropped by reason (the layout of
    `fuxitranyu.data.accounting.tabulate`), `clusters`, and for micro-dedup the `rounds`."""

    @classmethod
    def load(cls, folder: DataFolderLike) -> DedupResult:
        folder = get_datafolder(str(folder) if isinstance(folder, Path) else folder)
        removed = _load(folder, "removed.npy").astype(np.int64)
        return cls(removed[:, 0], removed[:, 1], _load_json(folder, "stats.json", "written by a cluster step"))

    def keep(self, documents: Iterable[Document]) -> Iterator[Document]:
        """The documents that were not removed, from a second pass over the same input."""
        drop = set(self.removed.tolist())
        return (doc for i, doc in enumerate(documents) if i not in drop)


def deduplicate(
    documents: Iterable[Document],
    config: MinHashConfig = MinHashConfig(),
    workdir: str | Path | None = None,
    micro: MicroDedupConfig | None = None,
) -> DedupResult:
    """Deduplicate a stream of documents in one process, with the datatrove steps.

    Files go to `workdir/str(config)` (replaced if present) or to a temporary folder removed afterwards; memory is
    bounded as in the steps. `micro` selects the multi-turn micro-deduplication instead of one global pass.
    """
    scratch = contextlib.nullcontext(workdir) if workdir is not None else tempfile.TemporaryDirectory(prefix="dedup-")
    with scratch as root:
        folder = Path(root) / str(config)
        shutil.rmtree(folder, ignore_errors=True)
        MinHashSignatures(folder, config).run(documents)
        if micro is None:
            MinHashBuckets(folder, config).run()
            MinHashClusters(folder, config).run()
        else:
            MinHashMicroDedup(folder, config, micro).run()
        return DedupResult.load(folder)
