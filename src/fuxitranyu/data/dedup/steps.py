"""MinHash dedup as four datatrove steps (paper 3.2), each counting per language what it sees, keeps and drops.

    documents ─ MinHashSignatures ─▶ signatures + documents (fuxitranyu.data.dedup.storage)
                MinHashBuckets ─────▶ candidate pairs per shard
                MinHashClusters ────▶ removed.npy, stats.json     union-find; the first of a cluster is kept
             or MinHashMicroDedup ──▶ removed.npy, stats.json     the paper's multi-turn micro-dedup
    documents ─ MinHashFilter ──────▶ documents without their duplicates

"First" means the lowest task rank, then the earliest position in its input. Signatures stream to disk in bounded
buffers, a bucket task holds one shard (about bands × documents / num_shards records of 16 bytes), and the cluster
step holds only the candidate pairs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from datatrove.data import Document, DocumentsPipeline
from datatrove.io import DataFolderLike, get_datafolder
from datatrove.pipeline.writers.disk_base import DiskWriter

from fuxitranyu.data.config import MicroDedupConfig, MinHashConfig
from fuxitranyu.data.dedup.minhash import MinHasher, language_salt
from fuxitranyu.data.dedup.pairs import cluster_shards, resolve_chains, shard_pairs
from fuxitranyu.data.dedup.storage import (
    DOCUMENT,
    INDEX_MASK,
    RANK_SHIFT,
    RECORD,
    ShardWriter,
    finished_ranks,
    load_array,
    load_json,
    load_shard,
    save_array,
    write_result,
)
from fuxitranyu.data.shingles import normalize, shingle_hashes
from fuxitranyu.data.steps import UNKNOWN, CountingStep, language_of
from fuxitranyu.errors import FuxiError


class _DedupStep(CountingStep):
    type = "🫂 - DEDUP"

    def __init__(self, folder: DataFolderLike, config: MinHashConfig = MinHashConfig()):
        super().__init__()
        self.folder = get_datafolder(str(folder) if isinstance(folder, Path) else folder)
        self.config = config


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
        writer = ShardWriter(self.folder, rank, self.config.num_shards, self.buffer_records)
        labels: dict[str, int] = {}
        num_docs = 0
        with self.track_time():
            for batch in _batches(data, self.batch_chars):
                if num_docs + len(batch) > 1 << 32:
                    raise FuxiError(f"task {rank} has more than 2**32 documents; split the input into more tasks")
                documents, keys, has_shingles = self._band_keys(batch, labels, hasher)
                ids = (np.uint64(rank) << RANK_SHIFT) | np.arange(num_docs, num_docs + len(batch), dtype=np.uint64)
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
                records = load_shard(self.folder, shard)
                pairs = shard_pairs(records)
                save_array(self.folder, f"pairs/{shard:04d}.npy", pairs)
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
            removed, num_pairs = cluster_shards(load_array(self.folder, f) for f in files)
            write_result(self.folder, self.config, removed, {"candidate_pairs": num_pairs})
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
                docs = np.sort(np.concatenate([load_array(self.folder, pool[c]) for c in chosen]))
                shards = range(self.config.num_shards)
                found, _ = cluster_shards(shard_pairs(load_shard(self.folder, s), among=docs) for s in shards)
                survivors = np.setdiff1d(docs, found[:, 0], assume_unique=True)
                rng.shuffle(survivors)
                for c, chunk in zip(chosen, np.array_split(survivors, len(chosen))):
                    save_array(self.folder, pool[c], chunk)
                removed.append(found)
                rounds.append({"round": round_, "chunks": len(chosen), "documents": len(docs), "removed": len(found)})
                self.stat_update("rounds")
                quiet = quiet + 1 if len(found) < self.micro.min_removal * len(docs) else 0
                if quiet == self.micro.patience:
                    break
            removed = resolve_chains(np.concatenate(removed))
            write_result(self.folder, self.config, removed,
                         {"rounds": rounds, "micro": self.micro.model_dump(mode="json")})
            self.stat_update("to_remove", value=len(removed))

    def _initial_pool(self) -> list[str]:
        for stale in self.folder.glob("micro/*"):
            self.folder.rm(stale)
        pool = []
        for rank in finished_ranks(self.folder):
            n = load_json(self.folder, f"documents/{rank:05d}.json", "written by MinHashSignatures")["documents"]
            for lo in range(0, n, self.micro.chunk_size):
                index = np.arange(lo, min(lo + self.micro.chunk_size, n), dtype=np.uint64)
                pool.append(f"micro/{len(pool):06d}.npy")
                save_array(self.folder, pool[-1], (np.uint64(rank) << RANK_SHIFT) | index)
        if not pool:
            raise FuxiError("no documents; run MinHashSignatures first", path=self.folder.resolve_paths("documents"))
        return pool


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
        expected = load_json(self.folder, f"documents/{rank:05d}.json", "written by MinHashSignatures")["documents"]
        removed = load_array(self.folder, "removed.npy")[:, 0]
        drop = set((removed[(removed >> RANK_SHIFT) == rank] & INDEX_MASK).tolist())
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
