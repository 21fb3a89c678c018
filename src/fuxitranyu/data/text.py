"""Text statistics the filters use, defined so that they work for every script.

"Word": for scripts written without spaces (Han, Kana, Thai, Lao, Khmer, Myanmar) each character (with the combining
marks that follow it) is a word; elsewhere
a word is a run of non-space characters with punctuation stripped from its ends. A dictionary segmenter (jieba,
pythainlp, ...) would be closer to linguistic words but is 24-45x slower (measured on gettext text), and the
filters only need counts that scale with the amount of text.
"""

from __future__ import annotations

import re
import unicodedata
from functools import cache, lru_cache
from pathlib import Path

import numpy as np

from fuxitranyu.errors import FuxiError

NO_SPACE_RANGES = (
    "\u3040-\u30ff\u31f0-\u31ff"  # Hiragana, Katakana
    "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"  # Han
    "\u0e00-\u0e7f\u0e80-\u0eff"  # Thai, Lao
    "\u1780-\u17ff\u19e0-\u19ff"  # Khmer
    "\u1000-\u109f\uaa60-\uaa7f"  # Myanmar
)
NO_SPACE_LANGUAGES = frozenset({"zh", "ja", "th", "lo", "km", "my"})


def _combining_marks(ranges: str) -> str:
    """The combining marks (Mn, Mc) inside `ranges`, as a character-class body."""
    chars = re.findall(r"(.)-(.)", ranges)
    marks = (chr(c) for lo, hi in chars for c in range(ord(lo), ord(hi) + 1))
    return "".join(m for m in marks if unicodedata.category(m) in ("Mn", "Mc"))


_MARKS = _combining_marks(NO_SPACE_RANGES)
_TOKEN = re.compile(rf"[{NO_SPACE_RANGES}][{_MARKS}]*|[^\s{NO_SPACE_RANGES}]+")
_URL = re.compile(r"(?:https?://|ftp://|www\.)[^\s<>\"'()\[\]]+", re.IGNORECASE)


def _is_punctuation(char: str) -> bool:
    return unicodedata.category(char)[0] in "PS"


@lru_cache(maxsize=4096)
def _strip_punctuation(token: str) -> str:
    start, end = 0, len(token)
    while start < end and _is_punctuation(token[start]):
        start += 1
    while end > start and _is_punctuation(token[end - 1]):
        end -= 1
    return token[start:end]


def words(text: str) -> list[str]:
    """The words of `text` (see the module docstring), punctuation-only tokens removed."""
    found = []
    for token in _TOKEN.findall(text):
        word = _strip_punctuation(token) if len(token) > 1 else ("" if _is_punctuation(token) else token)
        if word:
            found.append(word)
    return found


def url_char_fraction(text: str) -> float:
    return sum(len(m) for m in _URL.findall(text)) / max(len(text), 1)


_LINE_BREAKS = re.compile(r"\n+")
_PARAGRAPH_BREAKS = re.compile(r"\n{2,}")


def _duplicate_pieces(pieces: list[str], text_length: int) -> tuple[float, float]:
    """(pieces that repeat an earlier piece / all pieces, their characters / the text's characters) — Gopher, as
    datatrove's `find_duplicates` counts them: every occurrence after the first."""
    seen: set[str] = set()
    repeats = repeated_chars = 0
    for piece in pieces:
        if piece in seen:
            repeats += 1
            repeated_chars += len(piece)
        else:
            seen.add(piece)
    return repeats / max(len(pieces), 1), repeated_chars / max(text_length, 1)


def duplicate_line_fractions(text: str) -> tuple[float, float]:
    """Gopher's duplicate lines: lines are split at runs of newlines."""
    return _duplicate_pieces(_LINE_BREAKS.split(text), len(text))


def duplicate_paragraph_fractions(text: str) -> tuple[float, float]:
    """Gopher's duplicate paragraphs: paragraphs are split at two or more newlines."""
    return _duplicate_pieces(_PARAGRAPH_BREAKS.split(text.strip()), len(text))


_HASH_PRIME = np.uint64(0x100000001B3)  # FNV-1a's 64-bit prime: a polynomial rolling hash of n-grams


def _rolling_hashes(ids: np.ndarray, n: int) -> np.ndarray:
    """One uint64 per n-gram of `ids` (wrapping arithmetic; collisions are negligible at document scale)."""
    hashes = np.zeros(len(ids) - n + 1, dtype=np.uint64)
    for k in range(n):
        hashes = hashes * _HASH_PRIME + ids[k:len(ids) - n + 1 + k]
    return hashes


