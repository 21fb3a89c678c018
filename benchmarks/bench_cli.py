"""How fast the command line answers: `--help`, a command's help, a bad argument and a bad recipe key, each a fresh
process, against the floor of any Python command (`python -c pass`) and the cost of `import torch` in the same run.

    python benchmarks/bench_cli.py [--runs 5]

Prints min and median seconds per command and the ratio to `import torch`; the target is <= 1.5 s on a quiet 2-core
machine for every row but the references.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

CLI = shutil.which("fuxitranyu", path=str(Path(sys.executable).parent)) or "fuxitranyu"
COMMANDS = {
    "python -c pass (floor)": [sys.executable, "-c", "pass"],
    "python -c 'import torch' (reference)": [sys.executable, "-c", "import torch"],
    "fuxitranyu --help": [CLI, "--help"],
    "fuxitranyu run --help": [CLI, "run", "--help"],
    "fuxitranyu evaluate m --limit 0 (bad argument)": [CLI, "evaluate", "m", "--limit", "0"],
    "fuxitranyu run tiny --set pretrain.max_lrr=1 (bad key)": [CLI, "run", "tiny", "--set", "pretrain.max_lrr=1"],
}


def seconds(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ})
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.runs):  # rounds take turns, so that a burst of load hits every command alike
        for name, command in COMMANDS.items():
            times[name].append(seconds(command))
    torch_median = statistics.median(times["python -c 'import torch' (reference)"])
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}, {args.runs} runs each\n")
    print("| command | min s | median s | median / import torch |\n|---|---|---|---|")
    for name, values in times.items():
        print(f"| {name} | {min(values):.2f} | {statistics.median(values):.2f} | "
              f"{statistics.median(values) / torch_median:.2f} |")


if __name__ == "__main__":
    main()
