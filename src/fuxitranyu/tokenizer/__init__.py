"""The tokenizer stage (paper 3.3): byte-level BPE trained on a per-language-capped sample, saved as a Hugging Face
tokenizer directory, and fertility per language compared across tokenizers (Fig. 2)."""

from fuxitranyu.lazy import lazy_exports

_WHERE = {
    "CHAT_TEMPLATE": "fuxitranyu.tokenizer.train",
    "CHAT_TOKENS": "fuxitranyu.tokenizer.layout",
    "ENDOFTEXT": "fuxitranyu.tokenizer.layout",
    "VocabularyLayout": "fuxitranyu.tokenizer.layout",
    "load_named_tokenizer": "fuxitranyu.tokenizer.fertility",
    "measure": "fuxitranyu.tokenizer.fertility",
    "plan_sample": "fuxitranyu.tokenizer.corpus",
    "plot": "fuxitranyu.tokenizer.fertility",
    "sample_sizes": "fuxitranyu.tokenizer.corpus",
    "summarize_fertility": "fuxitranyu.tokenizer.fertility",
    "train_bpe": "fuxitranyu.tokenizer.train",
    "train_tokenizer": "fuxitranyu.tokenizer.stage",
    "write_table": "fuxitranyu.tokenizer.fertility",
}
"""The package's public names and the modules they live in (`fuxitranyu.lazy`)."""

__all__ = sorted(_WHERE)
__getattr__ = lazy_exports(__name__, _WHERE)
