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
from functools import lru_cache
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


def duplicate_line_fractions(text: str) -> tuple[float, float]:
    """(fraction of lines that repeat an earlier line, fraction of characters in such lines) — Gopher."""
    lines = [line.strip() for line in text.split("\n") if line.strip()]
    if not lines:
        return 0.0, 0.0
    seen: set[str] = set()
    duplicate_lines = duplicate_chars = 0
    for line in lines:
        if line in seen:
            duplicate_lines += 1
            duplicate_chars += len(line)
        seen.add(line)
    return duplicate_lines / len(lines), duplicate_chars / max(sum(map(len, lines)), 1)


_HASH_PRIME = np.uint64(0x100000001B3)  # FNV-1a's 64-bit prime: a polynomial rolling hash of n-grams


def _rolling_hashes(ids: np.ndarray, n: int) -> np.ndarray:
    """One uint64 per n-gram of `ids` (wrapping arithmetic; collisions are negligible at document scale)."""
    hashes = np.zeros(len(ids) - n + 1, dtype=np.uint64)
    for k in range(n):
        hashes = hashes * _HASH_PRIME + ids[k:len(ids) - n + 1 + k]
    return hashes


class WordNgrams:
    """Gopher's word n-gram statistics of one document, vectorised: the words become integer ids once, each n-gram
    size is a rolling hash and a `np.unique` (10-30x faster than counting tuples in Python)."""

    def __init__(self, tokens: list[str]):
        vocabulary: dict[str, int] = {}
        self.ids = np.fromiter((vocabulary.setdefault(t, len(vocabulary)) for t in tokens), dtype=np.uint64,
                               count=len(tokens))
        self.lengths = np.fromiter(map(len, tokens), dtype=np.int64, count=len(tokens))
        self.total_chars = max(int(self.lengths.sum()), 1)

    def _counts(self, n: int) -> np.ndarray:
        """For each n-gram position, how often that n-gram occurs in the document."""
        _, inverse, counts = np.unique(_rolling_hashes(self.ids, n), return_inverse=True, return_counts=True)
        return counts[inverse]

    def top_fraction(self, n: int) -> float:
        """Characters covered by the most frequent n-gram (all its occurrences) over all word characters; ties go
        to the n-gram seen first."""
        if len(self.ids) < n:
            return 0.0
        counts = self._counts(n)
        first = int(np.argmax(counts))
        if counts[first] < 2:
            return 0.0
        return int(counts[first]) * int(self.lengths[first:first + n].sum()) / self.total_chars

    def duplicate_fraction(self, n: int) -> float:
        """Characters of the words covered by n-grams that occur more than once, over all word characters."""
        if len(self.ids) < n:
            return 0.0
        repeated = (self._counts(n) > 1).astype(np.int64)
        covered = np.convolve(repeated, np.ones(n, dtype=np.int64))[:len(self.ids)] > 0
        return int(self.lengths[covered].sum()) / self.total_chars


def char_repetition_ratio(text: str, n: int) -> float:
    """BLOOM's character repetition ratio: the occurrences of the ⌊√k⌋ most frequent character n-grams (k distinct
    n-grams) over all n-gram occurrences. High for text that repeats itself."""
    if len(text) < n:
        return 0.0
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    _, counts = np.unique(_rolling_hashes(codes, n), return_counts=True)
    top = int(len(counts) ** 0.5)
    return int(np.sort(counts)[::-1][:top].sum()) / int(counts.sum())


@lru_cache(maxsize=None)
def stop_words(language: str) -> frozenset[str]:
    """The stopwordsiso list of a language (empty when it has none: kk km ky lo my ta tg tk uz)."""
    import stopwordsiso

    return frozenset(stopwordsiso.stopwords(language)) if stopwordsiso.has_lang(language) else frozenset()


def stop_word_count(text: str, tokens: list[str], language: str) -> int:
    listed = stop_words(language)
    if language in NO_SPACE_LANGUAGES:
        return sum(text.count(word) for word in listed)
    return sum(1 for token in tokens if token.lower() in listed)


@lru_cache(maxsize=None)
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
