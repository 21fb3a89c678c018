"""Deterministic, resumable batches from a mix directory, for any number of data-parallel ranks.

The build packs shuffled documents, but a long document still fills several consecutive sequences, so reading the
shards in order would give batches of one or two languages. Like Megatron's sample index, the reader walks a seeded
permutation of all sequences, a fresh one per epoch:

    global position p  ->  epoch p // total, slot p % total  ->  sequence permutation[epoch][slot]

A step takes the next `batch_sequences` positions and gives rank r the r-th contiguous part, so ranks see disjoint
data that together cover everything, every epoch is a permutation of the mix, the state is one integer
(`position`, with the seed), and the global batch size may change from one step to the next (the paper ramps
2M -> 4M tokens) without skipping or repeating a sequence.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fuxitranyu.errors import FuxiError
from fuxitranyu.mix.artifacts import SEGMENTS, read_index


@dataclass
class Batch:
    tokens: np.ndarray
    """(sequences, context_length + 1) int64: inputs are [:, :-1], targets [:, 1:]."""
    languages: np.ndarray
    """(sequences, context_length + 1) int16: index into `ShardReader.languages` of each token."""
    indices: np.ndarray
    """Sequence indices (rows of the concatenated shards) of the batch's rows, for checks and logs."""


def open_shard(path: Path, sequences: int, sequence_length: int, dtype: np.dtype) -> np.ndarray:
    """A shard memory-mapped, after checking that the file holds all the sequences the index promises."""
    if not path.is_file():
        raise FuxiError("shard missing; rebuild the mix (fuxitranyu run --from mix)", path=path)
    expected = f"{sequences} sequences of {sequence_length} {dtype.name}"
    try:
        array = np.load(path, mmap_mode="r")
    except ValueError as err:  # numpy: "mmap length is greater than file size" for a truncated file
        raise FuxiError(f"shard truncated: {path.stat().st_size:,} bytes, the index says {expected} ({err}); "
                        f"rebuild the mix", path=path) from None
    if array.shape != (sequences, sequence_length) or array.dtype != dtype:
        raise FuxiError(f"shard holds {array.shape} {array.dtype}, the index says {expected}; rebuild the mix",
                        path=path)
    return array


class ShardReader:
    def __init__(self, mix_dir: str | Path, rank: int = 0, world_size: int = 1, seed: int = 0):
        self.mix_dir = Path(mix_dir)
        self.index = read_index(self.mix_dir)
        if not 0 <= rank < world_size:
            raise FuxiError(f"rank {rank} is not in [0, {world_size})")
        self.rank, self.world_size, self.seed = rank, world_size, seed
        self.languages: list[str] = self.index["languages"]
        self.sequence_length: int = self.index["sequence_length"]
        self.shards = [open_shard(self.mix_dir / shard["file"], shard["sequences"], self.sequence_length,
                                  np.dtype(self.index["dtype"])) for shard in self.index["shards"]]
        self.shard_starts = np.cumsum([0] + [len(s) for s in self.shards])
        segments = np.load(self.mix_dir / SEGMENTS)
        self.segment_offsets, self.segment_starts = segments["offsets"], segments["starts"]
        self.segment_languages = segments["languages"]
        self.total = int(self.shard_starts[-1])
        if self.total == 0:
            raise FuxiError("the mix holds no complete sequence; raise the budget or lower the context length",
                            path=self.mix_dir)
        self.position = 0
        """Positions of the global order consumed so far by all ranks together (wraps into later epochs)."""
        self._permutations: dict[int, np.ndarray] = {}

    def verify(self, part: int = 0, parts: int = 1) -> list[FuxiError]:
        """Hash every `parts`-th shard from `part` against the index (sha256 of the array's bytes, as the build wrote
        it); returns the problems found. Sizes were checked at open; this catches a shard changed in place."""
        problems = []
        for number in range(part, len(self.shards), parts):
            entry = self.index["shards"][number]
            digest = hashlib.sha256(np.ascontiguousarray(self.shards[number]).tobytes()).hexdigest()
            if digest != entry["sha256"]:
                problems.append(FuxiError("sha256 of the shard's tokens differs from the mix's index.json: the shard "
                                          "changed after the mix was built; rebuild the mix (fuxitranyu run --from "
                                          "mix)", path=self.mix_dir / entry["file"]))
        return problems

    def state_dict(self) -> dict:
        return {"position": self.position, "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        if state.get("seed", self.seed) != self.seed:
            raise FuxiError(f"the checkpoint's data order was drawn with seed {state['seed']}, this run uses "
                            f"{self.seed}; resume with the same seed")
        self.position = int(state["position"])

    @property
    def epoch(self) -> int:
        return self.position // self.total

    def permutation(self, epoch: int) -> np.ndarray:
        """The order of the sequences in `epoch`: drawn from (seed, epoch), the same on every rank."""
        if epoch not in self._permutations:
            self._permutations = {e: p for e, p in self._permutations.items() if e >= epoch - 1}
            self._permutations[epoch] = np.random.default_rng([self.seed, epoch]).permutation(self.total)
        return self._permutations[epoch]

    def sequence_indices(self, positions: np.ndarray) -> np.ndarray:
        """The sequences at global `positions` of the walk."""
        epochs, slots = np.divmod(positions, self.total)
        indices = np.empty_like(positions)
        for epoch in np.unique(epochs):
            mine = epochs == epoch
            indices[mine] = self.permutation(int(epoch))[slots[mine]]
        return indices

    def next_batch(self, batch_sequences: int) -> Batch:
        """This rank's part of the next global batch of `batch_sequences` sequences (a multiple of world_size)."""
        if batch_sequences % self.world_size:
            raise FuxiError(f"a global batch of {batch_sequences} sequences does not split over "
                            f"{self.world_size} ranks")
        per_rank = batch_sequences // self.world_size
        first = self.position + self.rank * per_rank
        indices = self.sequence_indices(np.arange(first, first + per_rank, dtype=np.int64))
        self.position += batch_sequences
        tokens = np.stack([self._sequence(i) for i in indices]).astype(np.int64)
        languages = np.stack([self._languages(i) for i in indices])
        return Batch(tokens, languages, indices)

    def _sequence(self, index: int) -> np.ndarray:
        shard = int(np.searchsorted(self.shard_starts, index, side="right")) - 1
        return self.shards[shard][index - self.shard_starts[shard]]

    def _languages(self, index: int) -> np.ndarray:
        begin, end = self.segment_offsets[index], self.segment_offsets[index + 1]
        starts = self.segment_starts[begin:end].astype(np.int64)
        lengths = np.diff(np.append(starts, self.sequence_length))
        return np.repeat(self.segment_languages[begin:end].astype(np.int16), lengths)
