"""Shingles for MinHash, for every script and for source code, hashed in batches with numpy.

A document becomes a sequence of tokens, and its shingles are the n-grams of those tokens:
- natural text is NFKC-normalised and lowercased; punctuation, symbols and whitespace separate tokens; a token is a
  run of letters, marks and digits, except that each character of a script written without spaces (Han, Kana, Thai,
  Lao, Khmer, Myanmar) is a token of its own. A document whose word characters are mostly such characters is
  shingled as character n-grams, any other as word n-grams; the script decides, not the language label, so mixed
  and mislabelled text is shingled by what it is.
- source code (labels `code-*`) loses its comments (outside string literals); a token is an identifier or number,
  or a single punctuation/operator character, so whitespace and comments do not change the shingles and case does.

Python only normalises each text; splitting into tokens, hashing tokens and n-grams runs vectorised over the whole
batch, which is what makes shingling cheap (per-shingle Python hashing is the usual bottleneck of MinHash dedup).
Shingle hashes are 31-bit values stored as uint64, ready for `(a*x + b) mod (2**31 - 1)` permutations.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Sequence

import numpy as np

from fuxitranyu.errors import FuxiError
from fuxitranyu.languages import LABELS

SEPARATOR, RUN, SINGLE = 0, 1, 2
"""Character classes: separates tokens, belongs to a multi-character token, is a token by itself."""

TEXT, CODE = 0, 1
"""Rows of the class table: how natural text and how source code is tokenised."""

# Blocks of the scripts written without spaces between words (zh, ja, th, lo, km, my).
UNSPACED_RANGES: tuple[tuple[int, int], ...] = (
    (0x0E00, 0x0E7F),  # Thai
    (0x0E80, 0x0EFF),  # Lao
    (0x1000, 0x109F),  # Myanmar
    (0x1780, 0x17FF),  # Khmer
    (0x19E0, 0x19FF),  # Khmer symbols
    (0x2E80, 0x2FDF),  # CJK and Kangxi radicals
    (0x3005, 0x3007),  # 々 〆 〇
    (0x3021, 0x3029),  # Hangzhou numerals
    (0x3031, 0x303C),  # kana repeat marks
    (0x3040, 0x30FF),  # Hiragana, Katakana
    (0x31F0, 0x31FF),  # Katakana phonetic extensions
    (0x3400, 0x4DBF),  # CJK extension A
    (0x4E00, 0x9FFF),  # CJK unified ideographs
    (0xA9E0, 0xA9FF),  # Myanmar extended-B
    (0xAA60, 0xAA7F),  # Myanmar extended-A
    (0xF900, 0xFAFF),  # CJK compatibility ideographs
    (0xFF66, 0xFF9F),  # halfwidth Katakana
    (0x20000, 0x323AF),  # CJK extensions B-H
)


@functools.cache
def char_classes() -> np.ndarray:
    """Class of every code point, shape (2, 0x110000): row TEXT for natural text, row CODE for source code."""
    major = np.frombuffer(bytes(ord(unicodedata.category(chr(cp))[0]) for cp in range(0x110000)), dtype=np.uint8)
    word = (major == ord("L")) | (major == ord("M")) | (major == ord("N"))
    punct = (major == ord("P")) | (major == ord("S"))
    table = np.zeros((2, 0x110000), dtype=np.uint8)
    table[TEXT, word] = RUN
    for lo, hi in UNSPACED_RANGES:
        span = slice(lo, hi + 1)
        table[TEXT, span] = np.where(word[span], SINGLE, table[TEXT, span])
    table[CODE, word] = RUN
    table[CODE, punct] = SINGLE
    table[CODE, ord("_")] = RUN  # part of identifiers
    return table


# --- normalisation -------------------------------------------------------------------------------------------------

_DQ = r'"(?:\\.|[^"\\\n])*"'
_SQ = r"'(?:\\.|[^'\\\n])*'"
_BQ = r"`(?:\\.|[^`\\])*`"
_TRIPLE = r'"""[\s\S]*?"""|' + r"'''[\s\S]*?'''"
_C = r"//[^\n]*|/\*[\s\S]*?\*/"
_HASH = r"#[^\n]*"

# (string literals, comments) per programming language; strings come first so that comment markers in them survive.
_CODE_SYNTAX: dict[str, tuple[str, str]] = {
    "code-java": (f"{_DQ}|{_SQ}", _C),
    "code-javascript": (f"{_DQ}|{_SQ}|{_BQ}", _C),
    "code-typescript": (f"{_DQ}|{_SQ}|{_BQ}", _C),
    "code-python": (f"{_TRIPLE}|{_DQ}|{_SQ}", _HASH),
    "code-php": (f"{_DQ}|{_SQ}", f"{_C}|{_HASH}"),
    "code-c": (f"{_DQ}|{_SQ}", _C),
    "code-cpp": (f"{_DQ}|{_SQ}", _C),
    "code-csharp": (f"{_DQ}|{_SQ}", _C),
    "code-go": (f"{_DQ}|{_SQ}|{_BQ}", _C),
    "code-sql": (f"{_DQ}|{_SQ}", r"--[^\n]*|/\*[\s\S]*?\*/"),
    "code-rust": (_DQ, _C),  # a quote also opens a lifetime (`'a`), so only double-quoted strings are protected
    "code-ruby": (f"{_DQ}|{_SQ}", r"^=begin[\s\S]*?^=end|" + _HASH),
    "code-scala": (f"{_TRIPLE}|{_DQ}|{_SQ}", _C),
    "code-lua": (f"{_DQ}|{_SQ}", r"--\[(=*)\[[\s\S]*?\]\1\]|--[^\n]*"),
    "code-assembly": (_DQ, r"/\*[\s\S]*?\*/|//[^\n]*|;[^\n]*"),
    "code-visualbasic": (_DQ, r"'[^\n]*|(?i:\brem\b)[^\n]*"),
}
_COMMENTS: dict[str, re.Pattern] = {
    label: re.compile(f"(?P<keep>{strings})|{comments}", re.MULTILINE)
    for label, (strings, comments) in _CODE_SYNTAX.items()
}
assert set(_COMMENTS) == {label for label in LABELS if label.startswith("code-")}


def _keep_strings(match: re.Match) -> str:
    return match.group("keep") or " "


def normalize(text: str, label: str | None = None) -> tuple[str, int]:
    """The text to tokenise and its class-table row: natural text is NFKC + lowercase, code loses its comments.

    `label` is `doc.metadata["language"]`; `code-*` labels select the programming language's comment syntax.
    """
    if label is not None and label.startswith("code-"):
        comments = _COMMENTS.get(label)
        if comments is None:
            raise FuxiError(f"unknown programming-language label {label!r}; known: {', '.join(_COMMENTS)}")
        return _nfkc(comments.sub(_keep_strings, text)), CODE
    return _nfkc(text).lower(), TEXT


def _nfkc(text: str) -> str:
    return text if unicodedata.is_normalized("NFKC", text) else unicodedata.normalize("NFKC", text)


# --- vectorised tokenising and hashing ------------------------------------------------------------------------------

_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
# Odd multipliers that make a token's hash depend on the order of its characters (characters past the last share
# its weight) and an n-gram's hash on the order of its tokens.
_CHAR_WEIGHTS = np.random.default_rng(0xC4A2).integers(1, 2**63, size=4096, dtype=np.uint64) | np.uint64(1)
_POSITION = np.random.default_rng(0x5EED).integers(1, 2**63, size=64, dtype=np.uint64) | np.uint64(1)
MAX_NGRAM = len(_POSITION)


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a bijection of uint64 that spreads every input bit over the output."""
    x = x ^ (x >> np.uint64(30))
    x *= _M1
    x ^= x >> np.uint64(27)
    x *= _M2
    x ^= x >> np.uint64(31)
    return x


