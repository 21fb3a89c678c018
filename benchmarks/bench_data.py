"""Throughput of the data stage's full chain, documents/s per worker, on this machine's real multilingual text.

The corpus is the default recipe's: every gettext catalog on the machine (43 languages) plus source code, as the
`system` source makes it. It is first written to JSONL (so that .mo parsing is timed apart), then one datatrove
worker runs the chain the stage runs: read JSONL -> language ID -> heuristic filters -> statistical filters ->
MinHash signatures; the dedup phases after the signatures are measured by `bench_dedup.py`, which compares them with
datasketch (`--with-dedup` runs it too). Per-step times come from datatrove's own timers.

    python benchmarks/bench_data.py [--with-dedup]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path


def write_corpus(path: Path) -> tuple[int, int, float]:
    """The system source's documents as JSONL; returns (documents, characters, seconds)."""
    from fuxitranyu.data.config import SourceSpec
    from fuxitranyu.data.readers import SourceReader

    spec = SourceSpec(type="system", held_out_domains=["tar", "diffutils", "sed", "grep"],
                      code_roots=["stdlib", "/usr/include"], max_code_files_per_language=300)
    started = time.perf_counter()
    docs = chars = 0
    with open(path, "w", encoding="utf-8") as f:
        for doc in SourceReader(spec).run(None):
            f.write(json.dumps({"text": doc.text, "id": doc.id, "language": doc.metadata["language"]},
                               ensure_ascii=False) + "\n")
            docs += 1
            chars += len(doc.text)
    return docs, chars, time.perf_counter() - started


def run_chain(corpus: Path, work: Path) -> tuple[float, list[dict]]:
    from datatrove.executor import LocalPipelineExecutor

    from fuxitranyu.data.config import DataSection, SourceSpec
    from fuxitranyu.data.stage import filter_pipeline

    recipe = DataSection(sources=[SourceSpec(type="jsonl", paths=[str(corpus)])], keep_dropped=False)
    # The signature step ends the chain: it writes band keys, not documents (the filter pass reads them later).
    steps = filter_pipeline(recipe, work, work / "filtered")[:-1] + [_signature_step(work)]
    started = time.perf_counter()
    LocalPipelineExecutor(steps, tasks=1, workers=1, logging_dir=str(work / "logs")).run()
    seconds = time.perf_counter() - started
    stats = json.loads((work / "logs" / "stats" / "00000.json").read_text())
    return seconds, stats


def _signature_step(work: Path):
    from fuxitranyu.data.dedup import MinHashConfig, MinHashSignatures

    return MinHashSignatures(str(work / "minhash"), MinHashConfig())


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--with-dedup", action="store_true", help="also run bench_dedup.py (minutes)")
    args = parser.parse_args()
    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        docs, chars, read_seconds = write_corpus(tmp / "corpus.jsonl")
        seconds, stats = run_chain(tmp / "corpus.jsonl", tmp / "chain")
    print(f"# data chain on {platform.node()} ({os.cpu_count()} cores), load average {load[0]:.2f}, "
          f"{datetime.now(UTC):%Y-%m-%d}")
    print(f"system source (gettext .mo parsing + code files): {docs:,} documents, {chars / 1e6:.1f}M chars, "
          f"{docs / read_seconds:,.0f} docs/s")
    print(f"full chain, 1 worker: {docs / seconds:,.0f} docs/s, {chars / seconds / 1e6:.2f}M chars/s "
          f"({seconds:.1f}s for {docs:,} documents)")
    print("| step | seconds | docs/s of its input |")
    print("|---|---|---|")
    for step in stats:
        timing = step.get("time_stats", {})
        total = timing.get("total", 0.0) if isinstance(timing, dict) else 0.0
        seen = sum(v["total"] if isinstance(v, dict) else v for k, v in step["stats"].items()
                   if k.startswith(("in/", "read/")) and k.endswith("/docs"))
        rate = f"{seen / total:,.0f}" if total and seen else "-"
        print(f"| {step['name'].split(': ', 1)[-1]} | {total:.2f} | {rate} |")
    if args.with_dedup:
        subprocess.run([sys.executable, str(Path(__file__).with_name("bench_dedup.py"))], check=True)


if __name__ == "__main__":
    main()
