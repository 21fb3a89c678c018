"""The tokenizer stage (paper 3.3): byte-level BPE trained on a per-language-capped sample, saved as a Hugging Face
tokenizer directory, and fertility per language compared across tokenizers (Fig. 2)."""

from fuxitranyu.tokenizer.corpus import plan_sample, sample_sizes
from fuxitranyu.tokenizer.fertility import (
    load_named_tokenizer,
    measure,
    plot,
    summarize_fertility,
    write_table,
)
from fuxitranyu.tokenizer.layout import CHAT_TOKENS, ENDOFTEXT, VocabularyLayout
from fuxitranyu.tokenizer.stage import train_tokenizer
from fuxitranyu.tokenizer.train import CHAT_TEMPLATE, train_bpe

__all__ = [
    "CHAT_TEMPLATE", "CHAT_TOKENS", "ENDOFTEXT", "VocabularyLayout", "load_named_tokenizer", "measure", "plan_sample",
    "plot", "sample_sizes", "summarize_fertility", "train_bpe", "train_tokenizer", "write_table",
]
