"""MediaWiki's interface translations: all 43 languages, including lo, ky, tk and ur that gettext barely has.

`fuxitranyu fetch mediawiki` takes Debian's `mediawiki` package (apt-get download, no install) and keeps the core
message files of our languages, `languages/i18n/<code>.json` (`{message key: text}`, English in `en.json`). As a
source it gives training documents (messages sorted by key, chunked like the gettext catalogs), or, held out, a
parallel set aligned by message key.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from fuxitranyu.data.system import RawDocument, chunk_lines, collapse_whitespace
from fuxitranyu.errors import FuxiError
from fuxitranyu.languages import supported_code

_TEMPLATE_CHOICE = re.compile(r"\{\{\s*(?:PLURAL|GENDER|GRAMMAR):[^|{}]*\|([^|{}]*)[^{}]*\}\}", re.IGNORECASE)
_TEMPLATE = re.compile(r"\{\{[^{}]*\}\}")
_LINK = re.compile(r"\[\[(?:[^|\]]*\|)?([^\]]*)\]\]")
_EXTERNAL_LINK = re.compile(r"\[(?:https?:)?//\S+\s*([^\]]*)\]")
_MARKUP = re.compile(r"</?[A-Za-z][^<>]*>|'''|''|\$\d+|__[A-Z]+__")


def clean_wikitext(text: str) -> str:
    """A message without wikitext: plural/gender choices take their first form, links keep their text, templates,
    tags, bold/italic quotes and `$1` parameters go."""
    for _ in range(3):  # choices can nest one or two levels
        text = _TEMPLATE_CHOICE.sub(r"\1", text)
    text = _TEMPLATE.sub("", text)
    text = _LINK.sub(r"\1", text)
    text = _EXTERNAL_LINK.sub(r"\1", text)
    return collapse_whitespace(html.unescape(_MARKUP.sub("", text)))


def fetch_mediawiki(dest: Path) -> Path:
    """Download Debian's mediawiki package and copy the core message files of our languages to `dest`."""
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise FuxiError("fetching MediaWiki's translations needs apt-get and dpkg-deb (a Debian-based machine)")
    with tempfile.TemporaryDirectory() as tmp:
        result = subprocess.run(["apt-get", "download", "mediawiki"], cwd=tmp, capture_output=True, text=True)
        debs = list(Path(tmp).glob("mediawiki_*.deb"))
        if result.returncode != 0 or not debs:
            raise FuxiError(f"apt-get download mediawiki failed (run `apt-get update` first?): {result.stderr[-300:]}")
        subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(Path(tmp) / "x")], check=True)
        i18n = Path(tmp) / "x" / "usr" / "share" / "mediawiki" / "languages" / "i18n"
        dest.mkdir(parents=True, exist_ok=True)
        for path in sorted(i18n.glob("*.json")):
            if path.stem == "en" or supported_code(path.stem):
                shutil.copy2(path, dest / path.name)
    (dest / "SOURCE.txt").write_text("Debian package mediawiki: usr/share/mediawiki/languages/i18n/<code>.json\n")
    return dest


def message_files(folder: Path) -> list[tuple[Path, str]]:
    """(file, language) of every message file of a supported language, sorted by file name."""
    if not folder.is_dir():
        raise FuxiError("no MediaWiki messages here; download them with `fuxitranyu fetch mediawiki --to DIR`",
                        path=folder)
    return [(p, lang) for p in sorted(folder.glob("*.json")) if (lang := supported_code(p.stem))]


def read_messages(path: Path) -> dict[str, str]:
    """Message key -> cleaned text (documentation keys starting with `@` are left out)."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise FuxiError(f"unreadable MediaWiki message file ({err})", path=path) from err
    messages = {}
    for key, value in raw.items():
        if key.startswith("@") or not isinstance(value, str):
            continue
        cleaned = clean_wikitext(value)
        if cleaned:
            messages[key] = cleaned
    return messages


def documents(folder: Path, max_document_chars: int, files: list[tuple[Path, str]] | None = None
              ) -> Iterator[RawDocument]:
    english = read_messages(folder / "en.json") if (folder / "en.json").is_file() else {}
    for path, lang in files if files is not None else message_files(folder):
        messages = read_messages(path)
        # A translation equal to the English message is an untranslated copy.
        lines = sorted({text for key, text in messages.items() if lang == "en" or english.get(key) != text})
        for index, text in enumerate(chunk_lines(lines, max_document_chars)):
            yield RawDocument(f"mediawiki/{path.stem}/{index}", text, lang, "mediawiki")


def parallel_rows(folder: Path, languages: frozenset[str] | None = None, min_words: int = 5,
                  min_languages: int = 2) -> list[dict]:
    """Messages whose English text has at least `min_words` words, aligned across languages by key (the first file
    of a language in name order wins, e.g. `zh` before `zh-hans`)."""
    english = read_messages(folder / "en.json")
    table: dict[str, dict[str, str]] = {}
    for path, lang in message_files(folder):
        if lang == "en" or (languages is not None and lang not in languages):
            continue
        for key, text in read_messages(path).items():
            if key in english and text != english[key] and len(english[key].split()) >= min_words:
                table.setdefault(key, {}).setdefault(lang, text)
    return [{"id": f"mediawiki:{key}", "texts": {"en": english[key], **dict(sorted(table[key].items()))}}
            for key in sorted(table) if len(table[key]) >= min_languages]
