"""Results: rows out of lm-eval's output, `results.json`, and tables in the paper's layout with balance columns.

    results.json        {"suite", "lm_eval_version", "models": {name: {...}}, "results": [row, ...]}
    tables.md           every benchmark: a row per model (ours, then the paper's), a column per language, the average
                        and the balance across languages (worst, best, range, σ, CV, languages below mean − σ)
    tables/<benchmark>.<metric>.csv   the same, one file per table
"""

from __future__ import annotations

import csv
import io
import json
import re
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fuxitranyu.errors import FuxiError
from fuxitranyu.evaluate.artifacts import TABLES, TABLES_MD
from fuxitranyu.evaluate.balance import balance, tied
from fuxitranyu.evaluate.reference import reference_values
from fuxitranyu.evaluate.suite import Suite, SuiteTask
from fuxitranyu.io import atomic_write_json, atomic_write_text

PERCENT_METRICS = frozenset({"acc", "acc_norm", "rouge1", "rouge2", "rougeL"})
"""Metrics lm-eval reports as fractions and the paper prints as percentages."""


@dataclass(frozen=True)
class ResultRow:
    model: str
    benchmark: str
    task: str
    language: str
    metric: str
    value: float
    stderr: float | None
    shots: int
    samples: int
    higher_is_better: bool


@dataclass
class ModelResults:
    name: str
    path: str
    chat: bool
    rows: list[ResultRow]
    task_hashes: dict[str, str] = field(default_factory=dict)
    """lm-eval's hash of each task's documents, prompts and targets, as its EvaluationTracker computes it."""
    task_versions: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    examples: int = 0
    generations: dict[str, list[dict]] = field(default_factory=dict)
    """Generation tasks' outputs: task -> [{"doc_id", "prompt", "target", "response"}] (written beside the results,
    not into results.json)."""
    model_args: dict[str, Any] = field(default_factory=dict)
    """What the backend was given (weights, dtype, device): `--model_args` of the same run with the bare CLI."""

    def header(self) -> dict[str, Any]:
        return {"path": self.path, "chat_template": self.chat, "model_args": self.model_args,
                "task_hashes": self.task_hashes,
                "task_versions": self.task_versions, "seconds": round(self.seconds, 3), "examples": self.examples}


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) else None


def rows_from_lm_eval(output: dict, tasks: list[SuiteTask], model: str) -> list[ResultRow]:
    """Our rows from `lm_eval.simple_evaluate`'s output: every metric the suite names, per task."""
    rows = []
    for spec in tasks:
        scores = output["results"].get(spec.task)
        if scores is None:
            raise FuxiError(f"lm-eval returned no result for task {spec.task}")
        for metric in spec.metrics:
            value = _number(scores.get(f"{metric},none"))
            if value is None:
                raise FuxiError(f"task {spec.task} reported no {metric!r} (it reported "
                                f"{', '.join(k for k in scores if k != 'alias')})")
            rows.append(ResultRow(
                model, spec.benchmark, spec.task, spec.language, metric, value,
                _number(scores.get(f"{metric}_stderr,none")), spec.shots,
                int(output.get("n-samples", {}).get(spec.task, {}).get("effective", 0)),
                bool(output.get("higher_is_better", {}).get(spec.task, {}).get(metric, True))))
    return rows


def task_hashes(output: dict) -> dict[str, str]:
    """Per task, the hash lm-eval's EvaluationTracker writes: over every sample's document, prompt and target."""
    from lm_eval.utils import hash_string

    return {task: hash_string("".join(s["doc_hash"] + s["prompt_hash"] + s["target_hash"] for s in samples))
            for task, samples in (output.get("samples") or {}).items()}


def generations(output: dict) -> dict[str, list[dict]]:
    """What the model generated in each generation task, with the prompt it saw and the reference."""
    found = {}
    for task, samples in (output.get("samples") or {}).items():
        if output.get("configs", {}).get(task, {}).get("output_type") != "generate_until":
            continue
        found[task] = [{"doc_id": s["doc_id"], "prompt": s["arguments"][0][0], "target": s["target"],
                        "response": s["filtered_resps"][0]} for s in samples]
    return found


def write_generations(folder: Path, results: ModelResults) -> None:
    for task, items in results.generations.items():
        atomic_write_text(folder / results.name / f"{task}.jsonl",
                          "".join(json.dumps(item, ensure_ascii=False) + "\n" for item in items))


