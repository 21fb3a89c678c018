"""The paper's reported results (Tables 5-14) as data, to be shown beside ours wherever a benchmark matches.

`paper_results.csv`: one row per (table, model, benchmark, language, metric) with the value as printed (percent; BLEU
and chrF on sacrebleu's 0-100 scale). `language` is `avg` in Tables 5 and 6. The paper does not say which accuracy
(plain or length-normalised) or which ROUGE it reports; the rows carry the metric our suites compare them with
(`acc_norm` for m-ARC and m-HellaSwag, as the Okapi leaderboard reports them; ROUGE-L for XL-Sum). Left out: one cell
that the paper's text does not render legibly (Table 9, Llama-2-Chat-7B, Indonesian).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from functools import cache
from importlib import resources

AVERAGE = "avg"


@dataclass(frozen=True)
class PaperResult:
    table: int
    model: str
    benchmark: str
    language: str
    metric: str
    value: float


@cache
def paper_results() -> tuple[PaperResult, ...]:
    text = (resources.files("fuxitranyu.evaluate") / "paper_results.csv").read_text(encoding="utf-8")
    return tuple(PaperResult(int(row["table"]), row["model"], row["benchmark"], row["language"], row["metric"],
                             float(row["value"])) for row in csv.DictReader(io.StringIO(text)))


def reference_values(benchmark: str, metric: str) -> dict[str, dict[str, float]]:
    """model -> {language: value} of the paper's per-language table for `benchmark` and `metric` (empty when the
    paper has none)."""
    found: dict[str, dict[str, float]] = {}
    for row in paper_results():
        if row.benchmark == benchmark and row.metric == metric and row.language != AVERAGE:
            found.setdefault(row.model, {})[row.language] = row.value
    return found


def reference_averages(benchmark: str, metric: str) -> dict[str, float]:
    """model -> the average the paper reports for `benchmark` (Tables 5 and 6)."""
    return {row.model: row.value for row in paper_results()
            if row.benchmark == benchmark and row.metric == metric and row.language == AVERAGE}
