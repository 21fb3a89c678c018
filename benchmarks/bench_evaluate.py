"""The offline suite through fuxitranyu's path vs `lm_eval.simple_evaluate` called directly on the same tasks, same
model, same data, same batch size, in one process (lm-eval imported once before both); setup and evaluation timed
apart.

    python benchmarks/bench_evaluate.py [--run runs/tiny] [--units 8] [--translation-units 3] [--rounds 3]

ours:     fuxitranyu.evaluate.run.prepare (offline data, data check, per-task files, an index of those files only)
          + evaluate_model (one simple_evaluate call over every task)
baseline: TaskManager(include_defaults=False, include_path=<the same task files>) — what a user who knows lm-eval
          writes to index only their own tasks — then simple_evaluate(model="hf", model_args={pretrained, dtype,
          device}, tasks=<the same names>, task_manager=...)
Setup is ours: prepare (which also writes the offline data and task files); baseline: building its TaskManager.
Evaluation is the simple_evaluate call (model load included) in both. Rounds alternate which goes first (warm file
caches favour the second); minima and medians over rounds are both reported.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def machine() -> str:
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    name = next((line.split(":", 1)[1].strip() for line in cpu.splitlines() if line.startswith("Model name")), "?")
    return f"{name}, {os.cpu_count()} CPUs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, default=Path("runs/tiny"), help="a finished run (data/, pretrain/model)")
    parser.add_argument("--units", type=int, default=8)
    parser.add_argument("--translation-units", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import lm_eval
    from lm_eval.tasks import TaskManager

    import fuxitranyu  # noqa: F401
    from fuxitranyu.data.parallel import read_parallel
    from fuxitranyu.evaluate.config import OfflineTasks
    from fuxitranyu.evaluate.harness import ModelToEvaluate, Settings, evaluate_model, model_arguments
    from fuxitranyu.evaluate.run import prepare
    from fuxitranyu.evaluate.suite import load_suite

    model = ModelToEvaluate("pretrain", str(args.run / "pretrain" / "model"))
    units = read_parallel([args.run / "data" / "parallel"]).units
    settings = Settings(batch_size=args.batch_size, max_new_tokens=24, bootstrap_iters=100, seed=1)
    offline = OfflineTasks(units_per_language=args.units, translation_units=args.translation_units, max_bytes=120)
    plain_arguments = {k: v for k, v in model_arguments(model, settings).items()
                       if k in ("pretrained", "dtype", "device")}  # as a user would write them
    timings: dict[str, list[float]] = {f"{who} {part}": [] for who in ("ours", "baseline")
                                       for part in ("setup", "evaluation")}
    print(f"machine: {machine()}, load average {os.getloadavg()[0]:.2f} at the start", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        # the baseline's task files (same tasks, same data) come from a preparation outside its timing
        reference = prepare(load_suite("local"), Path(tmp) / "reference", None, units, offline, seed=1)
        names = [t.spec.task for t in reference.tasks.tasks]

        def ours():
            started = time.perf_counter()
            evaluation = prepare(load_suite("local"), Path(tmp) / "ours", None, units, offline, seed=1)
            ready = time.perf_counter()
            result = evaluate_model(model, evaluation.tasks, settings)
            timings["ours setup"].append(ready - started)
            timings["ours evaluation"].append(time.perf_counter() - ready)
            return result

        def baseline():
            started = time.perf_counter()
            task_manager = TaskManager(include_defaults=False, include_path=str(reference.tasks.folder))
            ready = time.perf_counter()
            output = lm_eval.simple_evaluate(
                model="hf", model_args=plain_arguments, tasks=names, task_manager=task_manager,
                batch_size=args.batch_size,
                bootstrap_iters=100, gen_kwargs={"max_gen_toks": 24}, random_seed=1, numpy_random_seed=1,
                torch_random_seed=1, fewshot_random_seed=1)
            timings["baseline setup"].append(ready - started)
            timings["baseline evaluation"].append(time.perf_counter() - ready)
            return output

        for round_ in range(args.rounds):
            if round_ % 2:
                output, result = baseline(), ours()
            else:
                result, output = ours(), baseline()
            print(f"round {round_ + 1}: " + ", ".join(f"{key} {values[-1]:.2f} s" for key, values in timings.items()),
                  file=sys.stderr)
    examples = sum(int(n["effective"]) for n in output["n-samples"].values())
    assert examples == result.examples, (examples, result.examples)
    same = all(abs(output["results"][r.task][f"{r.metric},none"] - r.value) < 1e-9 for r in result.rows)
    print(f"load average {os.getloadavg()[0]:.2f} at the end", file=sys.stderr)
    print(f"tasks: {len(names)}, examples: {examples}, identical numbers: {same}")
    print("| | setup, min | setup, median | evaluation, min | evaluation, median | examples/s (median) |")
    print("|---|---:|---:|---:|---:|---:|")
    for who in ("ours", "baseline"):
        setup, evaluation = timings[f"{who} setup"], timings[f"{who} evaluation"]
        print(f"| {who} | {min(setup):.2f} s | {statistics.median(setup):.2f} s | {min(evaluation):.1f} s | "
              f"{statistics.median(evaluation):.1f} s | {examples / statistics.median(evaluation):.1f} |")
    for part in ("setup", "evaluation"):
        ours_, theirs = timings[f"ours {part}"], timings[f"baseline {part}"]
        print(f"{part}: baseline / ours {min(theirs) / min(ours_):.2f}x (minima), "
              f"{statistics.median(theirs) / statistics.median(ours_):.2f}x (medians)")


if __name__ == "__main__":
    main()
