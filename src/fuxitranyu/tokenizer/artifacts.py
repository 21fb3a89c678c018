"""The tokenizer stage's folder, named once: a Hugging Face tokenizer directory plus the fertility measured on the
held-out parallel sets; and the one way other stages take the tokenizer along (`copy_tokenizer`)."""

from __future__ import annotations

import shutil
from pathlib import Path

from fuxitranyu.stage import Stats

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja")
"""What `AutoTokenizer.from_pretrained` reads from the directory (Hugging Face's names)."""
FERTILITY_JSON = "fertility.json"
"""Tokens per word and bytes per token per language on the data stage's parallel sets."""
FERTILITY_MD = "fertility.md"
EXTENSION = "extension.json"
"""With `tokenizer.mode: extend`: the base's size and every added token with its id (what the model stage
initialises new embedding rows for)."""


def copy_tokenizer(source: str | Path, model_dir: str | Path) -> None:
    """Put a tokenizer's files beside a model's weights, so that the directory serves on its own."""
    for name in TOKENIZER_FILES:
        if (Path(source) / name).is_file():
            shutil.copy2(Path(source) / name, Path(model_dir) / name)


class Vocabulary(Stats):
    size: int
    learned: int
    dummy_tokens: int
    special_tokens: dict[str, int]


class TokenizerStats(Stats):
    """What the tokenizer stage's manifest reports and the report reads."""

    vocabulary: Vocabulary