def _tokens(texts: Sequence[str], rows: np.ndarray):
    """Token boundaries of a batch: (code points, class of each, starts, ends, documents' char offsets)."""
    lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    cp = np.frombuffer("\0".join(texts).encode("utf-32-le"), dtype=np.uint32)
    doc_chars = np.zeros(len(texts) + 1, dtype=np.int64)
    np.cumsum(lengths + 1, out=doc_chars[1:])  # "\0" after each text; it is a separator in both rows
    table = char_classes()
    cls = np.empty(len(cp), dtype=np.uint8)
    change = np.flatnonzero(np.diff(rows)) + 1  # documents of the same row are looked up together
    for first, last in zip(np.r_[0, change], np.r_[change, len(texts)]):
        span = slice(doc_chars[first], min(doc_chars[last], len(cp)))
        np.take(table[rows[first]], cp[span], out=cls[span])
    run, single = cls == RUN, cls == SINGLE
    run_before = np.concatenate(([False], run[:-1]))
    run_after = np.concatenate((run[1:], [False]))
    starts = np.flatnonzero(single | (run & ~run_before))
    ends = np.flatnonzero(single | (run & ~run_after)) + 1
    return cp, cls, starts, ends, doc_chars


def shingle_hashes(
    texts: Sequence[str], rows: Sequence[int], word_ngrams: int, char_ngrams: int, code_ngrams: int
) -> tuple[np.ndarray, np.ndarray]:
    """Hashed shingles of a batch of normalised texts (see `normalize`).

    Returns (hashes, offsets): document i's shingle hashes (uint64 values below 2**31, in text order, repeats kept)
    are `hashes[offsets[i]:offsets[i+1]]`. A document with fewer tokens than its n-gram size has one shingle of all
    its tokens, so that short exact duplicates are still found; one without tokens has none.
    """
    num_docs = len(texts)
    rows = np.asarray(rows, dtype=np.intp)
    offsets = np.zeros(num_docs + 1, dtype=np.int64)
    cp, cls, starts, ends, doc_chars = _tokens(texts, rows)
    if len(starts) == 0:
        return np.zeros(0, np.uint64), offsets

    # Token hash: the sum of its code points weighted by their position in the token, mixed.
    position = np.zeros(len(cp), dtype=np.int64)
    position[starts] = starts
    np.maximum.accumulate(position, out=position)
    np.subtract(np.arange(len(cp)), position, out=position)
    np.minimum(position, len(_CHAR_WEIGHTS) - 1, out=position)
    char_term = _CHAR_WEIGHTS[position]
    char_term *= cp
    char_term[cls == SEPARATOR] = 0
    token_hash = mix64(np.add.reduceat(char_term, starts))

    # Script decides the n-gram size of natural text: characters if most of its word characters stand alone.
    doc_tokens = np.searchsorted(starts, doc_chars)  # document i's tokens: doc_tokens[i]:doc_tokens[i+1]
    count = np.diff(doc_tokens)
    token_doc = np.repeat(np.arange(num_docs), count)
    is_single = cls[starts] == SINGLE
    single_chars = np.bincount(token_doc, weights=is_single, minlength=num_docs)
    run_chars = np.bincount(token_doc, weights=(ends - starts) * ~is_single, minlength=num_docs)
    doc_n = np.where(rows == CODE, code_ngrams, np.where(single_chars > run_chars, char_ngrams, word_ngrams))

    # n-gram hash: position-weighted sum of n token hashes. A window may run past its document's end; such windows
    # are dropped, except the first of a document shorter than n, which is recomputed without the foreign tokens.
    num_tokens = len(starts)
    n = doc_n[token_doc]
    t = np.arange(num_tokens, dtype=np.int64)
    last = doc_tokens[token_doc + 1]
    gram = None
    for size in np.unique(doc_n).tolist():
        window = token_hash * _POSITION[0]
        for k in range(1, size):
            window[:-k] += token_hash[k:] * _POSITION[k]
        gram = window if gram is None else np.where(n == size, window, gram)
    is_short = (count > 0) & (count < doc_n)
    valid = t + n <= last
    if is_short.any():
        short_tokens = np.flatnonzero(is_short[token_doc])
        first = doc_tokens[token_doc[short_tokens]]
        terms = token_hash[short_tokens] * _POSITION[short_tokens - first]
        short_first = doc_tokens[:-1][is_short]
        gram[short_first] = np.add.reduceat(terms, np.searchsorted(short_tokens, short_first))
        valid[short_first] = True
    hashes = mix64(gram[valid]) >> np.uint64(33)
    np.cumsum(np.bincount(token_doc[valid], minlength=num_docs), out=offsets[1:])
    return hashes, offsets


def tokens(text: str, label: str | None = None) -> list[str]:
    """The tokens a document is shingled from, for inspecting why two documents did or did not match."""
    normalized, row = normalize(text, label)
    _, _, starts, ends, _ = _tokens([normalized], np.array([row]))
    return [normalized[s:e] for s, e in zip(starts.tolist(), ends.tolist())]
