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
    """Documents per language after each step, and the reasons for what was dropped."""
    table = Table(title="data: documents per language after each step (chars of the final output)")
    table.add_column("language")
    names = list(steps)
    for name in names:
        table.add_column(name, justify="right")
    table.add_column("final chars", justify="right")
    table.add_column("dropped by reason")
    all_languages = sorted({lang for step in steps.values() for lang in step["languages"]} | set(final))
    for lang in all_languages:
        cells = []
        reasons: dict[str, int] = defaultdict(int)
        for name in names:
            row = steps[name]["languages"].get(lang, {})
            cells.append(str(row.get("read_docs", row.get("kept_docs", 0))))
            for reason, count in row.get("dropped", {}).items():
                reasons[reason] += count.get("docs", 0)
        reason_text = ", ".join(f"{r} {n}" for r, n in sorted(reasons.items(), key=lambda x: -x[1]))
        table.add_row(lang, *cells, f"{final.get(lang, {}).get('chars', 0):,}", reason_text)
    return table


def print_summary(console: Console, steps: dict[str, dict[str, Any]], final: dict[str, dict[str, int]]) -> None:
    console.print(summary_table(steps, final))
    for name, step in steps.items():
        if step["skipped"]:
            console.print(f"{name}: skipped records {step['skipped']}")
