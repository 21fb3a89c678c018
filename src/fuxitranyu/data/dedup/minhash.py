"""MinHash: shingles -> signatures -> one uint64 key per LSH band, vectorised with numpy.

Hand-written because the libraries are slower for this job: datasketch hashes one document at a time in Python and
datatrove's MinHash holds no per-language shingling; this takes whole batches of documents at once
(benchmarks/RESULTS.md: 3.7-4.1x datasketch's MinHashLSH, same recall).
"""

from __future__ import annotations

import hashlib

import numpy as np

from fuxitranyu.data.config import MinHashConfig
from fuxitranyu.data.shingles import mix64, normalize, shingle_hashes

PRIME = np.uint64((1 << 31) - 1)


class MinHasher:
    """Band keys of documents: shingles → MinHash signature → one uint64 key per band. Drawn from `config.seed`."""

    def __init__(self, config: MinHashConfig):
        self.config = config
        rng = np.random.default_rng(config.seed)
        self.a = rng.integers(1, PRIME, size=config.num_perm, dtype=np.uint64)
        self.b = rng.integers(0, PRIME, size=config.num_perm, dtype=np.uint64)
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
            y &= PRIME
            y += carry  # < 2**32, so the second fold runs on uint32
            z = narrow[:, : hi - lo]
            z[...] = y
            carry32 = np.right_shift(z, np.uint32(31), out=narrow_carry[:, : hi - lo])
            z &= np.uint32(PRIME)
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
