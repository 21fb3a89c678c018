"""Candidate pairs from equal band keys, and clusters of near-duplicates by union-find, all in numpy."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


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


def cluster_shards(shards: Iterable[np.ndarray]) -> tuple[np.ndarray, int]:
    """`clusters` of the pairs of all shards, one shard at a time: memory follows the documents that have a
    duplicate, not the pairs (a pair recurs in up to `bands` shards). Returns (removed, kept_as) and the pair count."""
    removed, num_pairs = np.zeros((0, 2), dtype=np.uint64), 0
    for pairs in shards:
        removed = clusters(np.concatenate([removed, pairs]))  # (removed, kept_as) rows are star-shaped clusters
        num_pairs += len(pairs)
    return removed, num_pairs


def resolve_chains(removed: np.ndarray) -> np.ndarray:
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
