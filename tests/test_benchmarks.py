"""The benchmark scripts run: the GPU benchmark's path (a preset, FSDP2 on a mesh of one, activation checkpointing
off and on) checked on a CPU with a tiny preset, so that it is ready when a GPU is at hand."""

import json
import os
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).parent.parent / "benchmarks"


def test_the_gpu_benchmark_path_runs_on_a_cpu_with_a_tiny_preset():
    result = subprocess.run([sys.executable, str(BENCHMARKS / "bench_pretrain.py"), "--device", "cpu", "--preset",
                             "tiny", "--micro-batch", "2", "--context", "64", "--steps", "2", "--warmup", "1"],
                            capture_output=True, text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads(result.stdout.strip().splitlines()[-1])
    assert [row["activation_checkpointing"] for row in rows] == [False, True]
    assert all(row["tokens_per_s"] > 0 and 0 < row["mfu"] < 1 for row in rows)
    assert "FSDP2 on one device" in result.stdout
