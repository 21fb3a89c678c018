"""Tables of the analyses: CSV for spreadsheets and pandas, JSON with the full arrays (docs/artifacts.md)."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fuxitranyu.analyze.artifacts import (
    IMPORTANCE_CSV,
    IMPORTANCE_JSON,
    MEAN_SIMILARITY_CSV,
    SIMILARITY_CSV,
    SIMILARITY_JSON,
)
from fuxitranyu.analyze.neurons import NeuronImportance
from fuxitranyu.analyze.representations import RepresentationSimilarity
from fuxitranyu.io import atomic_path, atomic_write_json, atomic_write_text

NEURON_DEFINITION = (
    "importance = mean over the language's sentences of |sum over the sentence's tokens of dL/dh_i * h_i|, summed "
    "over the units i of the component; L = the sentence's mean next-token cross-entropy; share = importance / the "
    "language's total over all layers and components"
)
SIMILARITY_DEFINITION = (
    "cosine similarity of the languages' mean last-token hidden states; points: emb = the first layer's input, "
    "then each decoder layer's output (the last one after the final norm, as transformers' output_hidden_states); "
    "mean_similarity = mean over pairs of different languages"
)


def file_safe(name: str) -> str:
    """A model name as a file name part."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "model"


def _round(value: float) -> float | None:
    """6 significant digits; None (JSON null, an empty CSV cell) for NaN, e.g. a language without sentences."""
    return float(f"{value:.6g}") if np.isfinite(value) else None


def _write_csv(path: Path, header: Sequence[str], rows: list[list]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


def _nested(values: np.ndarray) -> list:
    return [_nested(v) for v in values] if values.ndim > 1 else [_round(v) for v in values]


def _tokens_seen(value: int | None) -> int | str:
    return "" if value is None else value


def write_neuron_tables(results: Sequence[NeuronImportance], folder: Path, save_units: bool) -> list[str]:
    """`importance.csv`, `importance.json` (and `units-<model>.npz`) in `folder`; returns the file names."""
    rows = []
    for result in results:
        share = result.share
        for a, language in enumerate(result.languages):
            for layer in range(result.importance.shape[1]):
                for c, component in enumerate(result.components):
                    rows.append([result.model, _tokens_seen(result.tokens_seen), language, layer, component,
                                 _round(result.importance[a, layer, c]), _round(share[a, layer, c])])
    _write_csv(folder / IMPORTANCE_CSV,
               ["model", "tokens_seen", "language", "layer", "component", "importance", "share"], rows)
    atomic_write_json(folder / IMPORTANCE_JSON, {"definition": NEURON_DEFINITION, "models": [{
        "model": r.model, "tokens_seen": r.tokens_seen, "languages": list(r.languages),
        "components": list(r.components), "sentences": r.sentences.tolist(), "tokens": r.tokens.tolist(),
        "importance": _nested(r.importance),
    } for r in results]})
    written = [IMPORTANCE_CSV, IMPORTANCE_JSON]
    if save_units:
        for result in results:
            name = f"units-{file_safe(result.model)}.npz"
            _save_npz(folder / name, {"languages": np.array(result.languages),
                                      **{path: values.astype(np.float32) for path, values in result.units.items()}})
            written.append(name)
    return written


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez_compressed(handle, **arrays)


def write_similarity_tables(results: Sequence[RepresentationSimilarity], folder: Path) -> list[str]:
    """`similarity.csv` (every pair at every point), `mean_similarity.csv`, `similarity.json`."""
    pairs, means = [], []
    for result in results:
        seen = _tokens_seen(result.tokens_seen)
        for p, point in enumerate(result.points):
            means.append([result.model, seen, point, _round(result.mean_similarity[p])])
            for a, first in enumerate(result.languages):
                for b, second in enumerate(result.languages):
                    pairs.append([result.model, seen, point, first, second, _round(result.similarity[p, a, b])])
    _write_csv(folder / SIMILARITY_CSV,
               ["model", "tokens_seen", "point", "language_a", "language_b", "similarity"], pairs)
    _write_csv(folder / MEAN_SIMILARITY_CSV, ["model", "tokens_seen", "point", "mean_similarity"], means)
    atomic_write_json(folder / SIMILARITY_JSON, {"definition": SIMILARITY_DEFINITION, "models": [{
        "model": r.model, "tokens_seen": r.tokens_seen, "languages": list(r.languages), "points": list(r.points),
        "sentences": r.sentences.tolist(), "mean_similarity": [_round(v) for v in r.mean_similarity],
        "similarity": _nested(r.similarity),
    } for r in results]})
    return [SIMILARITY_CSV, MEAN_SIMILARITY_CSV, SIMILARITY_JSON]
