"""ROUGE that means something in every script.

`rouge_score` (which lm-eval's and HF `evaluate`'s ROUGE use) lower-cases and then keeps only `[a-z0-9]` runs: a Thai,
Chinese or Bengali summary has no tokens at all and scores 0 whatever it says. Here rouge_score still does the
counting (n-gram overlap, LCS); only the tokenisation is ours, per language:

- English: rouge_score's own tokeniser with its Porter stemmer, the usual English ROUGE;
- languages written without spaces between words (zh ja th lo km my): characters, each with its combining marks;
- every other language: Unicode words (runs of non-space characters, punctuation stripped from their ends),
  case-folded, not stemmed (the Porter stemmer is English).

The words are `fuxitranyu.data.text.words`, the one definition of a word the data filters and fertility use too.
"""

from __future__ import annotations

from functools import cache

from rouge_score import rouge_scorer, tokenizers

from fuxitranyu.data.text import NO_SPACE_LANGUAGES, words

VARIANTS = ("rouge1", "rouge2", "rougeL")


def tokenization(language: str) -> str:
    """How `language` is tokenised, in words (written beside the scores)."""
    if language == "en":
        return "English words, Porter-stemmed (rouge_score's tokeniser)"
    if language in NO_SPACE_LANGUAGES:
        return "characters with their combining marks"
    return "Unicode words, case-folded, not stemmed"


class WordTokenizer(tokenizers.Tokenizer):
    """`words()`, case-folded: characters in scripts without spaces, Unicode words elsewhere."""

    def tokenize(self, text: str) -> list[str]:
        return [word.casefold() for word in words(text)]


@cache
def scorer(language: str) -> rouge_scorer.RougeScorer:
    if language == "en":
        return rouge_scorer.RougeScorer(list(VARIANTS), use_stemmer=True)
    return rouge_scorer.RougeScorer(list(VARIANTS), tokenizer=WordTokenizer())


def scores(reference: str, prediction: str, language: str) -> dict[str, float]:
    """F-measure of each variant, in [0, 1]."""
    return {name: score.fmeasure for name, score in scorer(language).score(reference, prediction).items()}


# lm-eval metric functions (see tasks/xlsum): lm-eval calls them once per document with the document's reference and
# generation and the task's `language`; the task averages them (the mean of per-summary F, as XL-Sum reports).


def rouge1(references: list[str], predictions: list[str], language: str) -> float:
    return scores(references[0], predictions[0], language)["rouge1"]


def rouge2(references: list[str], predictions: list[str], language: str) -> float:
    return scores(references[0], predictions[0], language)["rouge2"]


def rougeL(references: list[str], predictions: list[str], language: str) -> float:  # noqa: N802 (lm-eval's name)
    return scores(references[0], predictions[0], language)["rougeL"]
