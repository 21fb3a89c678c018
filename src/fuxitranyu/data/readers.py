"""Reading documents from every kind of source, as datatrove pipeline steps.

datatrove's own readers log and skip a bad record; ours stop with an error naming the file and line, or (when the
source says `on_error: skip`) skip it and count it by reason, so that nothing is lost without a trace. Each reader
takes the files (or work units) `rank::world_size` of its source, so datatrove's executors shard it.
"""

from __future__ import annotations

import bz2
import glob
import gzip
import lzma
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
from datatrove.data import Document, DocumentsPipeline
from loguru import logger

from fuxitranyu.data import mediawiki, system, udhr
from fuxitranyu.data.config import SourceSpec
from fuxitranyu.data.steps import CountingStep
from fuxitranyu.errors import FuxiError
from fuxitranyu.languages import UnknownLanguageError, label


class BadRecord(FuxiError):
    """A record that cannot become a document; `reason` is the counter it is skipped under."""

    def __init__(self, reason: str, message: str, *, path, record=None):
        super().__init__(message, path=path, record=record)
        self.reason = reason


COMPRESSIONS = ("", ".gz", ".zst", ".xz", ".bz2")
SUFFIXES = {
    "jsonl": tuple(f"{base}{c}" for base in (".jsonl", ".ndjson", ".json") for c in COMPRESSIONS),
    "parquet": (".parquet",),
    "text": (".txt",),
}
"""File names each source type reads (compared case-insensitively); JSON files hold one object per line."""


@dataclass
class Listing:
    files: list[Path]
    skipped: list[tuple[Path, str, str]]
    """What was found under a source directory and not read: (path, counter, why), counted under `counter` (a file
    the source type does not read, a hidden file or folder, a symbolic link that leads nowhere)."""


def _walk(directory: Path) -> tuple[list[Path], list[tuple[Path, str, str]]]:
    """Every file under `directory`, and what it holds that is not a readable file: hidden entries (names starting
    with a dot: version-control and editor folders, not data) are not entered; dangling links lead nowhere."""
    files, skipped, visited = [], [], set()
    for root, folders, names in os.walk(directory, followlinks=True):
        visited.add(os.path.realpath(root))
        for folder in list(folders):
            if folder.startswith("."):
                skipped.append((Path(root) / folder, "hidden_file", "a hidden folder: not read"))
            if folder.startswith(".") or os.path.realpath(Path(root) / folder) in visited:  # no link loops
                folders.remove(folder)
        for name in names:
            path = Path(root) / name
            if name.startswith("."):
                skipped.append((path, "hidden_file", "a hidden file: not read"))
            elif not path.exists():
                skipped.append((path, "dangling_symlink", "a symbolic link to nothing"))
            elif path.is_file():
                files.append(path)
    return files, skipped


def expand_paths(patterns: list[str], suffixes: tuple[str, ...]) -> Listing:
    """Files named by `patterns` (files, directories searched recursively, or globs), sorted, deduplicated. Every
    entry found is either read or listed as skipped; a pattern that yields nothing to read is an error."""
    found: set[Path] = set()
    skipped: dict[Path, tuple[str, str]] = {}
    for pattern in patterns:
        path = Path(pattern)
        if path.is_dir():
            candidates, unread = _walk(path)
            skipped.update((p, (counter, why)) for p, counter, why in unread)
        elif path.is_file():
            candidates = [path]
        else:
            candidates = [Path(m) for m in glob.glob(pattern, recursive=True) if Path(m).is_file()]
            if not candidates:
                raise FuxiError("no such file, directory or matching files", path=pattern)
        readable = [p for p in candidates if p.name.lower().endswith(suffixes)]
        for other in set(candidates) - set(readable):
            skipped[other] = ("unsupported_file", f"not a {' / '.join(suffixes[:4])}... file")
        if not readable:
            seen = sorted({"".join(p.suffixes[-2:]) or p.name for p in candidates})[:8]
            raise FuxiError(f"nothing to read: expected files ending in {', '.join(suffixes)}; found "
                            f"{len(candidates)} other file(s) ({', '.join(seen) or 'none'})", path=pattern)
        found.update(readable)
    return Listing(sorted(found), sorted((p, counter, why) for p, (counter, why) in skipped.items()))


@dataclass(frozen=True)
class EmptyFile:
    """A source file without a single record: counted (`empty_file`) and named in the log, never an error."""

    path: Path


def _zstd_chunks(path: Path) -> Iterator[bytes]:
    """Decompressed chunks of a (multi-frame) zstandard file. The library's stream reader treats a truncated frame
    as a clean end of file, so frames are followed by hand to notice one that never ends."""
    import zstandard

    decompressor = zstandard.ZstdDecompressor()
    frame, frame_has_data = decompressor.decompressobj(), False
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            while chunk:
                frame_has_data = True
                yield frame.decompress(chunk)
                if not frame.eof:
                    break
                chunk = frame.unused_data
                frame, frame_has_data = decompressor.decompressobj(), False
    if frame_has_data and not frame.eof:
        raise EOFError("the last zstandard frame is incomplete")


