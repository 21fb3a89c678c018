"""Across checkpoints: the suite on every k-th checkpoint of a pretraining run, per-language curves against tokens
seen, and no work twice.

    <out>/sweep/<name>/step-NNNNNN.json   one checkpoint's rows, with the checkpoint's identity and the evaluation's
                                          fingerprint; reused when both still match
    <out>/sweep/<name>/curves.csv         step, tokens, benchmark, language, metric, value
    <out>/sweep/<name>/curves/<benchmark>.<metric>.png

A checkpoint's identity is the hash of the file hashes its `checkpoint.json` lists, so a checkpoint rewritten under
the same name is evaluated again; the fingerprint covers the tasks, their data and the settings that change numbers.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import io
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from rich.console import Console

from fuxitranyu.errors import FuxiError
from fuxitranyu.evaluate.artifacts import SWEEP
from fuxitranyu.evaluate.harness import ModelToEvaluate, Settings, evaluate_model
from fuxitranyu.evaluate.results import PERCENT_METRICS, ResultRow, slug
from fuxitranyu.evaluate.run import Evaluation
from fuxitranyu.io import atomic_write_json, atomic_write_text
from fuxitranyu.pretrain.checkpoint import STATE, Checkpoint, describe, list_checkpoints, verify_files


@dataclass(frozen=True)
class CheckpointResult:
    step: int
    tokens: int
    rows: list[ResultRow]
    reused: bool


def every_kth(checkpoints: list[Path], every: int) -> list[Path]:
    """Every `every`-th checkpoint counted from the first, and always the last."""
    chosen = checkpoints[every - 1::every] if every > 1 else list(checkpoints)
    if checkpoints and checkpoints[-1] not in chosen:
        chosen.append(checkpoints[-1])
    return chosen


def identity(checkpoint: Checkpoint) -> str:
    return hashlib.sha256(json.dumps(checkpoint.files, sort_keys=True).encode()).hexdigest()


def _settings_key(evaluation: Evaluation, settings: Settings) -> str:
    relevant = {k: v for k, v in asdict(settings).items() if k != "batch_size"}
    return hashlib.sha256(json.dumps([evaluation.fingerprint, relevant], sort_keys=True, default=str).encode()
                          ).hexdigest()


def _reusable(path: Path, checkpoint_id: str, key: str) -> list[ResultRow] | None:
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        if saved["checkpoint"]["identity"] == checkpoint_id and saved["evaluation"] == key:
            return [ResultRow(**row) for row in saved["results"]]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError):
        pass
    return None


def sweep(folder: Path, evaluation: Evaluation, settings: Settings, name: str, tokenizer: Path | None,
          every: int, console: Console) -> list[CheckpointResult]:
    """Evaluate the chosen checkpoints of `folder` (reusing earlier results), then write the curves."""
    checkpoints = every_kth(list_checkpoints(folder), max(every, 1))
    if not checkpoints:
        raise FuxiError("no checkpoints (step-* folders) here", path=folder)
    out = evaluation.out_dir / SWEEP / name
    key = _settings_key(evaluation, settings)
    done = []
    for path in checkpoints:
        checkpoint = describe(path)
        verify_files(checkpoint, skip=(STATE,))
        record, checkpoint_id = out / f"{path.name}.json", identity(checkpoint)
        rows = _reusable(record, checkpoint_id, key)
        reused = rows is not None
        if rows is None:
            model = ModelToEvaluate(f"{name}@{checkpoint.step}", str(path),
                                    tokenizer=str(tokenizer) if tokenizer else None)
            result = evaluate_model(model, evaluation.tasks, settings)
            rows = result.rows
            atomic_write_json(record, {
                "checkpoint": {"path": str(path), "step": checkpoint.step, "tokens": checkpoint.tokens,
                               "identity": checkpoint_id},
                "evaluation": key, "task_hashes": result.task_hashes, "results": [asdict(r) for r in rows]})
        console.print(f"  {name} step {checkpoint.step} ({checkpoint.tokens:,} tokens): "
                      f"{'earlier result reused' if reused else 'evaluated'}")
        done.append(CheckpointResult(checkpoint.step, checkpoint.tokens, rows, reused))
    write_curves(done, out)
    return done


def write_curves(results: list[CheckpointResult], out: Path) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["step", "tokens", "benchmark", "language", "metric", "value"])
    series: dict[tuple[str, str], dict[str, dict[int, float]]] = {}
    for result in results:
        for row in result.rows:
            writer.writerow([result.step, result.tokens, row.benchmark, row.language, row.metric, row.value])
            shown = row.value * 100 if row.metric in PERCENT_METRICS else row.value
            series.setdefault((row.benchmark, row.metric), {}).setdefault(row.language, {})[result.tokens] = shown
    atomic_write_text(out / "curves.csv", buffer.getvalue())
    if importlib.util.find_spec("matplotlib") is None:
        return
    from fuxitranyu.evaluate.plots import plot_curves

    for (benchmark, metric), points in series.items():
        plot_curves(points, f"{benchmark} across checkpoints", metric,
                    out / "curves" / f"{slug(benchmark, metric)}.png")
