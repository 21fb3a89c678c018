"""The `tokenizer` section of a recipe (paper section 3.3)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from fuxitranyu.config_base import Count, LanguageList, Section
from fuxitranyu.tokenizer.layout import PAD_MULTIPLE, VocabularyLayout, vocab_size_problem


class TokenizerSection(Section):
    vocab_size: Count = Field(32_000, gt=0)
    """Vocabulary learned by BPE, <|endoftext|> (id 0) and the 256 byte tokens included, before the ChatML tokens
    and the padding (paper 3.3: 250,680). At least 257."""
    pad_to_multiple_of: int = Field(PAD_MULTIPLE, gt=0)
    """Dummy tokens are appended until the vocabulary is a multiple of this (paper Table 4: 128)."""
    max_documents_per_language: Count = Field(1_000_000, gt=0)
    """Training sample: at most this many documents per language (paper 3.3: 1M; all of a smaller language)."""
    sampling: Literal["balanced", "proportional"] = "balanced"
    """How the sample is drawn: `balanced` takes min(max_documents_per_language, available) documents of every
    language (paper 3.3); `proportional` draws the same total, shared by the languages' shares of the corpus."""
    split_digits: bool = False
    """Split numbers into single digits. The paper does not (3.3)."""
    marks_with_letters: bool = False
    """Pre-tokenize with GPT-2's regex but count combining marks (Indic vowel signs and viramas, Thai, Khmer, Myanmar
    marks) as letters. GPT-2's own regex (the paper's, False) cuts words of those scripts at every mark, so that
    tokens per word in ta, bn and hi about double (benchmarks/RESULTS.md)."""
    chat_tokens: bool = True
    """Add ChatML `<|im_start|>` / `<|im_end|>` right after the learned vocabulary (released ids 250680, 250681)."""
    inputs: list[str] = []
    """Train on these instead of the data stage's `clean/` documents: JSONL files (.jsonl, .jsonl.gz, .jsonl.zst)
    with `text` and `language` (or `metadata.language`) fields, folders of them, or folders of .txt files (one
    document each); a file inside a folder named by a language label (`fr/`, `code-python/`) needs no language field."""
    languages: LanguageList = []
    """Train on these language labels only; each must have documents. Empty: every language of the inputs."""
    base: str | None = None
    """An existing Hugging Face tokenizer directory (with `model.init_from`, the base model's) to use instead of
    training one from scratch (docs/adapt.md)."""
    mode: Literal["reuse", "extend"] = "reuse"
    """What to do with `base`: `reuse` it as it is, or `extend` it with `new_tokens` tokens learned on this run's
    documents of `languages` (sampled as above), appended after the base's ids."""
    new_tokens: int = Field(0, ge=0)
    """Tokens to add with `mode: extend`."""

    @model_validator(mode="after")
    def _extension_is_complete(self) -> TokenizerSection:
        if self.mode == "extend" and (not self.base or self.new_tokens == 0):
            raise ValueError("tokenizer.mode extend needs tokenizer.base and tokenizer.new_tokens > 0")
        return self

    def layout(self) -> VocabularyLayout:
        """The ids this section's tokenizer has: what the model's vocabulary size follows."""
        return VocabularyLayout(self.vocab_size, self.chat_tokens, self.pad_to_multiple_of)

    @field_validator("vocab_size")
    @classmethod
    def _holds_byte_alphabet(cls, value: int) -> int:
        problem = vocab_size_problem(value)
        if problem:
            raise ValueError(problem)
        return value