class WordNgrams:
    """Gopher's word n-gram statistics of one document, with the definitions of datatrove's
    `GopherRepetitionFilter` (FineWeb's reference), measured against the document's characters. The words become
    integer ids once and each n-gram size is a rolling hash, so counting needs no Python tuples or joined strings."""

    def __init__(self, tokens: list[str], text_length: int):
        vocabulary: dict[str, int] = {}
        self.ids = np.fromiter((vocabulary.setdefault(t, len(vocabulary)) for t in tokens), dtype=np.uint64,
                               count=len(tokens))
        self.lengths = np.fromiter(map(len, tokens), dtype=np.int64, count=len(tokens))
        self.text_length = max(text_length, 1)

    def top_fraction(self, n: int) -> float:
        """Characters of the most frequent n-gram, written with single spaces, times its count, over the text's
        characters; ties go to the n-gram seen first (datatrove's `find_top_duplicate`). One deliberate difference:
        an n-gram that occurs once is not repetition and scores 0 — datatrove counts it, which under Gopher's
        thresholds drops every document shorter than about 25 words (Gopher's own 50-word minimum hides this)."""
        if len(self.ids) < n:
            return 0.0
        _, first, counts = np.unique(_rolling_hashes(self.ids, n), return_index=True, return_counts=True)
        top = counts.max()
        if top < 2:
            return 0.0
        at = int(first[counts == top].min())
        return int(top) * (int(self.lengths[at:at + n].sum()) + n - 1) / self.text_length

    def duplicate_fraction(self, n: int) -> float:
        """Characters of the n-grams that repeat an earlier one, over the text's characters: scanning left to
        right, an n-gram seen before adds its characters (without spaces) and the scan jumps past it; otherwise
        the scan moves one word (datatrove's `find_all_duplicate`). The jump makes the scan sequential."""
        if len(self.ids) < n:
            return 0.0
        hashes = _rolling_hashes(self.ids, n).tolist()
        widths = np.convolve(self.lengths, np.ones(n, dtype=np.int64), mode="valid").tolist()
        seen: set[int] = set()
        repeated = position = 0
        while position < len(hashes):
            if hashes[position] in seen:
                repeated += widths[position]
                position += n
            else:
                seen.add(hashes[position])
                position += 1
        return repeated / self.text_length


def char_repetition_ratio(text: str, n: int) -> float:
    """BLOOM's character repetition ratio: over all character n-gram occurrences, the occurrences of the ⌊√k⌋ most
    frequent of the k distinct n-grams — counting only n-grams that occur more than once (so text without any
    repetition scores 0). High for text that repeats itself."""
    if len(text) < n:
        return 0.0
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    _, counts = np.unique(_rolling_hashes(codes, n), return_counts=True)
    top = min(int(len(counts) ** 0.5), int((counts > 1).sum()))
    return int(np.sort(counts)[::-1][:top].sum()) / int(counts.sum())


@cache
def stop_words(language: str) -> frozenset[str]:
    """The stopwordsiso list of a language (empty when it has none: kk km ky lo my ta tg tk uz)."""
    import stopwordsiso

    return frozenset(stopwordsiso.stopwords(language)) if stopwordsiso.has_lang(language) else frozenset()


def stop_word_count(text: str, tokens: list[str], language: str) -> int:
    listed = stop_words(language)
    if language in NO_SPACE_LANGUAGES:
        return sum(text.count(word) for word in listed)
    return sum(1 for token in tokens if token.lower() in listed)


@cache
def flagged_word_list(path: str) -> frozenset[str]:
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise FuxiError(f"cannot read flagged-word list ({err})", path=path) from err
    return frozenset(line.strip().lower() for line in lines if line.strip() and not line.startswith("#"))


def flagged_word_fraction(text: str, tokens: list[str], language: str, path: str) -> float:
    listed = flagged_word_list(path)
    if language in NO_SPACE_LANGUAGES:
        hits = sum(text.count(word) for word in listed)
    else:
        lowered = [token.lower() for token in tokens]
        hits = sum(1 for token in lowered if token in listed)
        phrases = [p for p in listed if " " in p]
        if phrases:
            joined = " ".join(lowered)
            hits += sum(joined.count(p) for p in phrases)
    return hits / max(len(tokens), 1)
