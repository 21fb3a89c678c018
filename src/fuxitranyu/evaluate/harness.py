"""One model through lm-evaluation-harness: `simple_evaluate` owns the loop; we give it the model, the suite's tasks
(from the task files `tasks_ready` wrote, indexed once), the dtype and the prompt format.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fuxitranyu.evaluate.config import EvaluateSection
from fuxitranyu.evaluate.results import ModelResults, generations, rows_from_lm_eval, task_hashes
from fuxitranyu.evaluate.suite import SuiteTask
from fuxitranyu.evaluate.tasks_ready import ReadyTask, hub_closed
from fuxitranyu.logs import library_prints
from fuxitranyu.runtime import choose_precision, default_device

DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


@dataclass(frozen=True)
class ModelToEvaluate:
    name: str
    path: str
    """A model directory (or whatever the backend's `pretrained` accepts)."""
    chat: bool = False
    """Prompt through the tokenizer's chat template (few-shot examples as turns)."""
    tokenizer: str | None = None
    """Where the tokenizer is, when not beside the weights (pretraining checkpoints)."""


@dataclass(frozen=True)
class Settings:
    backend: str = "hf"
    model_args: dict[str, Any] | None = None
    precision: str = "auto"
    batch_size: int = 16
    limit: int | None = None
    bootstrap_iters: int = 1000
    max_new_tokens: int = 256
    seed: int = 1234

    @classmethod
    def from_recipe(cls, section: EvaluateSection, seed: int) -> Settings:
        return cls(section.backend, dict(section.model_args), section.precision, section.batch_size, section.limit,
                   section.bootstrap_iters, section.max_new_tokens, seed)


@dataclass
class TaskSet:
    """The suite's tasks, ready to run, and lm-eval's index of their task files (built once, used for every model)."""

    tasks: list[ReadyTask]
    folder: Path
    task_manager: Any

    @property
    def specs(self) -> list[SuiteTask]:
        return [task.spec for task in self.tasks]


def task_set(tasks: list[ReadyTask], folder: Path) -> TaskSet:
    from lm_eval.tasks import TaskManager

    return TaskSet(tasks, folder, TaskManager(include_defaults=False, include_path=str(folder)))


@contextmanager
def quiet_libraries() -> Iterator[None]:
    """lm-eval's per-request warnings (context truncation) and INFO logging stay out of the log; its progress bars
    and prints go where library output goes (`logs.library_prints`: the run log), not to the terminal, whose one
    display is the stage's; and it does not ask git for the commit of the working directory (it would print git's
    "fatal: not a git repository" there, for a hash that says nothing about the evaluated model)."""
    import lm_eval.evaluator

    logger = logging.getLogger("lm_eval")
    level, commit_hash = logger.level, lm_eval.evaluator.get_git_commit_hash
    logger.setLevel(logging.ERROR)
    lm_eval.evaluator.get_git_commit_hash = lambda: None
    try:
        with library_prints():
            yield
    finally:
        logger.setLevel(level)
        lm_eval.evaluator.get_git_commit_hash = commit_hash


def model_arguments(model: ModelToEvaluate, settings: Settings) -> dict[str, Any]:
    """The backend's model arguments: the weights, their dtype (`choose_precision`), the device, the tokenizer.

    For `hf`: a causal LM (lm-eval would otherwise guess, with a warning, from a list of model types that cannot know
    ours)."""
    device = default_device()
    precision = choose_precision(settings.precision, device)
    arguments: dict[str, Any] = {"pretrained": model.path, "dtype": DTYPES[precision.name], "device": str(device)}
    if model.tokenizer:
        arguments["tokenizer"] = model.tokenizer
    if settings.backend == "hf":
        arguments["backend"] = "causal"
    return {**arguments, **(settings.model_args or {})}


def evaluate_model(model: ModelToEvaluate, prepared: TaskSet, settings: Settings) -> ModelResults:
    """Every task of `prepared` on `model`, in one `simple_evaluate` call (one model load, lm-eval batches across
    tasks)."""
    import lm_eval

    import fuxitranyu  # noqa: F401  registers our model type with transformers' Auto classes

    started = time.perf_counter()
    arguments = model_arguments(model, settings)
    with hub_closed(), quiet_libraries():
        output = lm_eval.simple_evaluate(
            model=settings.backend, model_args=arguments,
            tasks=[task.spec.task for task in prepared.tasks], task_manager=prepared.task_manager,
            batch_size=settings.batch_size, limit=settings.limit, bootstrap_iters=settings.bootstrap_iters,
            gen_kwargs={"max_gen_toks": settings.max_new_tokens}, apply_chat_template=model.chat,
            fewshot_as_multiturn=model.chat, log_samples=True, random_seed=settings.seed,
            numpy_random_seed=settings.seed, torch_random_seed=settings.seed, fewshot_random_seed=settings.seed)
    rows = rows_from_lm_eval(output, prepared.specs, model.name)
    return ModelResults(model.name, model.path, model.chat, rows, task_hashes(output),
                        dict(output.get("versions", {})), time.perf_counter() - started,
                        sum(int(n.get("effective", 0)) for n in output.get("n-samples", {}).values()),
                        generations(output), arguments)
