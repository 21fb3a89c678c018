"""Examples/s of the offline suite through fuxitranyu's path vs `lm_eval.simple_evaluate` called directly on the same
tasks, same model, same data, same batch size, in one process (lm-eval imported once before both).

    python benchmarks/bench_evaluate.py [--run runs/tiny] [--units 12] [--translation-units 4]

ours:     fuxitranyu.evaluate.run.prepare (offline data, data check, per-task files, an index of those files only)
          + evaluate_model (one simple_evaluate call over every task; hf backend told the model is causal and to
          skip the KV cache in scoring passes)
baseline: simple_evaluate(model="hf", model_args={pretrained, dtype, device}, tasks=<the same names>,
          task_manager=TaskManager(include_path=<the same task files>)): lm-eval's default TaskManager, which also
          indexes its ~15k built-in tasks
Both time everything from "here are the tasks" to "here are the numbers", model load included.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, default=Path("runs/tiny"), help="a finished run (data/, pretrain/model)")
    parser.add_argument("--units", type=int, default=12)
    parser.add_argument("--translation-units", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--baseline-first", action="store_true", help="run the baseline before ours (warm caches "
                        "then favour ours; by default they favour the baseline)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import lm_eval
    from lm_eval.tasks import TaskManager

    import fuxitranyu  # noqa: F401
    from fuxitranyu.evaluate.config import OfflineTasks
    from fuxitranyu.evaluate.harness import ModelToEvaluate, Settings, evaluate_model, model_arguments
    from fuxitranyu.evaluate.run import prepare
    from fuxitranyu.evaluate.suite import load_suite
    from fuxitranyu.tokenizer.fertility import read_parallel

    model = ModelToEvaluate("pretrain", str(args.run / "pretrain" / "model"))
    units = read_parallel([args.run / "data" / "parallel"]).units
    settings = Settings(batch_size=args.batch_size, max_new_tokens=24, bootstrap_iters=100, seed=1)
    offline = OfflineTasks(units_per_language=args.units, translation_units=args.translation_units, max_bytes=120)
    parser_order = args.baseline_first
    with tempfile.TemporaryDirectory() as tmp:
        timings: dict[str, float] = {}

        def run_ours():
            started = time.perf_counter()
            evaluation = prepare(load_suite("local"), Path(tmp) / "ours", None, units, offline, seed=1)
            result = evaluate_model(model, evaluation.tasks, settings)
            timings["ours"] = time.perf_counter() - started
            return evaluation, result

        def run_baseline(task_folder: Path, names: list[str]):
            started = time.perf_counter()
            output = lm_eval.simple_evaluate(
                model="hf", model_args=plain_arguments,
                tasks=names, task_manager=TaskManager(include_path=str(task_folder)), batch_size=args.batch_size,
                bootstrap_iters=100, gen_kwargs={"max_gen_toks": 24}, random_seed=1, numpy_random_seed=1,
                torch_random_seed=1, fewshot_random_seed=1)
            timings["baseline"] = time.perf_counter() - started
            return output

        plain_arguments = {k: v for k, v in model_arguments(model, settings).items()
                           if k in ("pretrained", "dtype", "device")}  # as a user would write them
        # the task files (same tasks, same data) for the baseline come from a preparation outside its timing
        reference = prepare(load_suite("local"), Path(tmp) / "reference", None, units, offline, seed=1)
        names = [t.spec.task for t in reference.tasks.tasks]
        if parser_order:
            output = run_baseline(reference.tasks.folder, names)
            evaluation, ours = run_ours()
        else:
            evaluation, ours = run_ours()
            output = run_baseline(reference.tasks.folder, names)
        ours_seconds, baseline_seconds = timings["ours"], timings["baseline"]
    examples = sum(int(n["effective"]) for n in output["n-samples"].values())
    assert examples == ours.examples, (examples, ours.examples)
    same = all(abs(output["results"][r.task][f"{r.metric},none"] - r.value) < 1e-9 for r in ours.rows)
    load = os.getloadavg()[0]
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model_name = next((line.split(":", 1)[1].strip() for line in cpu.splitlines() if line.startswith("Model name")), "?")
    print(f"machine: {model_name}, {os.cpu_count()} CPUs, load average {load:.2f} at the end", file=sys.stderr)
    print(f"tasks: {len(names)}, examples: {examples}, identical numbers: {same}")
    print(f"ours:     {ours_seconds:7.1f} s  {examples / ours_seconds:7.1f} examples/s")
    print(f"baseline: {baseline_seconds:7.1f} s  {examples / baseline_seconds:7.1f} examples/s")
    print(f"ratio ours / baseline (examples/s): {baseline_seconds / ours_seconds:.2f}x")


if __name__ == "__main__":
    main()