def _lines(chunks: Iterator[bytes]) -> Iterator[bytes]:
    pending = b""
    for chunk in chunks:
        pending += chunk
        *lines, pending = pending.split(b"\n")
        yield from lines
    if pending:
        yield pending


def _open_binary(path: Path):
    name = path.name.lower()
    if name.endswith(".gz"):
        return gzip.open(path, "rb")
    if name.endswith(".xz"):
        return lzma.open(path, "rb")
    if name.endswith(".bz2"):
        return bz2.open(path, "rb")
    return open(path, "rb")


def open_lines(path: Path) -> Iterator[bytes]:
    """Raw lines of a plain, gzip, zstandard, xz or bzip2 file; a truncated or corrupt archive raises `BadRecord`."""
    line_number = 0
    try:
        if path.name.lower().endswith(".zst"):
            for line_number, line in enumerate(_lines(_zstd_chunks(path)), start=1):  # noqa: B007 (read below)
                yield line
        else:
            with _open_binary(path) as stream:
                for line_number, line in enumerate(stream, start=1):  # noqa: B007 (read below)
                    yield line
    except Exception as err:  # EOFError, OSError, zlib.error, lzma.LZMAError, zstandard.ZstdError
        damaged = isinstance(err, (EOFError, OSError, zlib.error, lzma.LZMAError)) or type(err).__name__ == "ZstdError"
        if not damaged:
            raise
        raise BadRecord("truncated_file", f"truncated or corrupt compressed file after line {line_number} ({err})",
                        path=path, record=line_number + 1) from err


def clean_documents(folder: Path, language: str | None = None) -> Iterator[tuple[str, str]]:
    """(language, text) of the documents in a `<folder>/<lang>/*.jsonl.gz` tree as the data stage writes it
    (`clean/`, or its intermediate folders), in folder, file and line order; one language when given."""
    pattern = f"{language}/*.jsonl.gz" if language else "*/*.jsonl.gz"
    for path in sorted(folder.glob(pattern)):
        for line_number, line in enumerate(open_lines(path), start=1):
            try:
                yield path.parent.name, orjson.loads(line)["text"]
            except (orjson.JSONDecodeError, KeyError, TypeError) as err:
                raise FuxiError(f"not a document line ({err})", path=path, record=line_number) from err


def declared_language(value, path, record) -> str | None:
    if value is None or value == "":
        return None
    try:
        return label(str(value))
    except UnknownLanguageError as err:
        raise BadRecord("unknown_language", err.message, path=path, record=record) from None


def make_document(text, doc_id, language, spec: SourceSpec, path, record) -> Document:
    if not isinstance(text, str):
        raise BadRecord("missing_text", f"field {spec.text_field!r} is missing or not a string", path=path,
                        record=record)
    if not text.strip():
        raise BadRecord("empty_document", "empty document", path=path, record=record)
    return Document(text=text, id=str(doc_id), metadata={"language": language, "source": spec.source_name})


def record_document(record: dict, spec: SourceSpec, where, row: int, default_id: str) -> Document | BadRecord:
    """A document from one record's text / id / language fields, or the reason it cannot be one."""
    try:
        language = spec.language or declared_language(record.get(spec.language_field or ""), where, row)
        doc_id = record.get(spec.id_field or "") or default_id
        return make_document(record.get(spec.text_field), doc_id, language, spec, where, row)
    except BadRecord as bad:
        return bad


def jsonl_documents(spec: SourceSpec, path: Path) -> Iterator[Document | BadRecord | EmptyFile]:
    try:
        yield from jsonl_records(spec, path)
    except BadRecord as bad:  # a truncated archive ends the file
        yield bad


