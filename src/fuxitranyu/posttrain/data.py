"""Post-training data: chat and preference sets read from files or saved datasets, brought to TRL's conversational
layout, filtered by language and mixed.

    files / saved dataset ─► normalise (errors name file + record) ─► language filter ─► weight / cap ─► mixture

Chat examples become `{"messages": [{role, content}, ...]}`; preference examples become `{"prompt": [turns],
"chosen": [assistant turn], "rejected": [assistant turn]}`, the layouts `SFTTrainer` and `DPOTrainer` read.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fuxitranyu.errors import FuxiError
from fuxitranyu.posttrain.config import DataSet, LanguageFilter

if TYPE_CHECKING:
    from datasets import Dataset

ROLES = {"system": "system", "user": "user", "assistant": "assistant"}
SHAREGPT_ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant"}
PROMPT_COLUMNS = ("prompt", "instruction", "query", "inputs")
RESPONSE_COLUMNS = ("completion", "response", "output", "targets")
UNDETERMINED = "und"
DATA_SUFFIXES = {".jsonl": "json", ".json": "json", ".gz": "json", ".parquet": "parquet"}


class RecordError(ValueError):
    """A record that is not a valid example; the reader adds the file and the record number."""


# ----------------------------------------------------------------------------------------------------------------
# One record -> our layout


def _turns(items: Any, column: str, role_key: str, content_key: str, roles: dict[str, str]) -> list[dict[str, str]]:
    if not isinstance(items, list) or not items:
        raise RecordError(f"`{column}` must be a non-empty list of turns, got {type(items).__name__}")
    turns = []
    for i, turn in enumerate(items):
        if not isinstance(turn, dict) or turn.get(role_key) is None or content_key not in turn:
            raise RecordError(f"{column}[{i}]: expected {{{role_key!r}: ..., {content_key!r}: ...}}, got {turn!r:.80}")
        role = roles.get(turn[role_key])
        if role is None:
            raise RecordError(f"{column}[{i}]: unknown role {turn[role_key]!r}; expected one of "
                              f"{', '.join(dict.fromkeys(roles))}")
        if not isinstance(turn[content_key], str):
            raise RecordError(f"{column}[{i}]: {content_key} must be a string, got {type(turn[content_key]).__name__}")
        turns.append({"role": role, "content": turn[content_key]})
    return turns


def as_turns(value: Any, column: str, role: str) -> list[dict[str, str]]:
    """A string is one turn of `role`; a list is a conversation of {role, content} turns."""
    if isinstance(value, str):
        return [{"role": role, "content": value}]
    return _turns(value, column, "role", "content", ROLES)


def _first_present(record: dict, columns: tuple[str, ...]) -> str | None:
    return next((c for c in columns if record.get(c) not in (None, "")), None)


def to_chat(record: dict) -> list[dict[str, str]]:
    """The conversation of a chat record in any of the layouts `DataSet.path` lists."""
    if record.get("messages") is not None:
        turns = _turns(record["messages"], "messages", "role", "content", ROLES)
    elif record.get("conversations") is not None:
        turns = _turns(record["conversations"], "conversations", "from", "value", SHAREGPT_ROLES)
    else:
        prompt, response = _first_present(record, PROMPT_COLUMNS), _first_present(record, RESPONSE_COLUMNS)
        if prompt is None or response is None:
            present = sorted(k for k, v in record.items() if v is not None)
            raise RecordError(f"expected `messages`, `conversations`, or a prompt column ({', '.join(PROMPT_COLUMNS)}) "
                              f"and a response column ({', '.join(RESPONSE_COLUMNS)}); found {present}")
        turns = as_turns(record[prompt], prompt, "user")
        if prompt == "instruction" and isinstance(record.get("input"), str) and record["input"].strip():
            turns[-1]["content"] += "\n\n" + record["input"]  # Alpaca: the instruction's input
        turns += as_turns(record[response], response, "assistant")
    answers = [t for t in turns if t["role"] == "assistant"]
    if not answers:
        raise RecordError("a conversation without an assistant turn: there is nothing to learn from it")
    if any(not t["content"].strip() for t in answers):
        raise RecordError("an empty assistant turn")
    return turns


def _answer(turns: list[dict[str, str]], column: str) -> dict[str, str]:
    last = turns[-1]
    if last["role"] != "assistant":
        raise RecordError(f"`{column}` must end with an assistant turn, not {last['role']}")
    if not last["content"].strip():
        raise RecordError(f"empty `{column}`")
    return last


def to_preference(record: dict) -> dict[str, list[dict[str, str]]]:
    """`{"prompt", "chosen", "rejected"}` from plain strings or conversations; when `chosen` and `rejected` are whole
    conversations (UltraFeedback-binarized), the turns they share before the answer are the prompt."""
    if record.get("chosen") is None or record.get("rejected") is None:
        raise RecordError("a preference pair needs `chosen` and `rejected` (and `prompt`, unless they are whole "
                          "conversations)")
    chosen = as_turns(record["chosen"], "chosen", "assistant")
    rejected = as_turns(record["rejected"], "rejected", "assistant")
    if chosen[:-1] != rejected[:-1]:
        raise RecordError("`chosen` and `rejected` differ before their last turn: they must answer the same prompt")
    prompt = chosen[:-1]
    if record.get("prompt") not in (None, ""):
        given = as_turns(record["prompt"], "prompt", "user")
        if prompt and given != prompt and given[-1]["content"] != prompt[-1]["content"]:
            raise RecordError("`prompt` is not the conversation that `chosen` and `rejected` answer")
        prompt = prompt or given
    if not prompt:
        raise RecordError("no prompt: give `prompt`, or `chosen`/`rejected` as whole conversations")
    if prompt[-1]["role"] != "user":
        raise RecordError(f"the prompt must end with a user turn, not {prompt[-1]['role']}")
    return {"prompt": prompt, "chosen": [_answer(chosen, "chosen")], "rejected": [_answer(rejected, "rejected")]}


DECLARED_LANGUAGE_COLUMNS = ("language_code", "language")
"""Where a record may declare its language, as a code (`fr`, `pt_BR`, `eng`; Aya's `language_code`). A name such as
Aya's `language: "English"` declares nothing: such records are judged by their text alone."""


def declared_language(record: dict) -> str:
    """The language a record declares (aliases resolved), or "" when it declares none."""
    from fuxitranyu.languages import language_part

    for column in DECLARED_LANGUAGE_COLUMNS:
        value = record.get(column)
        if isinstance(value, str) and (code := language_part(value)):
            return code
    return ""


def produced_text(example: dict) -> str:
    """What the language filter reads: what the model is trained to produce — the assistant's turns, or the chosen
    answer of a preference pair. An instruction often mixes two languages ("Translate into English: ..."); the
    answer is in the one the model learns to write."""
    if "chosen" in example:
        return "\n".join(turn["content"] for turn in example["chosen"])
    turns = example["messages"]
    said = [t["content"] for t in turns if t["role"] == "assistant"] or [t["content"] for t in turns]
    return "\n".join(said)


# ----------------------------------------------------------------------------------------------------------------
# Reading a set


@dataclass(frozen=True)
class SetFile:
    path: Path
    dataset: Dataset
    lines: list[int] | None = None
    """The line of each record in a JSON-lines file, so that errors name the line (None: records are numbered)."""

    def where(self, index: int) -> int | str:
        return self.lines[index] if self.lines is not None else f"record {index + 1}"


def _is_saved_dataset(path: Path) -> bool:
    return path.is_dir() and any((path / name).is_file() for name in
                                 ("dataset_info.json", "state.json", "dataset_dict.json"))


def _load_saved(spec: DataSet, path: Path) -> Dataset:
    import datasets

    try:
        loaded = datasets.load_from_disk(str(path))
    except (OSError, ValueError, FileNotFoundError) as err:
        raise FuxiError(f"not a readable saved dataset ({err})", path=path) from None
    if isinstance(loaded, datasets.DatasetDict):
        if spec.split not in loaded:
            raise FuxiError(f"no split {spec.split!r}; splits: {', '.join(loaded)}", path=path)
        loaded = loaded[spec.split]
    return loaded


def json_record_lines(path: Path) -> list[int] | None:
    """Check a JSON file before `datasets` reads it, whose JSON errors name a row of an Arrow block and whose invalid
    UTF-8 surfaces later as a UnicodeDecodeError: each record must be valid UTF-8 and a JSON object. Returns the line
    of every record of a JSON-lines file (None for a file holding one JSON array)."""
    import orjson

    from fuxitranyu.data.readers import BadRecord, open_lines

    lines, number = [], 0
    try:
        for number, raw in enumerate(open_lines(path), start=1):
            if not lines and raw.lstrip().startswith(b"["):  # one JSON array, not JSON lines
                return _check_json_array(path, orjson)
            line = raw.decode("utf-8")
            if not line.strip():
                continue
            if not isinstance(orjson.loads(line), dict):
                raise FuxiError("expected a JSON object (one record per line)", path=path, record=number)
            lines.append(number)
    except UnicodeDecodeError as err:
        raise FuxiError(f"invalid UTF-8 at byte {err.start} of the line", path=path, record=number) from None
    except orjson.JSONDecodeError as err:
        raise FuxiError(f"malformed JSON ({err})", path=path, record=number) from None
    except BadRecord as bad:  # a truncated or corrupt archive
        raise FuxiError(bad.message, path=path, record=bad.record) from None
    return lines


def _check_json_array(path: Path, orjson) -> None:
    from fuxitranyu.data.readers import open_lines

    raw = b"\n".join(open_lines(path))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise FuxiError(f"invalid UTF-8 at byte {err.start}", path=path, record=raw.count(b"\n", 0, err.start) + 1) \
            from None
    try:
        records = orjson.loads(text)
    except orjson.JSONDecodeError as err:
        raise FuxiError(f"malformed JSON ({err.msg})", path=path, record=f"{err.lineno}:{err.colno}") from None
    bad = next((i for i, record in enumerate(records) if not isinstance(record, dict)), None)
    if bad is not None:
        raise FuxiError("expected a JSON object", path=path, record=f"record {bad + 1}")
    return None


def _load_file(path: Path, cache_dir: Path) -> SetFile:
    import datasets

    builder = DATA_SUFFIXES.get(path.suffix)
    if builder is None:
        raise FuxiError(f"unknown file type: expected {', '.join(DATA_SUFFIXES)}", path=path)
    lines = json_record_lines(path) if builder == "json" else None
    try:
        loaded = datasets.load_dataset(builder, data_files=str(path), split="train", cache_dir=str(cache_dir))
    except Exception as err:  # datasets wraps JSON, Arrow and schema errors in several exception types
        cause = err.__cause__ or err
        raise FuxiError(f"cannot read as {builder}: {type(cause).__name__}: {cause}".strip(), path=path) from None
    return SetFile(path, loaded, lines)


def read_set(spec: DataSet, cache_dir: Path) -> list[SetFile]:
    """The files of a set, each as a Dataset (so that errors name the file), columns renamed."""
    path = Path(spec.path)
    if not path.exists():
        raise FuxiError("no such file or directory (a set is a local file, folder or saved dataset)", path=path)
    if _is_saved_dataset(path):
        parts = [SetFile(path, _load_saved(spec, path))]
    else:
        files = sorted(p for p in path.iterdir() if p.suffix in DATA_SUFFIXES) if path.is_dir() else [path]
        if not files:
            raise FuxiError(f"no {', '.join(DATA_SUFFIXES)} files in this folder", path=path)
        parts = [_load_file(file, cache_dir) for file in files]
    renamed = []
    for part in parts:
        missing = sorted(set(spec.columns) - set(part.dataset.column_names))
        if missing:
            raise FuxiError(f"columns {missing} (from `columns`) are not in the data; it has "
                            f"{part.dataset.column_names}", path=part.path)
        dataset = part.dataset.rename_columns(spec.columns) if spec.columns else part.dataset
        renamed.append(SetFile(part.path, dataset, part.lines))
    return renamed


def normalise(part: SetFile, preference: bool, cache_file: Path) -> Dataset:
    """Every record in our layout; the first bad record stops the run with an error naming its file and number."""
    layout: Callable[[dict], dict] = to_preference if preference else (lambda r: {"messages": to_chat(r)})

    def convert(record: dict) -> dict:
        return {**layout(record), "language": declared_language(record)}

    path = part.path

    def one(record: dict, index: int) -> dict:
        try:
            return convert(record)
        except RecordError as err:
            raise FuxiError(str(err), path=path, record=part.where(index)) from None

    return part.dataset.map(one, with_indices=True, remove_columns=part.dataset.column_names,
                            cache_file_name=str(cache_file), load_from_cache_file=False, desc=f"reading {path.name}")


# ----------------------------------------------------------------------------------------------------------------
# Language filter


@dataclass(frozen=True)
class Identified:
    language: str
    """A supported language code, or what the identifiers named for the others (`sw`, ...), or `und`."""
    kept: bool
    reason: str = ""
    """Why a dropped example was dropped: what each identifier said."""


class ExampleLanguage:
    """The language of what an example teaches the model to produce, by the data stage's identifiers (fastText,
    py3langid's vote); regional varieties count as their macrolanguage (`ary` is `ar`, `wuu` is `zh`)."""

    def __init__(self, recipe: LanguageFilter):
        from fuxitranyu.data.config import LanguageIdSection
        from fuxitranyu.data.filters import LanguageIdentifier

        self.recipe = recipe
        self.allowed = frozenset(recipe.languages)
        self.identifier = LanguageIdentifier(
            LanguageIdSection(min_confidence=recipe.min_confidence, second_vote=recipe.second_vote), self.allowed)

    def __call__(self, text: str, declared: str = "") -> Identified:
        """Kept when fastText places the text in the list with confidence, or (second vote) py3langid does, or the
        example declares a kept language that no confident answer contradicts; a dropped example is counted under
        the language the more confident answer names."""
        from fuxitranyu.languages import supported_code

        if not self.recipe.enabled:
            return Identified(declared or UNDETERMINED, True)
        if declared and declared not in self.allowed:
            return Identified(declared, False, f"declares {declared}, not a kept language")
        raw, score = self.identifier.predict(text)
        code = supported_code(raw) if raw else None
        confident = score >= self.recipe.min_confidence
        if code in self.allowed and (confident or not self.recipe.second_vote):
            return Identified(code, True)
        if declared and not confident:  # too short or mixed to tell: the record's own label stands
            return Identified(declared, True)
        first = f"fastText {code or raw or '?'} {score:.2f}" + ("" if confident else
                                                              f" (below {self.recipe.min_confidence})")
        if not self.recipe.second_vote:
            return Identified(code or raw or UNDETERMINED, False, f"{first}: not a kept language")
        second_raw = self.identifier.second_prediction(text)
        second = supported_code(second_raw)
        if second in self.allowed:
            return Identified(second, True)
        believed = (code or raw) if confident and raw else (second or second_raw)
        return Identified(believed or UNDETERMINED, False,
                          f"{first}, py3langid {second or second_raw}: neither is a kept language")


# ----------------------------------------------------------------------------------------------------------------
# Mixture


@dataclass
class SetReport:
    name: str
    source: str
    weight: float
    max_examples: int | None
    read: int = 0
    kept: Counter = field(default_factory=Counter)
    dropped: Counter = field(default_factory=Counter)
    taken: Counter = field(default_factory=Counter)
    dropped_examples: list[dict[str, Any]] = field(default_factory=list)
    """Each dropped example: its number in the set, the language it was counted under, why, and its start."""

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "weight": self.weight, "max_examples": self.max_examples, "read": self.read,
                "kept": sum(self.kept.values()), "dropped": sum(self.dropped.values()),
                "taken": sum(self.taken.values()), "kept_by_language": dict(sorted(self.kept.items())),
                "dropped_by_language": dict(sorted(self.dropped.items())),
                "taken_by_language": dict(sorted(self.taken.items())), "dropped_examples": self.dropped_examples}