def write_results(path: Path, suite: Suite, models: list[ModelResults], extra: dict[str, Any] | None = None) -> None:
    from importlib.metadata import version

    atomic_write_json(path, {
        "suite": suite.name,
        "lm_eval_version": version("lm_eval"),
        **(extra or {}),
        "models": {m.name: m.header() for m in models},
        "results": [asdict(row) for m in models for row in m.rows],
    })


def read_rows(path: Path) -> list[ResultRow]:
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
        return [ResultRow(**row) for row in raw["results"]]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as err:
        raise FuxiError(f"not a fuxitranyu results file ({err})", path=path) from None


# ----------------------------------------------------------------------------------------------------------------
# Tables


@dataclass(frozen=True)
class Table:
    benchmark: str
    metric: str
    languages: list[str]
    rows: dict[str, dict[str, float]]
    """Model -> {language: value}, on the scale the paper prints; ours first, then the paper's models."""
    higher_is_better: bool

    @property
    def slug(self) -> str:
        return slug(self.benchmark, self.metric)


def slug(benchmark: str, metric: str) -> str:
    """File name of a benchmark's table, plot or curve: `m-arc.acc_norm`."""
    return re.sub(r"[^A-Za-z0-9]+", "-", benchmark).strip("-").lower() + f".{metric}"


def _display(metric: str, value: float) -> float:
    return value * 100 if metric in PERCENT_METRICS else value


def tables(rows: list[ResultRow], suite: Suite) -> list[Table]:
    """One table per benchmark and metric, in suite order, with the paper's numbers where it has the same table."""
    found = []
    for benchmark in suite.benchmarks:
        for metric in benchmark.metrics:
            ours = [r for r in rows if r.benchmark == benchmark.name and r.metric == metric]
            if not ours:
                continue
            languages = list(dict.fromkeys(r.language for r in ours))
            table_rows: dict[str, dict[str, float]] = {}
            for row in ours:
                table_rows.setdefault(row.model, {})[row.language] = _display(metric, row.value)
            for model, values in reference_values(benchmark.name, metric).items():
                table_rows[f"{model} (paper)"] = {lang: v for lang, v in values.items() if lang in languages}
            found.append(Table(benchmark.name, metric, languages, table_rows, ours[0].higher_is_better))
    return found


def _cells(table: Table, values: dict[str, float]) -> list[str]:
    digits = 2 if table.metric in PERCENT_METRICS or table.metric in ("bleu", "chrf") else 3
    shown = [f"{values[lang]:.{digits}f}" if lang in values else "" for lang in table.languages]
    stats = balance(values, table.higher_is_better) if len(values) == len(table.languages) else None
    if stats is None:
        average = f"{statistics.fmean(values.values()):.{digits}f}" if len(values) == len(table.languages) else ""
        return shown + [average, "", "", "", "", "", ""]
    places = [tied(stats.worst, len(values)), tied(stats.best, len(values))]
    return shown + [f"{stats.mean:.{digits}f}", *places, f"{stats.range:.{digits}f}",
                    f"{stats.std:.{digits}f}", "" if stats.cv is None else f"{stats.cv:.3f}", " ".join(stats.lagging)]


def _header(table: Table) -> list[str]:
    return ["model", *table.languages, "avg", "worst", "best", "range", "σ", "CV", "below mean−σ"]


def table_csv(table: Table) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(_header(table))
    for model, values in table.rows.items():
        writer.writerow([model, *_cells(table, values)])
    return out.getvalue()


def table_markdown(table: Table) -> str:
    direction = "higher is better" if table.higher_is_better else "lower is better"
    scale = ", percent" if table.metric in PERCENT_METRICS else ""
    lines = [f"### {table.benchmark} — {table.metric} ({direction}{scale})", "",
             "| " + " | ".join(_header(table)) + " |", "|" + "---|" * len(_header(table))]
    lines += ["| " + " | ".join([model, *_cells(table, values)]) + " |" for model, values in table.rows.items()]
    return "\n".join(lines) + "\n"


def write_tables(rows: list[ResultRow], suite: Suite, out_dir: Path) -> list[Table]:
    found = tables(rows, suite)
    atomic_write_text(out_dir / TABLES_MD, f"# {suite.name}: {suite.description}\n\n"
                      + "\n".join(table_markdown(t) for t in found))
    for table in found:
        atomic_write_text(out_dir / TABLES / f"{table.slug}.csv", table_csv(table))
    return found
