"""The `system` source: a real multilingual corpus from what every Debian-like machine already has.

- gettext catalogs (`/usr/share/locale/<locale>/LC_MESSAGES/<domain>.mo`): human translations of the same English
  UI strings into ~190 locales — naturally imbalanced and *parallel*. The language comes from the locale folder; the
  English text is the catalogs' own source strings (msgids), taken once per domain.
- source code (the Python standard library, C headers, ...): the programming language comes from the extension.

Whole domains can be held out: they never reach the training documents (nor does any English string they contain,
so a held-out sentence cannot leak in through another catalog), and they are written as parallel sets aligned by the
English source string, for evaluation and for the paper's parallel-set analyses.
"""

from __future__ import annotations

import gettext
import hashlib
import re
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from fuxitranyu.errors import FuxiError
from fuxitranyu.languages import (
    UnknownLanguageError,
    is_supported,
    language,
    programming_language,
)

# printf (`%s`, `%1$d`, `%-10.3lf`), Python (`%(name)s`, `{0}`, `{name}`), markup (`<b>`), GTK mnemonics (`_File`,
# `(_F)` after CJK labels) and Qt/KDE ones (`&File`): formatting, not language.
_PRINTF = re.compile(r"%(?:\(\w+\)|\d+\$)?[-+ #0']*(?:\d+|\*)?(?:\.(?:\d+|\*))?"
                     r"(?:hh|h|ll|l|L|q|j|z|t|I64)?[diouxXeEfFgGaAcspnm]")
_BRACES = re.compile(r"\{\w*(?:[:!][^{}]*)?\}")
_MARKUP = re.compile(r"</?[A-Za-z][^<>]*>")
_MNEMONIC_CJK = re.compile(r"\s*\((?:_|&)\w\)")
_MNEMONIC = re.compile(r"(?<![\w&])[_&](?=\w)")
_SPACES = re.compile(r"[ \t\r\f\v]+")


def clean_message(text: str) -> str:
    """A UI string with format specifiers, markup and keyboard mnemonics removed, whitespace collapsed per line."""
    text = _MARKUP.sub("", text)
    text = "%".join(_PRINTF.sub("", part) for part in text.split("%%"))  # `%%` is a literal percent sign
    text = _BRACES.sub("", text)
    text = _MNEMONIC_CJK.sub("", text)
    return collapse_whitespace(_MNEMONIC.sub("", text))


def collapse_whitespace(text: str) -> str:
    """Runs of spaces and tabs become one space; lines are stripped; empty lines go."""
    lines = (_SPACES.sub(" ", line).strip() for line in text.split("\n"))
    return "\n".join(line for line in lines if line)


@dataclass(frozen=True)
class Catalog:
    path: Path
    locale: str
    domain: str

    @property
    def language(self) -> str:
        return language(self.locale).code


def list_catalogs(locale_dir: str | Path) -> list[Catalog]:
    """Every `.mo` file under `locale_dir`, sorted by (domain, locale) so that all readers see the same order."""
    found = [
        Catalog(path, path.parts[-3], path.stem)
        for path in Path(locale_dir).glob("*/LC_MESSAGES/*.mo")
    ]
    return sorted(found, key=lambda c: (c.domain, c.locale))


def read_catalog(path: str | Path) -> dict[str, str]:
    """English source -> cleaned translation. Context prefixes are stripped; plural entries use form 0; headers,
    empty and untranslated entries (translation equal to the source) are left out."""
    try:
        with open(path, "rb") as f:
            translations = gettext.GNUTranslations(f)
    except (OSError, UnicodeDecodeError, IndexError, ValueError, struct.error) as err:
        raise FuxiError(f"unreadable gettext catalog ({type(err).__name__}: {err})", path=path) from err
    entries: dict[str, str] = {}
    for key, translated in translations._catalog.items():  # the parsed table; GNUTranslations has no public view
        if isinstance(key, tuple):
            key, form = key
            if form != 0:
                continue
        if not key:
            continue  # the header
        source = key.split("\x04", 1)[-1]
        if translated == source:
            continue
        source, translated = clean_message(source), clean_message(translated)
        if source and translated and translated != source:
            entries.setdefault(source, translated)
    return entries


def chunk_lines(lines: Iterable[str], max_chars: int) -> Iterator[str]:
    """Join lines into documents of at most `max_chars` characters (a longer single line is its own document)."""
    batch: list[str] = []
    size = 0
    for line in lines:
        if batch and size + len(line) + 1 > max_chars:
            yield "\n".join(batch)
            batch, size = [], 0
        batch.append(line)
        size += len(line) + 1
    if batch:
        yield "\n".join(batch)


@dataclass
class SourceCounts:
    """What a source read and why it skipped anything, keyed by reason; `skipped_files` names each skipped file."""

    documents: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    skipped_files: list[str] = field(default_factory=list)

    def skip(self, reason: str, path: str | Path | None = None, n: int = 1) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + n
        if path is not None:
            self.skipped_files.append(f"{path}: {reason}")


@dataclass(frozen=True)
class RawDocument:
    """A document before it becomes a datatrove `Document`: kept free of datatrove so the reader is testable alone."""

    id: str
    text: str
    language: str
    source: str


@dataclass(frozen=True)
class GettextUnit:
    """One unit of work: the translations of one catalog, or (locale `en`) a domain's English source strings."""

    domain: str
    locale: str
    paths: tuple[Path, ...]


