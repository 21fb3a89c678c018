"""The tokenizer's training sample: up to N documents per language, read in two streaming passes.

Pass 1 counts the documents of every language. The sample plan then fixes how many documents of each language are
kept and, with the recipe's seed, which ones (by their position in the language's stream). Pass 2 streams exactly
those texts to the BPE trainer. Memory holds one byte per document of a language whose documents are not all kept,
never the documents themselves, so the paper's 1M documents per language fit on a small machine.

Inputs are the data stage's `clean/<label>/*.jsonl.gz` or any JSONL (.jsonl, .jsonl.gz, .jsonl.zst) with a `text`
field and a language field (`language` or `metadata.language`), and directories of `.txt` files (one document
each). A file inside a folder named by a language label (`fr/`, `code-python/`) needs no language field.
"""

from __future__ import annotations

import json
import math
import sys
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np
from rich.progress import track

from fuxitranyu.data.readers import open_lines
from fuxitranyu.errors import FuxiError
from fuxitranyu.languages import label_or_none

JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".jsonl.zst")
TEXT_SUFFIX = ".txt"


@cache
@dataclass(frozen=True)
class CorpusFile:
    path: Path
    folder_language: str | None
    """The label of the nearest folder (up to the input given) named by a language; records may override it."""


def corpus_files(inputs: Sequence[str | Path]) -> list[CorpusFile]:
    """The training files under `inputs` (files or directories, searched recursively), in a fixed order."""
    found = []
    for item in inputs:
        root = Path(item)
        if root.is_file():
            if not root.name.endswith((*JSONL_SUFFIXES, TEXT_SUFFIX)):
                raise FuxiError(f"not a training input: expected one of {', '.join(JSONL_SUFFIXES)}, {TEXT_SUFFIX}",
                                path=root)
            found.append(CorpusFile(root, label_or_none(root.parent.name)))
        elif root.is_dir():
            suffixes = (*JSONL_SUFFIXES, TEXT_SUFFIX)
            for path in sorted(p for p in root.rglob("*") if p.is_file() and p.name.endswith(suffixes)):
                folders = path.relative_to(root).parent.parts[::-1] + (root.name,)
                language = next((lab for lab in map(label_or_none, folders) if lab is not None), None)
                found.append(CorpusFile(path, language))
        else:
            raise FuxiError("no such file or directory", path=root)
    return found


def _record_language(record: dict) -> str | None:
    value = record.get("language")
    if value is None and isinstance(record.get("metadata"), dict):
        value = record["metadata"].get("language")
    return None if value in (None, "") else str(value)


