"""Documents/s of the whole data stage under datatrove's Ray executor against the local executor, at 1 and 2 workers,
on this machine's real multilingual text (the default recipe's gettext catalogs and source code, first written to
JSONL). The Ray instance is local, started and stopped by the stage as it would be without `data.ray.address`; its
start-up is part of the time, as it is for a user. Both executors must write the same clean documents (checked).

    python benchmarks/bench_ray.py [--documents 3000] [--tasks 4]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_data import write_corpus  # noqa: E402


def run_stage(corpus: Path, out: Path, executor: str, workers: int, tasks: int) -> float:
    from rich.console import Console

    from fuxitranyu.pipeline import run_pipeline
    from fuxitranyu.recipe import load_recipe

    settings = {"sources": [{"type": "jsonl", "paths": [str(corpus)]}], "tasks": tasks, "workers": workers,
                "executor": executor}
    recipe = load_recipe("tiny", [f"output_dir={out}", f"data={json.dumps(settings)}"])
    started = time.perf_counter()
    run_pipeline(recipe, only=["data"], console=Console(quiet=True))
    return time.perf_counter() - started


def clean(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): gzip.open(p).read() for p in sorted((out / "data").glob("clean/*/*.gz"))}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--documents", type=int, default=3000, help="documents of the corpus to process")
    parser.add_argument("--tasks", type=int, default=4, help="datatrove tasks (input shards)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        full = work / "full.jsonl"
        write_corpus(full)
        corpus = work / "corpus.jsonl"
        with open(full, encoding="utf-8") as source, open(corpus, "w", encoding="utf-8") as target:
            for number, line in enumerate(source):
                if number >= args.documents:
                    break
                target.write(line)
        documents = min(args.documents, sum(1 for _ in open(full, encoding="utf-8")))
        print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}; "
              f"{documents:,} documents, {args.tasks} tasks")
        for workers in (1, 2):
            seconds = {}
            for executor in ("local", "ray"):
                out = work / f"{executor}-{workers}"
                seconds[executor] = run_stage(corpus, out, executor, workers, args.tasks)
            same = clean(work / f"local-{workers}") == clean(work / f"ray-{workers}")
            print(f"workers {workers}: local {documents / seconds['local']:7.1f} docs/s ({seconds['local']:.1f} s), "
                  f"ray {documents / seconds['ray']:7.1f} docs/s ({seconds['ray']:.1f} s), ray/local "
                  f"{seconds['local'] / seconds['ray']:.2f}; identical clean documents: {same}")
        print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