def take_indices(available: int, weight: float, cap: int | None, rng: np.random.Generator) -> np.ndarray:
    """round(weight × available) indices, capped: whole copies of the set for the integer part of the weight, a
    random subset without repetition for the rest."""
    wanted = round(weight * available)
    if cap is not None:
        wanted = min(wanted, cap)
    if available == 0 or wanted == 0:
        return np.zeros(0, dtype=np.int64)
    copies, rest = divmod(wanted, available)
    return np.concatenate([np.tile(np.arange(available), copies), np.sort(rng.permutation(available)[:rest])])


@dataclass
class Mixture:
    dataset: Dataset
    """The examples in TRL's layout, sets one after the other (the trainer shuffles)."""
    reports: list[SetReport]

    HEADER = ("set", "read", "kept", "dropped (language)", "taken", "share", "languages taken (top 6)")

    def stats(self) -> dict[str, Any]:
        total = len(self.dataset)
        return {"examples": total, "sets": {r.name: r.as_dict() for r in self.reports},
                "languages": dict(sorted(sum((r.taken for r in self.reports), Counter()).items()))}

    def rows(self) -> list[list[str]]:
        total = max(len(self.dataset), 1)
        rows = []
        for r in self.reports:
            taken = sum(r.taken.values())
            top = ", ".join(f"{lang} {n}" for lang, n in r.taken.most_common(6))
            rows.append([r.name, str(r.read), str(sum(r.kept.values())), str(sum(r.dropped.values())), str(taken),
                         f"{100 * taken / total:.1f}%", top])
        return rows

    def markdown(self) -> str:
        lines = ["| " + " | ".join(self.HEADER) + " |", "|" + "---|" * len(self.HEADER)]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows()]
        return "\n".join(lines) + "\n"

    def table(self):
        from rich.table import Table

        table = Table(*self.HEADER, title=f"post-training mix: {len(self.dataset)} examples")
        for row in self.rows():
            table.add_row(*row)
        return table