def jsonl_records(spec: SourceSpec, path: Path) -> Iterator[Document | BadRecord | EmptyFile]:
    records = 0
    for line_number, raw in enumerate(open_lines(path), start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            yield BadRecord("invalid_utf8", f"invalid UTF-8 at byte {err.start} of the line", path=path,
                            record=line_number)
            continue
        if not line.strip():
            continue
        records += 1
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError as err:
            yield BadRecord("malformed_json", f"malformed JSON ({err})", path=path, record=line_number)
            continue
        if not isinstance(record, dict):
            yield BadRecord("malformed_json", f"expected a JSON object, got {type(record).__name__}", path=path,
                            record=line_number)
            continue
        yield record_document(record, spec, path, line_number, f"{path.name}:{line_number}")
    if records == 0:
        yield EmptyFile(path)


def parquet_documents(spec: SourceSpec, path: Path) -> Iterator[Document | BadRecord | EmptyFile]:
    import pyarrow.parquet as pq

    try:
        table = pq.ParquetFile(path)
    except Exception as err:  # pyarrow raises ArrowInvalid / OSError for a corrupt or non-Parquet file
        yield BadRecord("unreadable_file", f"not a readable Parquet file ({err})", path=path)
        return
    columns = [c for c in (spec.text_field, spec.id_field, spec.language_field) if c]
    missing = [c for c in columns if c not in table.schema_arrow.names]
    if spec.text_field in missing:
        yield BadRecord("missing_text", f"no column {spec.text_field!r} (columns: {table.schema_arrow.names})",
                        path=path)
        return
    row = 0
    batches = table.iter_batches(columns=[c for c in columns if c not in missing])
    while True:
        try:
            batch = next(batches, None)
        except Exception as err:  # pyarrow: ArrowInvalid / OSError for damaged pages behind a valid footer
            yield BadRecord("unreadable_file", f"damaged Parquet data after row {row} ({type(err).__name__}: {err})",
                            path=path, record=row + 1)
            return
        if batch is None:
            break
        for record in batch.to_pylist():
            row += 1
            yield record_document(record, spec, path, row, f"{path.name}:{row}")
    if row == 0:
        yield EmptyFile(path)


def text_documents(spec: SourceSpec, path: Path, root: Path | None) -> Iterator[Document | BadRecord]:
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        yield BadRecord("invalid_utf8", f"invalid UTF-8 at byte {err.start}", path=path)
        return
    doc_id = str(path.relative_to(root)) if root is not None else path.name
    try:
        yield make_document(text, doc_id, spec.language, spec, path, None)
    except BadRecord as bad:
        yield bad


class SourceReader(CountingStep):
    """Yields the documents of one source (its share for `rank` of `world_size`), counting what it skips."""

    name = "source"
    type = "📖 - READER"

    def __init__(self, spec: SourceSpec, languages: frozenset[str] | None = None):
        super().__init__()
        self.spec = spec
        self.languages = languages

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        if data:
            yield from data
        for item in self.items(rank, world_size):
            if isinstance(item, EmptyFile):
                self.count_skip("empty_file")
                logger.warning(f"{self.spec.source_name}: skipped {item.path}: no records")
                continue
            if isinstance(item, BadRecord):
                if self.spec.on_error == "raise":
                    raise item
                self.count_skip(item.reason)
                continue
            language = item.metadata["language"]
            if self.languages is not None and language is not None and language not in self.languages:
                self.count_skip("language_not_selected")
                continue
            self.count_read(item)
            yield item

    def items(self, rank: int, world_size: int) -> Iterator[Document | BadRecord | EmptyFile]:
        spec = self.spec
        if spec.type == "system":
            yield from self.system_items(rank, world_size)
        elif spec.type == "mediawiki":
            if not spec.held_out:
                files = mediawiki.message_files(Path(spec.paths[0]))
                if self.languages is not None:
                    files = [(path, lang) for path, lang in files if lang in self.languages]
                for raw in mediawiki.documents(Path(spec.paths[0]), spec.max_document_chars, files[rank::world_size]):
                    yield Document(text=raw.text, id=raw.id, metadata={"language": raw.language,
                                                                       "source": spec.source_name})
        elif spec.type == "udhr":
            if not spec.held_out:
                texts = udhr.declarations(Path(spec.paths[0]), self.languages)
                for lang in sorted(texts)[rank::world_size]:
                    yield Document(text=udhr.full_text(texts[lang]), id=f"udhr/{lang}",
                                   metadata={"language": lang, "source": spec.source_name})
        elif spec.type == "huggingface":
            yield from self.huggingface_items(rank, world_size)
        else:
            listing = expand_paths(spec.paths, SUFFIXES[spec.type])
            if rank == 0:
                for path, counter, why in listing.skipped:
                    self.count_skip(counter)
                    logger.warning(f"{spec.source_name}: skipped {path}: {why}")
            for path in listing.files[rank::world_size]:
                if spec.type == "jsonl":
                    yield from jsonl_documents(spec, path)
                elif spec.type == "parquet":
                    yield from parquet_documents(spec, path)
                else:
                    root = next((Path(p) for p in spec.paths if path.is_relative_to(Path(p))), None)
                    yield from text_documents(spec, path, root)

    def system_items(self, rank: int, world_size: int) -> Iterator[Document]:
        spec = self.spec
        listing = system.SourceCounts()  # skips found while listing the work: every rank lists, rank 0 reports
        counts = system.SourceCounts()
        units = system.gettext_units(spec.locale_dir, spec.held_out_domains, listing, spec.domains) \
            if spec.locale_dir else []
        if self.languages is not None:
            units = [u for u in units if system.language(u.locale).code in self.languages]
        exclude = system.held_out(spec.locale_dir, spec.held_out_domains) if spec.held_out_domains else system.HeldOut()
        roots = spec.resolved_code_roots()
        files = system.code_files(roots, spec.max_code_files_per_language, listing)
        if self.languages is not None:
            files = [(p, lab) for p, lab in files if lab in self.languages]
        work = [("gettext", u) for u in units] + [("code", f) for f in files]
        root_names = {root: root.name for root in roots}
        for kind, unit in work[rank::world_size]:
            if kind == "gettext":
                raws = list(system.unit_documents(unit, spec.max_document_chars, exclude, counts))
            else:
                raw = system.code_document(*unit, root_names, spec.max_code_file_bytes, counts)
                raws = [raw] if raw is not None else []
            for raw in raws:
                yield Document(text=raw.text, id=raw.id,
                               metadata={"language": raw.language, "source": f"{spec.source_name}/{raw.source}"})
        if rank == 0:
            for reason, n in listing.skipped.items():
                self.count_skip(reason, n)
        for reason, n in counts.skipped.items():
            self.count_skip(reason, n)
        for line in counts.skipped_files + (listing.skipped_files if rank == 0 else []):
            logger.warning(f"system source skipped {line}")

    def huggingface_items(self, rank: int, world_size: int) -> Iterator[Document | BadRecord]:
        """This rank's share of each dataset part: the named configuration, or one per language (`per_language`)."""
        spec = self.spec
        for part in hub_parts(spec):
            if self.languages is not None and part.language is not None and part.language not in self.languages:
                continue
            dataset = open_hub_part(spec, part, rank, world_size)
            where = f"{spec.dataset}[{part.name}]" if part.name else spec.dataset
            declared = spec if part.language is None else spec.model_copy(update={"language": part.language})
            for row, record in enumerate(dataset, start=1):
                if spec.translation_field:
                    yield from translation_documents(record, spec, where, row, rank)
                else:
                    yield record_document(record, declared, where, row, f"{where}:{rank}:{row}")


def translation_documents(record: dict, spec: SourceSpec, where: str, row: int, rank: int
                          ) -> Iterator[Document | BadRecord]:
    """One document per language side of a translation record ({"translation": {"en": ..., "fr": ...}})."""
    sides = record.get(spec.translation_field)
    if not isinstance(sides, dict):
        yield BadRecord("missing_text", f"field {spec.translation_field!r} is not a {{language: text}} mapping",
                        path=where, record=row)
        return
    for code, text in sides.items():
        side = spec.model_copy(update={"language": None, "language_field": "language", "text_field": "text"})
        yield record_document({"text": text, "language": code}, side, where, row, f"{where}:{rank}:{row}:{code}")


@dataclass(frozen=True)
class HubPart:
    """One `load_dataset` call of a huggingface source."""

    name: str | None
    """Configuration (or data_dir) name."""
    language: str | None
    """The language label its documents take (per_language sources)."""


def hub_parts(spec: SourceSpec) -> list[HubPart]:
    if spec.per_language:
        return [HubPart(name, label) for label, name in spec.per_language.items()]
    return [HubPart(spec.data_dir if spec.per_language_as == "data_dir" else spec.subset, None)]


def is_saved_dataset(path: str) -> bool:
    local = Path(path)
    return (local / "dataset_info.json").is_file() or (local / "state.json").is_file()


def open_hub_part(spec: SourceSpec, part: HubPart, rank: int, world_size: int):
    """The rank's share of one part: a `save_to_disk` folder, a dataset from the cache (offline), or streamed."""
    import datasets
    from datasets.distributed import split_dataset_by_node

    from fuxitranyu.hub import hub_offline

    if is_saved_dataset(spec.dataset):
        dataset = datasets.load_from_disk(spec.dataset)
    else:
        key = {"data_dir": part.name} if spec.per_language_as == "data_dir" else {"name": part.name}
        dataset = datasets.load_dataset(spec.dataset, split=spec.split, streaming=spec.streaming and not hub_offline(),
                                        **key)
    if isinstance(dataset, datasets.DatasetDict):
        dataset = dataset[spec.split]
    return split_dataset_by_node(dataset, rank=rank, world_size=world_size)


def unreachable_hub_parts(spec: SourceSpec) -> list[str]:
    """The parts of a huggingface source that can neither be read from disk or the caches nor from the hub."""
    from fuxitranyu.hub import hub_answers, in_hf_cache

    if is_saved_dataset(spec.dataset) or Path(spec.dataset).is_dir():
        return []
    missing = [part.name for part in hub_parts(spec) if not in_hf_cache(spec.dataset, part.name)]
    if missing and not hub_answers(spec.dataset):
        return [f"{spec.dataset}[{name}]" if name else spec.dataset for name in missing]
    return []