def gettext_units(locale_dir: str | Path, held_out_domains: Iterable[str] = (),
                  counts: SourceCounts | None = None, domains: Iterable[str] = ()) -> list[GettextUnit]:
    """The work units of the training part, in a fixed order: per domain, its English unit then each locale.
    `domains`, when given, keeps only those domains."""
    counts = counts if counts is not None else SourceCounts()
    held_out, wanted = set(held_out_domains), set(domains)
    by_domain: dict[str, list[Catalog]] = {}
    for catalog in list_catalogs(locale_dir):
        if catalog.domain in held_out or (wanted and catalog.domain not in wanted):
            continue
        if not is_supported(catalog.locale):
            counts.skip("unsupported_locale")
            continue
        by_domain.setdefault(catalog.domain, []).append(catalog)
    units = []
    for domain, catalogs in by_domain.items():
        units.append(GettextUnit(domain, "en", tuple(c.path for c in catalogs)))
        # English regional locales (en_GB, en@quot) are near-copies of the source strings, which are the English text.
        units.extend(GettextUnit(domain, c.locale, (c.path,)) for c in catalogs if c.language != "en")
    return units


@dataclass(frozen=True)
class HeldOut:
    """What of the held-out domains must not reach training documents."""

    sources: frozenset[str] = frozenset()
    """Their English source strings: an entry with such a source is left out in every language."""
    lines: frozenset[str] = frozenset()
    """Every line of their sources and translations: removed wherever else it occurs (another domain may carry the
    same string inside a longer entry, such as a help text)."""


def held_out(locale_dir: str | Path, held_out_domains: Iterable[str]) -> HeldOut:
    sources: set[str] = set()
    lines: set[str] = set()
    domains = set(held_out_domains)
    for catalog in list_catalogs(locale_dir):
        if catalog.domain in domains:
            try:
                entries = read_catalog(catalog.path)
            except FuxiError:
                continue  # an unreadable held-out catalog contributes nothing to exclude
            for source, translated in entries.items():
                sources.add(source)
                lines.update(source.split("\n"))
                lines.update(translated.split("\n"))
    return HeldOut(frozenset(sources), frozenset(lines))


def without_lines(text: str, exclude: frozenset[str]) -> str:
    return "\n".join(line for line in text.split("\n") if line not in exclude) if exclude else text


def unit_documents(unit: GettextUnit, max_document_chars: int, exclude: HeldOut,
                   counts: SourceCounts) -> Iterator[RawDocument]:
    """The documents of one unit: its entries less the held-out ones and lines, sorted, chunked to
    `max_document_chars`."""
    kept: set[str] = set()
    for path in unit.paths:
        try:
            entries = read_catalog(path)
        except FuxiError as err:
            counts.skip("unreadable_catalog", f"{path} ({err.message})")
            continue
        for source, translated in entries.items():
            if source not in exclude.sources:
                text = without_lines(source if unit.locale == "en" else translated, exclude.lines)
                if text:
                    kept.add(text)
    lang = language(unit.locale).code
    for index, text in enumerate(chunk_lines(sorted(kept), max_document_chars)):
        counts.documents += 1
        yield RawDocument(f"gettext/{unit.domain}/{unit.locale}/{index}", text, lang, "gettext")


def parallel_rows(locale_dir: str | Path, domains: Iterable[str], min_words: int = 5, min_languages: int = 2,
                  languages: Iterable[str] | None = None) -> Iterator[dict]:
    """Aligned translations of the held-out domains: `{"id", "texts": {"en": ..., "<lang>": ...}}` per English
    source string with at least `min_words` words and translations into at least `min_languages` other supported
    languages (of `languages`, when given). Where several locales map to one language (pt, pt_BR), the first in
    sorted order wins."""
    wanted = set(domains)
    kept = None if languages is None else set(languages)
    for domain in sorted(wanted):
        table: dict[str, dict[str, str]] = {}
        for catalog in list_catalogs(locale_dir):
            if catalog.domain != domain or not is_supported(catalog.locale) or catalog.language == "en":
                continue
            if kept is not None and catalog.language not in kept:
                continue
            try:
                entries = read_catalog(catalog.path)
            except FuxiError:
                continue
            for source, text in entries.items():
                if len(source.split()) >= min_words:
                    table.setdefault(source, {}).setdefault(catalog.language, text)
        for source in sorted(table):
            if len(table[source]) >= min_languages:
                digest = hashlib.sha1(source.encode()).hexdigest()[:12]
                yield {"id": f"{domain}:{digest}", "texts": {"en": source, **dict(sorted(table[source].items()))}}


def code_files(roots: Iterable[str | Path], max_files_per_language: int | None = None,
               counts: SourceCounts | None = None) -> list[tuple[Path, str]]:
    """(path, language label) of source files under `roots`, sorted, at most `max_files_per_language` each."""
    counts = counts if counts is not None else SourceCounts()
    per_language: dict[str, int] = {}
    found = []
    for root in roots:
        root = Path(root)
        if not root.is_dir():
            counts.skip("missing_code_root", root)
            continue
        for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
            try:
                label = programming_language(path.name).label
            except UnknownLanguageError:
                continue
            if max_files_per_language is not None and per_language.get(label, 0) >= max_files_per_language:
                continue
            per_language[label] = per_language.get(label, 0) + 1
            found.append((path, label))
    return found


def code_document(path: Path, label: str, root_names: dict[Path, str], max_file_bytes: int,
                  counts: SourceCounts) -> RawDocument | None:
    try:
        data = path.read_bytes()
    except OSError as err:
        counts.skip("unreadable_file", f"{path} ({err.strerror})")
        return None
    if len(data) > max_file_bytes:
        counts.skip("file_too_large")
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        counts.skip("invalid_utf8", f"{path} (byte {err.start})")
        return None
    if not text.strip():
        counts.skip("empty_file")
        return None
    root = next((r for r in root_names if path.is_relative_to(r)), None)
    relative = f"{root_names[root]}/{path.relative_to(root)}" if root is not None else str(path)
    counts.documents += 1
    return RawDocument(f"code/{relative}", text, label, "code")
