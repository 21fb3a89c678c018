"""Running a phase of the data stage on a datatrove executor: local processes, Slurm or Ray.

Three things datatrove leaves to us: its per-task logs (and a full traceback for every failure) go to the terminal,
which a user of `fuxitranyu run` should not have to read; the error a task raises must reach the caller whole (our
errors pickle, see `fuxitranyu.errors`); and pool workers must not outlive a killed run.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import multiprocess
from datatrove.executor import LocalPipelineExecutor, RayPipelineExecutor, SlurmPipelineExecutor
from loguru import logger

from fuxitranyu.data.config import DataSection, RayExecution
from fuxitranyu.errors import FuxiError, error_as_dict, error_from_dict

EXECUTOR_LOG = "executor.log"


def _die_with_parent() -> None:
    """Linux: have the kernel kill this process when its parent dies (a `kill -9` of the run leaves no workers)."""
    if sys.platform.startswith("linux"):
        PR_SET_PDEATHSIG = 1
        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except OSError:
            pass


def _manager_that_dies_with_its_parent():
    from multiprocess.managers import SyncManager

    manager = SyncManager(ctx=multiprocess.get_context())
    manager.start(_die_with_parent)
    return manager


class FileSink:
    """A loguru sink appending to a file that never raises: when the disk is full, losing a log line is better than
    burying the real error under loguru's own tracebacks."""

    def __init__(self, path: Path):
        self.path = path

    def write(self, message: str) -> None:
        try:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(message)
        except OSError:
            pass


