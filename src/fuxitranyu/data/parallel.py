"""Parallel sets: the data stage's held-out sets (`<data>/parallel/<name>.jsonl`), and the reader of every layout
of aligned text the toolkit takes (our JSONL, TSV, FLORES-200), for the tokenizer's fertility, post-training's demo
data, the evaluation and the analyses.

A set that post-training learns from is no longer held out for the others, so recipes give each its own sets by name.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from fuxitranyu.errors import FuxiError
from fuxitranyu.languages import BY_CODE, label_or_none


def parallel_sets(parallel_dir: Path, names: list[str]) -> list[Path]:
    """The set files named (file names without `.jsonl`), or every set when `names` is empty."""
    available = {path.stem: path for path in sorted(Path(parallel_dir).glob("*.jsonl"))}
    if not available:
        raise FuxiError("the data stage wrote no held-out parallel sets (data.sources: held_out_domains, or a udhr / "
                        "mediawiki source with held_out: true)", path=parallel_dir)
    unknown = [name for name in names if name not in available]
    if unknown:
        raise FuxiError(f"no parallel set named {', '.join(unknown)}; the data stage wrote: "
                        f"{', '.join(available)}", path=parallel_dir)
    return [available[name] for name in names] if names else list(available.values())


@dataclass
class ParallelSet:
    units: list[dict] = field(default_factory=list)
    skipped_languages: set[str] = field(default_factory=set)
    """Codes in the input that are none of the supported languages (and were left out)."""
    keep_unsupported: bool = False
    """Keep texts in languages outside the supported ones under their code as written (`slk_Latn`), instead of
    leaving them out: the analyses study any model on any language."""

    def label(self, code: str) -> str | None:
        """The label texts of `code` are kept under, or None when they are left out."""
        lab = label_or_none(code)
        if lab is None and self.keep_unsupported and code.strip():
            return code.strip()
        if lab is None:
            self.skipped_languages.add(code)
        return lab

    def add(self, unit_id: str, texts: dict[str, str]) -> None:
        kept = {}
        for code, text in texts.items():
            lab = self.label(code)
            if lab is not None and text.strip():
                kept.setdefault(lab, text)
        if kept:
            self.units.append({"id": unit_id, "texts": kept})


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise FuxiError(f"not UTF-8 text (byte {err.start})", path=path) from None


def _read_jsonl(path: Path, into: ParallelSet) -> None:
    for number, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise FuxiError(f"not a JSON line ({err})", path=path, record=number) from None
        texts = record.get("texts") if isinstance(record, dict) else None
        if not isinstance(texts, dict) or not all(isinstance(t, str) for t in texts.values()):
            raise FuxiError('expected {"id": ..., "texts": {"<language>": "<text>", ...}}', path=path,
                            record=number)
        into.add(str(record.get("id", f"{path.name}:{number}")), texts)


def _read_tsv(path: Path, into: ParallelSet) -> None:
    """A header of language codes (every column is a language), then one aligned unit per row."""
    rows = list(csv.reader(io.StringIO(_read_text(path)), delimiter="\t", quoting=csv.QUOTE_NONE))
    if not rows:
        raise FuxiError("empty TSV: expected a header of language codes", path=path)
    header = rows[0]
    for number, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != len(header):
            raise FuxiError(f"{len(row)} columns, the header has {len(header)}", path=path, record=number)
        into.add(f"{path.name}:{number}", dict(zip(header, row)))


def _read_flores(folder: Path, into: ParallelSet) -> None:
    """FLORES-200's layout: `<code>.<split>` files (fra_Latn.devtest), line i of every file is unit i. In the
    dataset's top folder, `devtest/` is read. Where several files are one language (zho_Hans, zho_Hant), the one
    with our FLORES code wins."""
    if not any(p.is_file() for p in folder.iterdir()):
        split = next((folder / s for s in ("devtest", "dev") if (folder / s).is_dir()), None)
        if split is None:
            raise FuxiError("not a parallel set: no .jsonl/.tsv files and no FLORES-200 files", path=folder)
        folder = split
    by_language: dict[str, list[Path]] = {}
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        lab = into.label(path.name.split(".")[0])
        if lab is not None:
            by_language.setdefault(lab, []).append(path)
    columns = {}
    for lab, paths in by_language.items():
        preferred = BY_CODE[lab].flores if lab in BY_CODE else None
        path = next((p for p in paths if p.name.split(".")[0] == preferred), paths[0])
        columns[lab] = _read_text(path).splitlines()
    lengths = {len(lines) for lines in columns.values()}
    if len(lengths) > 1:
        raise FuxiError(f"FLORES files differ in length ({sorted(lengths)} lines): not aligned", path=folder)
    for index in range(lengths.pop() if lengths else 0):
        into.add(f"{folder.name}:{index + 1}", {lab: lines[index] for lab, lines in columns.items()})


def read_parallel(paths: Iterable[str | Path], keep_unsupported: bool = False) -> ParallelSet:
    """Units from JSONL files (the data stage's `parallel/*.jsonl`), TSV files, folders of those, or a FLORES-200
    folder. `keep_unsupported`: see `ParallelSet.keep_unsupported`."""
    paths, found = list(paths), ParallelSet(keep_unsupported=keep_unsupported)
    for item in paths:
        path = Path(item)
        if not path.exists():
            raise FuxiError("no such parallel set (file or directory)", path=path)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix in (".jsonl", ".tsv"))
            if not files:
                _read_flores(path, found)
            for file in files:
                (_read_jsonl if file.suffix == ".jsonl" else _read_tsv)(file, found)
        elif path.suffix in (".jsonl", ".tsv"):
            (_read_jsonl if path.suffix == ".jsonl" else _read_tsv)(path, found)
        else:
            raise FuxiError("not a parallel set: expected a .jsonl or .tsv file, or a folder", path=path)
    if not found.units:
        raise FuxiError(f"no parallel units in {', '.join(map(str, paths))}")
    return found
