"""The `data` stage: sources -> language ID -> heuristic + statistical filters -> (perplexity) -> MinHash dedup ->
clean documents per language, plus held-out parallel sets and an account of what every step removed.

Each phase is a datatrove pipeline run by a datatrove executor over files on disk, so the same stage runs on local
processes here and on Slurm or Ray on a cluster. The stage works inside a directory that survives an interruption:
datatrove skips the tasks it already completed, and a re-run finishes with the same output.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers import JsonlWriter

from fuxitranyu.data import accounting, mediawiki, perplexity, system, udhr
from fuxitranyu.data.artifacts import DROPPED, PHASES, clean_dir, parallel_dir
from fuxitranyu.data.config import DataSection
from fuxitranyu.data.dedup import (
    MinHashBuckets,
    MinHashClusters,
    MinHashFilter,
    MinHashMicroDedup,
    MinHashSignatures,
)
from fuxitranyu.data.execution import executor_session, run_phase
from fuxitranyu.data.filters import (
    HeuristicFilter,
    LanguageIdentifier,
    StatisticalFilter,
)
from fuxitranyu.data.readers import SUFFIXES, SourceReader, clean_documents, expand_paths, unreachable_hub_parts
from fuxitranyu.errors import FuxiError
from fuxitranyu.io import atomic_write_json, atomic_write_text
from fuxitranyu.stage import Stage, StageContext

BY_LANGUAGE = "${language}/${rank}.jsonl.gz"


def dropped_writer(recipe: DataSection, out_dir: Path, step: str) -> JsonlWriter | None:
    return JsonlWriter(str(out_dir / DROPPED / step), output_filename=BY_LANGUAGE) if recipe.keep_dropped else None


def write_parallel_sets(recipe: DataSection, out_dir: Path) -> dict[str, int]:
    """`parallel/<domain>.jsonl` for every held-out gettext domain; returns rows per set."""
    rows_per_set = {}
    for source in recipe.sources:
        if source.type in ("udhr", "mediawiki") and source.held_out:
            module = udhr if source.type == "udhr" else mediawiki
            rows = module.parallel_rows(Path(source.paths[0]), recipe.language_set)
            atomic_write_text(parallel_dir(out_dir) / f"{source.type}.jsonl",
                              "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
            rows_per_set[source.type] = len(rows)
        if source.type != "system":
            continue
        for domain in source.held_out_domains:
            rows = list(system.parallel_rows(source.locale_dir, [domain], languages=recipe.language_set))
            if not rows:
                raise FuxiError(f"held-out domain {domain!r} has no catalog with aligned sentences",
                                path=source.locale_dir)
            lines = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
            atomic_write_text(parallel_dir(out_dir) / f"{domain}.jsonl", lines)
            rows_per_set[domain] = len(rows)
    return rows_per_set


def filter_pipeline(recipe: DataSection, out_dir: Path, target: Path) -> list:
    languages = recipe.language_set
    steps: list = [SourceReader(source, languages) for source in recipe.sources]
    if recipe.language_id.enabled:
        steps.append(LanguageIdentifier(recipe.language_id, languages, dropped_writer(recipe, out_dir, "language_id")))
    if recipe.filters.enabled:
        steps.append(HeuristicFilter(recipe.filters, dropped_writer(recipe, out_dir, "heuristic")))
        steps.append(StatisticalFilter(recipe.filters, dropped_writer(recipe, out_dir, "statistical")))
    steps.append(JsonlWriter(str(target), output_filename=BY_LANGUAGE))
    return steps


def run_dedup_phases(recipe: DataSection, out: Path, source: Path, target: Path, logs: Path, verbose: bool = False
                ) -> dict[str, Any]:
    """MinHash dedup in four datatrove phases: signatures (sharded to disk) -> buckets -> clusters (or the paper's
    micro-dedup) -> a filter pass that writes the kept documents."""
    config, folder = recipe.dedup.minhash, str(out / "work" / "minhash")

    def reader():
        return JsonlReader(str(source), glob_pattern="*/*.jsonl.gz", add_file_path=False)

    run_phase([reader(), MinHashSignatures(folder, config)], recipe, logs / "dedup-signatures", verbose)
    buckets = recipe.model_copy(update={"tasks": min(recipe.tasks, config.num_shards)})
    run_phase([MinHashBuckets(folder, config)], buckets, logs / "dedup-buckets", verbose)
    single = recipe.model_copy(update={"tasks": 1, "workers": 1})
    if recipe.dedup.micro is None:
        run_phase([MinHashClusters(folder, config)], single, logs / "dedup-clusters", verbose)
    else:
        run_phase([MinHashMicroDedup(folder, config, recipe.dedup.micro)], single, logs / "dedup-clusters", verbose)
    steps = [reader(), MinHashFilter(folder, config, dropped_writer(recipe, out, "dedup")),
             JsonlWriter(str(target), output_filename=BY_LANGUAGE)]
    run_phase(steps, recipe, logs / "dedup-filter", verbose)
    result = json.loads((out / "work" / "minhash" / "stats.json").read_text(encoding="utf-8"))
    return {key: value for key, value in result.items() if key not in ("languages", "total")}


def count_output(folder: Path) -> dict[str, dict[str, int]]:
    """Documents and characters per language in a folder of `<lang>/<rank>.jsonl.gz` files."""
    totals: dict[str, dict[str, int]] = {}
    for language, text in clean_documents(folder):
        row = totals.setdefault(language, {"docs": 0, "chars": 0})
        row["docs"] += 1
        row["chars"] += len(text)
    return totals


def check_sources(recipe: DataSection) -> None:
    """Fail before any work starts for a source whose paths name nothing readable, and with one message listing
    every Hugging Face dataset that is neither on disk, in the caches, nor reachable."""
    unreachable = []
    for source in recipe.sources:
        if source.type in SUFFIXES:
            expand_paths(source.paths, SUFFIXES[source.type])
        elif source.type == "huggingface":
            unreachable += unreachable_hub_parts(source)
    if unreachable:
        raise FuxiError(f"{len(unreachable)} Hugging Face dataset part(s) can be read neither from disk, the caches "
                        f"nor the hub from here: {', '.join(unreachable)}. Download them where the hub is reachable "
                        f"(huggingface-cli download --repo-type dataset NAME, or datasets' save_to_disk and give the "
                        f"folder as `dataset`) and set HF_HOME to that cache")


def require_documents(folder: Path, steps: dict[str, dict[str, Any]]) -> None:
    """After the filters: a corpus with nothing left is an error that says where the documents went."""
    if any(folder.glob("*/*.jsonl.gz")):
        return
    lines = []
    for name, table in steps.items():
        read = sum(row.get("read_docs", 0) for row in table["languages"].values())
        dropped: dict[str, int] = {}
        for row in table["languages"].values():
            for reason, counts in row.get("dropped", {}).items():
                dropped[reason] = dropped.get(reason, 0) + counts.get("docs", 0)
        skipped = table["skipped"]
        parts = [f"read {read}"] if read else []
        parts += [f"dropped {n} as {reason}" for reason, n in sorted(dropped.items())]
        parts += [f"skipped {n} as {reason}" for reason, n in sorted(skipped.items())]
        if parts:
            lines.append(f"{name}: {', '.join(parts)}")
    raise FuxiError("no document survived the filters (" + ("; ".join(lines) or "the sources yielded nothing") +
                    "); check data.sources, data.languages and the filter thresholds")


def step_tables(logs: Path, phases: list[str]) -> dict[str, dict[str, Any]]:
    return {name: table for phase in phases for name, counters in accounting.step_counters(logs / phase).items()
            if (table := accounting.tabulate(counters))["languages"] or table["skipped"]}


def run_data_stage(ctx: StageContext) -> dict[str, Any]:
    with executor_session(ctx.recipe.data, ctx.verbose):
        return run_phases(ctx)


def run_phases(ctx: StageContext) -> dict[str, Any]:
    recipe: DataSection = ctx.recipe.data
    out, logs = ctx.out_dir, ctx.out_dir / "logs"
    check_sources(recipe)
    parallel = write_parallel_sets(recipe, out)
    finished = out / PHASES
    if finished.is_file():
        done = json.loads(finished.read_text(encoding="utf-8"))
    else:
        done = filter_and_deduplicate(ctx, recipe, out, logs)
        atomic_write_json(finished, done)
    documents, clean = out / done["documents"], clean_dir(out)
    if documents != clean and documents.exists():  # without dedup the last phase's output becomes clean/
        shutil.rmtree(clean, ignore_errors=True)
        documents.rename(clean)
    shutil.rmtree(out / "work", ignore_errors=True)
    steps = step_tables(logs, done["phases"])
    final = count_output(clean)
    accounting.print_summary(ctx.console, steps, final)
    return {"steps": steps, "final": final, "parallel_sets": parallel, **done["report"]}


def filter_and_deduplicate(ctx: StageContext, recipe: DataSection, out: Path, logs: Path) -> dict[str, Any]:
    """The phases from the sources to the clean documents; returns the phases run, the folder the documents are in
    (relative to `out`) and what perplexity and dedup reported."""
    current = out / "work" / "filtered"
    run_phase(filter_pipeline(recipe, out, current), recipe, logs / "filter", ctx.verbose)
    require_documents(current, step_tables(logs, ["filter"]))
    phases = ["filter"]
    report: dict[str, Any] = {}
    if recipe.perplexity.enabled:
        models, thresholds, report["perplexity"] = perplexity.prepare_models(recipe.perplexity, current, out / "kenlm")
        scored = out / "work" / "perplexity"
        steps = [JsonlReader(str(current), glob_pattern="*/*.jsonl.gz", add_file_path=False),
                 perplexity.PerplexityFilter(models, thresholds, dropped_writer(recipe, out, "perplexity")),
                 JsonlWriter(str(scored), output_filename=BY_LANGUAGE)]
        run_phase(steps, recipe, logs / "perplexity", ctx.verbose)
        current = scored
        phases.append("perplexity")
    if recipe.dedup.enabled:
        report["dedup"] = run_dedup_phases(recipe, out, current, clean_dir(out), logs, ctx.verbose)
        phases.append("dedup-filter")
        current = clean_dir(out)
    return {"phases": phases, "documents": current.relative_to(out).as_posix(), "report": report}


STAGE = Stage(
    "data", sections=("data",), needs=(), run=run_data_stage,
    description="sources -> language ID -> filters -> dedup -> clean documents per language + parallel sets",
    # how many processes run the tasks, and on which executor, does not change a byte of the output
    fingerprint_excludes=("data.workers", "data.executor", "data.ray", "data.slurm"),
)
