"""Deterministic, resumable batches from a mix directory, for any number of data-parallel ranks.

All ranks walk one global order of sequences (the shards' order, which the build already shuffled). A step takes the
next `batch_sequences` sequences of that order and gives rank r the r-th contiguous part, so ranks see disjoint data
that together cover everything, the state is one integer (`position`), and the global batch size may change from one
step to the next (the paper ramps 2M -> 4M tokens) without skipping or repeating a sequence.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fuxitranyu.errors import FuxiError
from fuxitranyu.mix.build import INDEX


@dataclass
class Batch:
    tokens: np.ndarray
    """(sequences, context_length + 1) int64: inputs are [:, :-1], targets [:, 1:]."""
    languages: np.ndarray
    """(sequences, context_length + 1) int16: index into `ShardReader.languages` of each token."""
    indices: np.ndarray
    """Global sequence indices of the rows (for checks and logs)."""


class ShardReader:
    def __init__(self, mix_dir: str | Path, rank: int = 0, world_size: int = 1):
        self.mix_dir = Path(mix_dir)
        index_path = self.mix_dir / INDEX
        if not index_path.is_file():
            raise FuxiError("not a mix directory: index.json is missing (run `fuxitranyu mix build`)",
                            path=self.mix_dir)
        try:
            self.index = json.loads(index_path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise FuxiError(f"index.json is not valid JSON ({err}); rebuild the mix", path=index_path) from err
        if not 0 <= rank < world_size:
            raise FuxiError(f"rank {rank} is not in [0, {world_size})")
        self.rank, self.world_size = rank, world_size
        self.languages: list[str] = self.index["languages"]
        self.sequence_length: int = self.index["sequence_length"]
        self.shards = [np.load(self.mix_dir / shard["file"], mmap_mode="r") for shard in self.index["shards"]]
        self.shard_starts = np.cumsum([0] + [len(s) for s in self.shards])
        segments = np.load(self.mix_dir / "segments.npz")
        self.segment_offsets, self.segment_starts = segments["offsets"], segments["starts"]
        self.segment_languages = segments["languages"]
        self.total = int(self.shard_starts[-1])
        if self.total == 0:
            raise FuxiError("the mix holds no complete sequence; raise the budget or lower the context length",
                            path=self.mix_dir)
        self.position = 0
        """Sequences of the global order consumed so far by all ranks together (wraps into later epochs)."""

    def state_dict(self) -> dict:
        return {"position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.position = int(state["position"])

    @property
    def epoch(self) -> int:
        return self.position // self.total

    def next_batch(self, batch_sequences: int) -> Batch:
        """This rank's part of the next global batch of `batch_sequences` sequences (a multiple of world_size)."""
        if batch_sequences % self.world_size:
            raise FuxiError(f"a global batch of {batch_sequences} sequences does not split over "
                            f"{self.world_size} ranks")
        per_rank = batch_sequences // self.world_size
        first = self.position + self.rank * per_rank
        indices = np.arange(first, first + per_rank) % self.total
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
