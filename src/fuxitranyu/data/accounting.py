"""What each data step saw, kept and dropped, per language: summed from datatrove's per-task stats files.

datatrove merges only the tasks of the latest invocation into `stats.json`; a resumed run therefore reads every
task's own `stats/<rank>.json` instead.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table


def step_counters(logging_dir: Path) -> dict[str, dict[str, int]]:
    """Step name -> counter name -> total over all tasks of one datatrove run."""
    totals: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for path in sorted((logging_dir / "stats").glob("*.json")):
        for step in json.loads(path.read_text(encoding="utf-8")):
            name = step["name"].split(": ", 1)[-1]  # datatrove names a step "<type>: <name>"
            for counter, value in step["stats"].items():
                total = value.get("total", 0) if isinstance(value, dict) else value
                totals[name][counter] += int(total)
    return {name: dict(counters) for name, counters in totals.items()}


def tabulate(counters: dict[str, int]) -> dict[str, Any]:
    """Counters of one step -> {"languages": {lang: {in/kept docs & chars, dropped: {reason: {docs, chars}}}},
    "skipped": {reason: n}, "other": {...}} (readers count `read/` where filters count `in/`)."""
    languages: dict[str, dict[str, Any]] = defaultdict(lambda: {"dropped": {}})
    skipped: dict[str, int] = {}
    other: dict[str, int] = {}
    for name, value in sorted(counters.items()):
        parts = name.split("/")
        if parts[0] in ("in", "kept", "read") and len(parts) == 3:
            languages[parts[1]][f"{parts[0]}_{parts[2]}"] = value
        elif parts[0] == "dropped" and len(parts) == 4:
            languages[parts[2]]["dropped"].setdefault(parts[1], {})[parts[3]] = value
        elif parts[0] == "skipped" and len(parts) == 2:
            skipped[parts[1]] = value
        elif name not in ("total", "forwarded", "doc_len"):
            other[name] = value
    return {"languages": {lang: dict(v) for lang, v in sorted(languages.items())}, "skipped": skipped,
            "other": other}


def summary_table(steps: dict[str, dict[str, Any]], final: dict[str, dict[str, int]]) -> Table:
    """Documents per language after each step, and the final characters."""
    table = Table(title="data: documents per language after each step")
    table.add_column("language")
    for name in steps:
        table.add_column(name, justify="right")
    table.add_column("final chars", justify="right")
    for lang in sorted({lang for step in steps.values() for lang in step["languages"]} | set(final)):
        cells = []
        for step in steps.values():
            row = step["languages"].get(lang, {})
            cells.append(f"{row.get('read_docs', row.get('kept_docs', 0)):,}")
        table.add_row(lang, *cells, f"{final.get(lang, {}).get('chars', 0):,}")
    return table


def reasons_table(steps: dict[str, dict[str, Any]]) -> Table:
    """Every reason a step dropped documents, with the languages that lost most."""
    table = Table(title="data: dropped documents by reason")
    for column in ("step", "reason", "docs", "chars", "most affected"):
        table.add_column(column, justify="right" if column in ("docs", "chars") else "left")
    for name, step in steps.items():
        by_reason: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for lang, row in step["languages"].items():
            for reason, count in row.get("dropped", {}).items():
                by_reason[reason]["docs"] += count.get("docs", 0)
                by_reason[reason]["chars"] += count.get("chars", 0)
                by_reason[reason][f"lang:{lang}"] += count.get("docs", 0)
        for reason, counts in sorted(by_reason.items()):
            worst = sorted(((n, k[5:]) for k, n in counts.items() if k.startswith("lang:")), reverse=True)[:4]
            table.add_row(name, reason, f"{counts['docs']:,}", f"{counts['chars']:,}",
                          " ".join(f"{lang} {n}" for n, lang in worst))
        for reason, count in sorted(step["skipped"].items()):
            table.add_row(name, f"{reason} (skipped record)", f"{count:,}", "", "")
    return table


def print_summary(console: Console, steps: dict[str, dict[str, Any]], final: dict[str, dict[str, int]]) -> None:
    console.print(summary_table(steps, final))
    console.print(reasons_table(steps))
