"""The on-disk layout of a MinHash run, so that no step holds the corpus in memory.

    signatures/<shard>/<rank>-<part>.npy   (band key, doc) records, sharded by key
    documents/<rank>-<part>.npy            (label, characters) of each document; documents/<rank>.json marks the
                                           task complete
    pairs/<shard>.npy                      candidate pairs of a shard
    removed.npy, stats.json                (removed, kept_as) rows and the per-language account

A document id is `(rank << 32) | index`: the task that read it and its position in that task's input.
Every file is written under a temporary name and renamed, so readers never see half a file.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from datatrove.io import DataFolder

from fuxitranyu.data.config import MinHashConfig
from fuxitranyu.errors import FuxiError

RECORD = np.dtype([("key", "<u8"), ("doc", "<u8")])
DOCUMENT = np.dtype([("label", "<u2"), ("chars", "<u8")])
RANK_SHIFT, INDEX_MASK = np.uint64(32), np.uint64((1 << 32) - 1)


def save_array(folder: DataFolder, path: str, array: np.ndarray) -> None:
    """Write a .npy file under a temporary name, then rename it: readers never see half a file."""
    with folder.open(f"{path}.tmp", "wb") as f:
        np.save(f, array)
    folder.mv(f"{path}.tmp", path)


def load_array(folder: DataFolder, path: str) -> np.ndarray:
    with folder.open(path, "rb") as f:
        return np.load(f)


def save_json(folder: DataFolder, path: str, data) -> None:
    with folder.open(f"{path}.tmp", "w") as f:
        json.dump(data, f, indent=2, ensure_ascii=False)
    folder.mv(f"{path}.tmp", path)


def load_json(folder: DataFolder, path: str, needed_by: str):
    if not folder.exists(path):
        raise FuxiError(f"missing; {needed_by}", path=folder.resolve_paths(path))
    with folder.open(path, "r") as f:
        return json.load(f)


def finished_ranks(folder: DataFolder) -> list[int]:
    """The ranks whose signature step finished (it writes `documents/<rank>.json` last)."""
    return [int(Path(p).stem) for p in folder.list_files("documents", glob_pattern="*.json", recursive=False)]


def load_shard(folder: DataFolder, shard: int) -> np.ndarray:
    parts = folder.list_files(f"signatures/{shard:04d}", glob_pattern="*.npy", recursive=False)
    return np.concatenate([load_array(folder, p) for p in parts]) if parts else np.zeros(0, RECORD)


class ShardWriter:
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
                save_array(self.folder, f"signatures/{s:04d}/{self.rank:05d}-{self.parts:05d}.npy", part)
        documents = np.concatenate(self.documents or [np.zeros(0, DOCUMENT)])
        save_array(self.folder, f"documents/{self.rank:05d}-{self.parts:05d}.npy", documents)
        self.records, self.documents, self.buffered = [], [], 0
        self.parts += 1

    def close(self, num_docs: int, labels: list[str]) -> None:
        """Flush, then write `documents/<rank>.json`, which marks the task's files complete."""
        self.flush()
        meta = {"documents": num_docs, "parts": self.parts, "labels": labels}
        save_json(self.folder, f"documents/{self.rank:05d}.json", meta)


def dedup_stats(folder: DataFolder, removed: np.ndarray) -> dict:
    """Documents and characters in / kept / dropped as duplicates, overall and per language label."""
    totals: dict[str, np.ndarray] = {}  # label -> [in docs, in chars, dropped docs, dropped chars]
    removed_docs = np.sort(removed[:, 0]) if len(removed) else np.zeros(0, np.uint64)
    for rank in finished_ranks(folder):
        meta = load_json(folder, f"documents/{rank:05d}.json", "written by MinHashSignatures")
        mine = removed_docs[(removed_docs >> RANK_SHIFT) == rank] & INDEX_MASK
        start = 0
        for part in range(meta["parts"]):
            docs = load_array(folder, f"documents/{rank:05d}-{part:05d}.npy")
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


def write_result(folder: DataFolder, config: MinHashConfig, removed: np.ndarray, extra: dict) -> dict:
    stats = dedup_stats(folder, removed) | extra | {"config": config.model_dump(mode="json")}
    save_array(folder, "removed.npy", removed)
    save_json(folder, "stats.json", stats)
    return stats
