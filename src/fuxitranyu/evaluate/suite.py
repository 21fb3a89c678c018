"""Suites: which lm-eval tasks make up an evaluation, with their few-shot counts, metrics and languages, as data.

A suite YAML lists benchmarks; each benchmark maps languages to task paths `<root>/<folder>/<task name>`, where the
root `lm_eval` is the installed lm-evaluation-harness's task folder and `fuxitranyu` is ours. Naming the folder lets a
run index only the folders it needs (lm-eval's full index of ~15k tasks takes 15-40 s to build); a test checks every
path against lm-eval's own full index.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

from fuxitranyu.errors import FuxiError

PARALLEL = "parallel"
"""`languages: parallel`: every language of the held-out parallel sets."""
PARALLEL_TARGETS = "parallel-targets"
"""`languages: parallel-targets`: every language of the parallel sets but the translation source (English)."""
SOURCE_LANGUAGE = "en"
"""The offline translation tasks translate from English, the language gettext catalogs are written in."""
ROOTS = ("lm_eval", "fuxitranyu")
OFFLINE_TASKS = "fuxitranyu/parallel/"
"""Where the offline tasks are: their data are cut from the held-out parallel sets."""


def lm_eval_tasks_dir() -> Path:
    """lm-eval's task folder, found without importing lm-eval (a slow import)."""
    spec = importlib.util.find_spec("lm_eval")
    if spec is None or not spec.submodule_search_locations:
        raise FuxiError("lm-evaluation-harness is not installed: pip install 'fuxitranyu[evaluate]'")
    return Path(list(spec.submodule_search_locations)[0]) / "tasks"


def our_tasks_dir() -> Path:
    return Path(str(resources.files("fuxitranyu.evaluate") / "tasks"))


@dataclass(frozen=True)
class SuiteTask:
    benchmark: str
    language: str
    """A language code, or a translation direction such as `en-fr`."""
    task: str
    """lm-eval task name."""
    folder: Path
    """The folder whose YAML files define the task."""
    shots: int
    metrics: tuple[str, ...]
    """lm-eval metric names, the benchmark's main metric first."""


@dataclass(frozen=True)
class Benchmark:
    name: str
    shots: int
    metrics: tuple[str, ...]
    languages: tuple[str, ...] | str
    """Languages in table order, or `parallel` / `parallel-targets`."""
    task: str | None
    """Task path pattern with `{language}`."""
    exceptions: dict[str, str]
    """Language -> task path, where the pattern does not apply."""

    def tasks(self, data_languages: dict[str, tuple[str, ...]] | None = None) -> list[SuiteTask]:
        """The benchmark's tasks; `data_languages` gives the languages of `parallel` and `parallel-targets` (those
        the offline data holds)."""
        if isinstance(self.languages, str):
            languages = (data_languages or {}).get(self.languages, ())
        else:
            languages = self.languages
        found = []
        for language in languages:
            path = self.exceptions.get(language) or (self.task or "").format(language=language)
            folder, name = resolve_task_path(path, self.name)
            found.append(SuiteTask(self.name, language, name, folder, self.shots, self.metrics))
        return found


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    benchmarks: tuple[Benchmark, ...]

    def tasks(self, data_languages: dict[str, tuple[str, ...]] | None = None) -> list[SuiteTask]:
        return [task for benchmark in self.benchmarks for task in benchmark.tasks(data_languages)]

    @property
    def needs_parallel(self) -> bool:
        """Whether a task reads the offline data (cut from the held-out parallel sets)."""
        paths = [path for b in self.benchmarks for path in (b.task or "", *b.exceptions.values())]
        return any(path.startswith(OFFLINE_TASKS) for path in paths)

    def benchmark(self, name: str) -> Benchmark:
        return next(b for b in self.benchmarks if b.name == name)


def resolve_task_path(path: str, benchmark: str) -> tuple[Path, str]:
    """`lm_eval/okapi/arc_multilingual/arc_ar` -> (lm-eval's okapi/arc_multilingual folder, `arc_ar`)."""
    root, _, rest = path.partition("/")
    folder, _, name = rest.rpartition("/")
    if root not in ROOTS or not folder or not name:
        raise FuxiError(f"benchmark {benchmark}: task path {path!r} must look like lm_eval/<folder>/<task> or "
                        f"fuxitranyu/<folder>/<task>")
    return (lm_eval_tasks_dir() if root == "lm_eval" else our_tasks_dir()) / folder, name


def shipped_suites() -> list[str]:
    folder = resources.files("fuxitranyu.evaluate") / "suites"
    return sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))


def _read_suite_file(name_or_path: str | Path) -> tuple[str, dict]:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        text, name = path.read_text(encoding="utf-8"), path.stem
    elif str(name_or_path) in shipped_suites():
        name = str(name_or_path)
        text = (resources.files("fuxitranyu.evaluate") / "suites" / f"{name}.yaml").read_text(encoding="utf-8")
    else:
        raise FuxiError(f"no suite {str(name_or_path)!r}: give a suite YAML file or one of "
                        f"{', '.join(shipped_suites())}")
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise FuxiError(f"suite {name}: not valid YAML ({err})", path=path if path.is_file() else None) from None
    if not isinstance(raw, dict) or not isinstance(raw.get("benchmarks"), list):
        raise FuxiError(f"suite {name}: expected a mapping with a `benchmarks` list")
    return name, raw


def _benchmark(raw: dict, suite: str) -> Benchmark:
    known = {"name", "shots", "metrics", "languages", "task", "except"}
    unknown = set(raw) - known
    if unknown or "name" not in raw:
        raise FuxiError(f"suite {suite}: a benchmark needs `name` and may have {', '.join(sorted(known))}; got "
                        f"{', '.join(sorted(raw))}")
    languages = raw.get("languages")
    exceptions = {str(k): str(v) for k, v in (raw.get("except") or {}).items()}
    from_data = languages in (PARALLEL, PARALLEL_TARGETS)
    if not from_data and not (isinstance(languages, list) and languages):
        raise FuxiError(f"suite {suite}, benchmark {raw['name']}: `languages` must be a list, `{PARALLEL}` or "
                        f"`{PARALLEL_TARGETS}`")
    if raw.get("task") is None and (from_data or set(languages) - set(exceptions)):
        raise FuxiError(f"suite {suite}, benchmark {raw['name']}: give a `task` pattern or a task per language")
    metrics = raw.get("metrics") or []
    if not metrics:
        raise FuxiError(f"suite {suite}, benchmark {raw['name']}: list its `metrics`, the main one first")
    return Benchmark(str(raw["name"]), int(raw.get("shots", 0)), tuple(map(str, metrics)),
                     languages if from_data else tuple(map(str, languages)), raw.get("task"), exceptions)


def load_suite(name_or_path: str | Path) -> Suite:
    """A shipped suite by name (`local`, `paper-base`, `paper-chat`) or a suite YAML file; `extends:` prepends the
    benchmarks of another suite."""
    name, raw = _read_suite_file(name_or_path)
    benchmarks: list[Benchmark] = []
    if raw.get("extends"):
        benchmarks.extend(load_suite(raw["extends"]).benchmarks)
    benchmarks.extend(_benchmark(item, name) for item in raw["benchmarks"])
    names = [b.name for b in benchmarks]
    if len(set(names)) != len(names):
        raise FuxiError(f"suite {name}: a benchmark name appears twice: {names}")
    return Suite(name, str(raw.get("description", "")), tuple(benchmarks))
