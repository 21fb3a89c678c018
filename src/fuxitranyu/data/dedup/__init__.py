"""MinHash fuzzy deduplication (paper 3.2) with memory bounded by sharding to disk: datatrove steps for the data
stage, and `deduplicate()` for a stream of documents in one process.

    minhash.py    shingles -> signatures -> band keys (numpy, whole batches at once)
    storage.py    the on-disk shards every step reads and writes
    pairs.py      candidate pairs and union-find clusters
    steps.py      the datatrove steps: signatures, buckets, clusters or micro-dedup, filter
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from datatrove.data import Document
from datatrove.io import DataFolderLike, get_datafolder

from fuxitranyu.data.config import MicroDedupConfig, MinHashConfig
from fuxitranyu.data.dedup.minhash import MinHasher, document_shingles, language_salt
from fuxitranyu.data.dedup.steps import (
    MinHashBuckets,
    MinHashClusters,
    MinHashFilter,
    MinHashMicroDedup,
    MinHashSignatures,
)
from fuxitranyu.data.dedup.storage import load_array, load_json

__all__ = [
    "DedupResult", "MicroDedupConfig", "MinHashBuckets", "MinHashClusters", "MinHashConfig", "MinHashFilter",
    "MinHashMicroDedup", "MinHashSignatures", "MinHasher", "deduplicate", "document_shingles", "language_salt",
]


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
        removed = load_array(folder, "removed.npy").astype(np.int64)
        return cls(removed[:, 0], removed[:, 1], load_json(folder, "stats.json", "written by a cluster step"))

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