def _jsonl_documents(file: CorpusFile) -> Iterator[tuple[str, str]]:
    # open_lines raises a FuxiError naming the file and line for a truncated or corrupt .gz/.zst
    for number, line in enumerate(open_lines(file.path), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise FuxiError(f"not a JSON line ({err})", path=file.path, record=number) from None
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise FuxiError('expected a JSON object with a string field "text"', path=file.path, record=number)
        declared = _record_language(record)
        language = label_or_none(declared) if declared is not None else file.folder_language
        if language is None:
            raise FuxiError(
                f"unknown language {declared!r}" if declared is not None else
                'no language: expected a "language" or "metadata.language" field, or the file in a '
                "folder named by its language (fr/, code-python/)", path=file.path, record=number)
        if record["text"].strip():
            yield language, record["text"]


def documents(file: CorpusFile) -> Iterator[tuple[str, str]]:
    """(language label, text) of every non-empty document of one file."""
    if not file.path.name.endswith(TEXT_SUFFIX):
        yield from _jsonl_documents(file)
        return
    if file.folder_language is None:
        raise FuxiError("cannot tell the language of a .txt file: put it in a folder named by its language "
                        "(fr/, code-python/)", path=file.path)
    try:
        text = file.path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise FuxiError(f"not UTF-8 text (byte {err.start})", path=file.path) from None
    if text.strip():
        yield file.folder_language, text


def sample_sizes(available: dict[str, int], cap: int, sampling: str) -> dict[str, int]:
    """Documents to draw per language. `balanced`: min(cap, available) each (paper 3.3). `proportional`: the same
    total, shared in proportion to what each language has (largest remainders, ties in label order)."""
    capped = {lang: min(cap, n) for lang, n in available.items()}
    if sampling == "balanced":
        return capped
    budget, total = sum(capped.values()), sum(available.values())
    exact = {lang: budget * n / total for lang, n in available.items()}
    sizes = {lang: math.floor(x) for lang, x in exact.items()}
    by_remainder = sorted(available, key=lambda lang: (sizes[lang] - exact[lang], lang))
    for lang in by_remainder[: budget - sum(sizes.values())]:
        sizes[lang] += 1
    return sizes


@dataclass
class LanguageCount:
    documents: int = 0
    characters: int = 0
    sampled_documents: int = 0
    sampled_characters: int = 0
    sampled_bytes: int = 0


@dataclass
class Sample:
    """A planned training sample: which documents of which files the tokenizer is trained on."""

    files: list[CorpusFile]
    counts: dict[str, LanguageCount]
    sizes: dict[str, int]
    seed: int
    keep: dict[str, np.ndarray | None] = field(init=False)
    """Per language, a mask over its documents in stream order; None keeps them all."""

    def __post_init__(self) -> None:
        self.keep = {}
        for lang, size in self.sizes.items():
            available = self.counts[lang].documents
            if size >= available:
                self.keep[lang] = None
                continue
            rng = np.random.default_rng([self.seed, zlib.crc32(lang.encode())])
            mask = np.zeros(available, dtype=bool)
            mask[rng.choice(available, size=size, replace=False)] = True
            self.keep[lang] = mask

    @property
    def documents(self) -> int:
        return sum(self.sizes.values())

    def texts(self) -> Iterator[str]:
        """Pass 2: the sampled texts, in file order; fills in the sampled counts as it goes."""
        position = dict.fromkeys(self.sizes, 0)
        for file in self.files:  # the BPE trainer shows the progress of this pass
            for lang, text in documents(file):
                if lang not in position:
                    continue
                mask, index = self.keep[lang], position[lang]
                position[lang] += 1
                if mask is None or mask[index]:
                    count = self.counts[lang]
                    count.sampled_documents += 1
                    count.sampled_characters += len(text)
                    count.sampled_bytes += len(text.encode("utf-8"))
                    yield text

    def stats(self) -> dict:
        return {lang: vars(self.counts[lang]) | {"planned": self.sizes[lang]} for lang in self.sizes}


def plan_sample(inputs: Sequence[str | Path], *, cap: int, sampling: str, seed: int,
                languages: Sequence[str] = ()) -> Sample:
    """Pass 1: count what the inputs hold per language and plan the sample. Raises `FuxiError` for an empty corpus or
    a wanted language without documents."""
    files = corpus_files(inputs)
    shown = ", ".join(str(p) for p in inputs)
    if not files:
        raise FuxiError(f"empty corpus: no {', '.join(JSONL_SUFFIXES)} or {TEXT_SUFFIX} files in {shown}")
    counts: dict[str, LanguageCount] = {}
    for file in track(files, "counting documents", disable=not sys.stderr.isatty()):
        if file.folder_language is not None:
            counts.setdefault(file.folder_language, LanguageCount())  # its folder promises this language
        for lang, text in documents(file):
            count = counts.setdefault(lang, LanguageCount())
            count.documents += 1
            count.characters += len(text)
    if not languages and not any(count.documents for count in counts.values()):
        raise FuxiError(f"empty corpus: no documents in {shown}")
    wanted = list(languages) or sorted(counts)
    empty = [lang for lang in wanted if counts.get(lang, LanguageCount()).documents == 0]
    if empty:
        raise FuxiError(f"no documents for language(s) {', '.join(empty)} in {shown}; remove them from "
                        "tokenizer.languages or add their documents")
    counts = {lang: counts[lang] for lang in wanted}
    sizes = sample_sizes({lang: c.documents for lang, c in counts.items()}, cap, sampling)
    return Sample(files, counts, sizes, seed)
