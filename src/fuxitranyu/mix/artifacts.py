"""The mix stage's folder, named once, with the readers other stages use (the index owns context length, vocabulary
size and the shards' hashes)."""

from __future__ import annotations

import json
from pathlib import Path

from fuxitranyu.errors import FuxiError

INDEX = "index.json"
"""Shapes, languages, shards with their sha256, sampled tokens, validation arrays, unigram entropy."""
PLAN = "plan.json"
"""The balanced sampling plan: per language available tokens, planned tokens, share, epochs."""
SHARDS = "shards"
"""`shards/<NNNNN>.npy`: (sequences, context + 1) token arrays."""
SEGMENTS = "segments.npz"
"""The language runs inside each sequence (CSR: offsets, starts, languages)."""
VALIDATION = "validation"
"""`validation/<label>.npy`: each language's held-out documents, packed like the shards."""


def read_index(mix_dir: str | Path) -> dict:
    """The mix's index.json: shapes, languages, shards with their hashes."""
    index_path = Path(mix_dir) / INDEX
    if not index_path.is_file():
        raise FuxiError("not a mix directory: index.json is missing (run `fuxitranyu mix build`)", path=mix_dir)
    try:
        return json.loads(index_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise FuxiError(f"index.json is not valid JSON ({err}); rebuild the mix", path=index_path) from err


def read_plan(mix_dir: str | Path) -> dict:
    """The mix's plan.json (empty when the folder has none)."""
    path = Path(mix_dir) / PLAN
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