_EXCERPT_CHARS = 80


def _filtered(dataset: Dataset, report: SetReport, language: ExampleLanguage) -> Dataset:
    kept_rows, labels = [], []
    for index, example in enumerate(dataset):
        text = produced_text(example)
        identified = language(text, example.get("language") or "")
        (report.kept if identified.kept else report.dropped)[identified.language] += 1
        if identified.kept:
            kept_rows.append(index)
            labels.append(identified.language)
        else:
            report.dropped_examples.append({"example": index + 1, "language": identified.language,
                                            "reason": identified.reason, "text": text[:_EXCERPT_CHARS]})
    kept = dataset.select(kept_rows)
    if "language" in kept.column_names:
        kept = kept.remove_columns("language")
    return kept.add_column("language", labels)


@dataclass(frozen=True)
class SourceSet:
    """One normalised set of the mixture, with its share."""

    name: str
    source: str
    """Where it came from: a path, or `demo`."""
    dataset: Dataset
    weight: float = 1.0
    max_examples: int | None = None


def read_sets(specs: list[DataSet], preference: bool, cache_dir: Path) -> list[SourceSet]:
    from datasets import concatenate_datasets

    sets = []
    for number, spec in enumerate(specs):
        files = read_set(spec, cache_dir)
        parts = [normalise(f, preference, cache_dir / f"set{number}-{i}.arrow") for i, f in enumerate(files)]
        sets.append(SourceSet(spec.label, spec.path, concatenate_datasets(parts), spec.weight, spec.max_examples))
    return sets


def mix(sets: list[SourceSet], filter_recipe: LanguageFilter, seed: int) -> Mixture:
    """Filter every set by language, take each set's share, concatenate in the order given."""
    from datasets import concatenate_datasets

    language = ExampleLanguage(filter_recipe)
    parts, reports = [], []
    for position, source in enumerate(sets):
        report = SetReport(source.name, source.source, source.weight, source.max_examples, read=len(source.dataset))
        kept = _filtered(source.dataset, report, language)
        rng = np.random.default_rng([seed, position])
        chosen = kept.select(take_indices(len(kept), source.weight, source.max_examples, rng))
        report.taken.update(chosen["language"])
        parts.append(chosen.remove_columns("language"))
        reports.append(report)
    combined = concatenate_datasets(parts)
    if len(combined) == 0:
        dropped = {r.name: r.as_dict()["dropped_by_language"] for r in reports}
        raise FuxiError(f"the mixture is empty: the language filter dropped every example or the weights took none "
                        f"(dropped: {json.dumps(dropped)})")
    return Mixture(combined, reports)