class LocalExecutor(LocalPipelineExecutor):
    """datatrove's local executor whose tasks write their console output to `logs/console/<rank>.log` (unless
    verbose) and die with the run."""

    def __init__(self, *args, verbose: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.verbose = verbose

    def run(self):
        # datatrove's run() starts a multiprocess Manager (a server process for the task queue) that would outlive a
        # killed run; ours dies with its parent.
        original = multiprocess.Manager
        multiprocess.Manager = _manager_that_dies_with_its_parent
        try:
            return super().run()
        finally:
            multiprocess.Manager = original

    def _run_for_rank(self, rank: int, local_rank: int = 0, node_rank: int = -1):
        if self.workers > 1:
            _die_with_parent()
        if self.verbose:
            return super()._run_for_rank(rank, local_rank, node_rank)
        console = Path(self.logging_dir.path) / "console" / f"{rank:05d}.log"
        console.parent.mkdir(parents=True, exist_ok=True)
        terminal = sys.stderr
        with open(console, "a", encoding="utf-8") as log:
            sys.stderr = log  # datatrove adds `sys.stderr` as a log sink when a task starts
            try:
                return super()._run_for_rank(rank, local_rank, node_rank)
            finally:
                sys.stderr = terminal
                logger.remove()  # drop the sinks pointing at the closed file; back to the executor's log
                logger.add(FileSink(Path(self.logging_dir.path) / EXECUTOR_LOG), level="DEBUG")


@contextmanager
def executor_logs(logging_dir: Path, verbose: bool):
    """The executor's own messages (task counts, merged stats) go to `logging_dir/executor.log` unless verbose;
    afterwards only warnings reach the terminal."""
    if verbose:
        yield
        return
    logging_dir.mkdir(parents=True, exist_ok=True)
    logger.remove()
    logger.add(FileSink(logging_dir / EXECUTOR_LOG), level="DEBUG")
    try:
        yield
    finally:
        logger.remove()
        logger.add(sys.stderr, level="WARNING")


def preload_in_workers() -> None:
    """datatrove starts its local workers from a fork server, and every worker unpickles our steps, which imports
    fuxitranyu (and through it torch and transformers: seconds per process, for every phase). Importing the data
    package once in the fork server makes every worker forked from it start with the modules loaded."""
    multiprocess.set_forkserver_preload(["fuxitranyu.data.stage"])


ERRORS = "errors"
"""`<logging dir>/errors/<rank>.json`: the error a task raised, for executors that do not return it (Ray, Slurm). JSON,
not pickle: the driver reads it back from a shared folder and must not run what it finds there."""


def record_task_error(executor, rank: int, error: BaseException) -> None:
    """Keep a task's error beside its logs, so the stage can raise it whole in the driver."""
    if isinstance(error, FuxiError):
        with executor.logging_dir.open(f"{ERRORS}/{rank:05d}.json", "w") as f:
            json.dump(error_as_dict(error), f)


def raise_task_errors(logging_dir: Path, executor) -> None:
    """After a phase on Ray or Slurm: the first recorded task error, else a clear error for tasks that did not
    complete."""
    for path in sorted((logging_dir / ERRORS).glob("*.json")):
        try:
            recorded = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise FuxiError(f"a task failed and its error record is unreadable ({err})", path=path) from None
        raise error_from_dict(recorded)
    incomplete = executor.get_incomplete_ranks(range(executor.world_size))
    if incomplete:
        raise FuxiError(f"{len(incomplete)} of {executor.world_size} tasks did not complete (tasks "
                        f"{', '.join(map(str, incomplete[:10]))}); their logs are in {logging_dir / 'logs'}",
                        path=logging_dir)


class RecordsTaskErrors:
    """Mixed into a remote executor: a task that fails writes its error where the stage reads it (`raise_task_errors`),
    since Ray logs a task's exception and goes on, and a Slurm task's exception stays on its node."""

    def _run_for_rank(self, rank: int, local_rank: int = 0, node_rank: int = -1):
        try:
            return super()._run_for_rank(rank, local_rank, node_rank)
        except Exception as error:
            record_task_error(self, rank, error)
            raise


class RayExecutor(RecordsTaskErrors, RayPipelineExecutor):
    """datatrove's Ray executor, whose tasks record their error."""


class SlurmExecutor(RecordsTaskErrors, SlurmPipelineExecutor):
    """datatrove's Slurm executor, whose tasks record their error, and whose launch the stage waits on."""


@contextmanager
def executor_session(recipe: DataSection, verbose: bool):
    """What the executor needs for the whole stage: for Ray, a connection to the recipe's cluster, or a local
    instance started for the duration (and stopped); nothing for the others."""
    if recipe.executor != "ray":
        yield
        return
    import ray

    if ray.is_initialized():
        yield
        return
    settings: RayExecution = recipe.ray
    address = settings.address or os.environ.get("RAY_ADDRESS")
    ray.init(address=address, log_to_driver=verbose, include_dashboard=False, configure_logging=verbose,
             runtime_env={"env_vars": {"HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "0")}})
    try:
        yield
    finally:
        ray.shutdown()


def wait_for_slurm(executor: SlurmExecutor, poll_seconds: int) -> None:
    """Block until the submitted array job has finished: every task complete, or the job gone from the queue."""
    import subprocess

    while executor.get_incomplete_ranks(range(executor.world_size)):
        queued = subprocess.run(["squeue", "--noheader", "--job", str(executor.job_id)], capture_output=True,
                                text=True)
        if queued.returncode != 0 or not queued.stdout.strip():
            return  # finished or failed; raise_task_errors says which
        time.sleep(poll_seconds)


def make_executor(pipeline: list, recipe: DataSection, logging_dir: Path, verbose: bool = False):
    """A datatrove executor for one phase; `local` runs `workers` processes over `tasks` shards here."""
    if recipe.executor == "local":
        workers = min(recipe.workers, recipe.tasks)
        if workers > 1:
            preload_in_workers()
        return LocalExecutor(pipeline, tasks=recipe.tasks, workers=workers, logging_dir=str(logging_dir),
                             verbose=verbose)
    if recipe.executor == "slurm":
        slurm = recipe.slurm
        return SlurmExecutor(pipeline, tasks=recipe.tasks, workers=recipe.workers, logging_dir=str(logging_dir),
                             time=slurm.time, partition=slurm.partition, cpus_per_task=slurm.cpus_per_task,
                             mem_per_cpu_gb=slurm.mem_per_cpu_gb, qos=slurm.qos, venv_path=slurm.venv_path,
                             sbatch_args=slurm.sbatch_args or None, job_name=f"fuxitranyu-{logging_dir.name}")
    ray = recipe.ray
    return RayExecutor(pipeline, tasks=recipe.tasks, workers=recipe.workers, logging_dir=str(logging_dir),
                       cpus_per_task=ray.cpus_per_task, mem_per_cpu_gb=ray.mem_per_cpu_gb)


def run_phase(pipeline: list, recipe: DataSection, logging_dir: Path, verbose: bool = False) -> None:
    """Run one phase to completion (inside `executor_session`); the first task that fails stops it (on Ray and Slurm:
    when the phase ends) and
    its error is raised here, whole, whatever the executor."""
    with executor_logs(logging_dir, verbose):
        executor = make_executor(pipeline, recipe, logging_dir, verbose)
        executor.run()
        if recipe.executor == "slurm":
            wait_for_slurm(executor, recipe.slurm.poll_seconds)
        if recipe.executor != "local":
            raise_task_errors(logging_dir, executor)
