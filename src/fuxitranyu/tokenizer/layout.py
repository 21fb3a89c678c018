"""The vocabulary layout of the released checkpoints, owned here: which id is what, how many ids there are. The
model's vocabulary size and special ids, post-training's <PAD> slot and the mix's token width all follow from it.

    0                          <|endoftext|>  (bos = eos)
    1 .. 256                   the byte alphabet
    257 .. vocab_size-1        learned merges (dummy tokens if the corpus was too small to learn them all)
    vocab_size, vocab_size+1   <|im_start|>, <|im_end|>   (released: 250680, 250681)
    ... up to a multiple of 128 dummy tokens                (released: 250,752 in all)

Light on purpose (no tokenizers import): recipes validate with it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from fuxitranyu.errors import FuxiError

ENDOFTEXT = "<|endoftext|>"
CHAT_TOKENS = ("<|im_start|>", "<|im_end|>")
BYTE_ALPHABET = 256
MIN_VOCAB_SIZE = BYTE_ALPHABET + 1
"""The byte alphabet plus <|endoftext|>: BPE cannot learn a smaller vocabulary."""
ENDOFTEXT_ID = 0
"""<|endoftext|>'s id: the model's bos and eos."""
PAD_MULTIPLE = 128
"""The vocabulary is padded with dummy tokens to a multiple of this (paper Table 4), and so are embeddings grown
later (a new <PAD>)."""
_DUMMY = "<|dummy_{}|>"
_DUMMY_PATTERN = re.compile(r"^<\|dummy_\d+\|>$")


def dummy_token(index: int) -> str:
    """The name of the `index`-th dummy token."""
    return _DUMMY.format(index)


def is_dummy_token(content: str) -> bool:
    return bool(_DUMMY_PATTERN.match(content))


def vocab_size_problem(vocab_size: int) -> str | None:
    if vocab_size >= MIN_VOCAB_SIZE:
        return None
    return (f"vocab_size {vocab_size} is smaller than the byte alphabet ({BYTE_ALPHABET}) + {ENDOFTEXT} = "
            f"{MIN_VOCAB_SIZE}: byte-level BPE needs every byte as a token")


@dataclass(frozen=True)
class VocabularyLayout:
    vocab_size: int
    """Learned vocabulary, <|endoftext|> and the byte alphabet included (paper: 250,680)."""
    chat_tokens: bool
    pad_to_multiple_of: int

    def __post_init__(self) -> None:
        problem = vocab_size_problem(self.vocab_size)
        if problem:
            raise FuxiError(problem)

    @property
    def size(self) -> int:
        """The whole vocabulary, padded (paper Table 4: 250,752)."""
        used = self.vocab_size + (len(CHAT_TOKENS) if self.chat_tokens else 0)
        return math.ceil(used / self.pad_to_multiple_of) * self.pad_to_multiple_of
