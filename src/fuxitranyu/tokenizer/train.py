"""Byte-level BPE as the paper trains it (3.3) and the vocabulary layout of the released checkpoints.

GPT-2's byte-level pre-tokenization (its regex, no prefix space) keeps every number whole (` ?\\p{N}+`); the paper
does not split numbers into digits. The same regex puts combining marks (`\\p{M}`: Indic vowel signs and viramas, Thai,
Khmer and Myanmar marks) in pre-tokens apart from their letters, so no token can join them; `marks_with_letters`
counts them as letters, which halves the fertility of ta, bn and hi (benchmarks/RESULTS.md). The ids follow
`fuxitranyu.tokenizer.layout`; the ChatML ids do not depend on how many merges the corpus allowed, so they always
match the recipe.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tokenizers import (
    AddedToken,
    Regex,
    Tokenizer,
    decoders,
    models,
    pre_tokenizers,
    processors,
    trainers,
)

from fuxitranyu.errors import FuxiError
from fuxitranyu.io import atomic_write_json
from fuxitranyu.tokenizer.layout import CHAT_TOKENS, ENDOFTEXT, VocabularyLayout, dummy_token

# ChatML. `{% generation %}` marks what the assistant says (with its <|im_end|>, so that a model learns to stop):
# transformers' `return_assistant_tokens_mask` and TRL's `assistant_only_loss` read it.
CHAT_TEMPLATE = """\
{%- for message in messages %}
    {{- '<|im_start|>' + message['role'] + '\\n' }}
    {%- if message['role'] == 'assistant' %}
        {%- generation %}
            {{- message['content'] + '<|im_end|>' }}
        {%- endgeneration %}
        {{- '\\n' }}
    {%- else %}
        {{- message['content'] + '<|im_end|>\\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
"""


# GPT-2's pre-tokenization regex with combining marks counted as letters (\p{L} -> [\p{L}\p{M}]).
GPT2_PATTERN_MARKS_WITH_LETTERS = (
    r"""'s|'t|'re|'ve|'m|'ll|'d| ?[\p{L}\p{M}]+| ?\p{N}+| ?[^\s\p{L}\p{M}\p{N}]+|\s+(?!\S)|\s+"""
)


def pre_tokenizer(split_digits: bool = False, marks_with_letters: bool = False) -> pre_tokenizers.PreTokenizer:
    if marks_with_letters:
        steps = [pre_tokenizers.Split(Regex(GPT2_PATTERN_MARKS_WITH_LETTERS), behavior="isolated"),
                 pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]
    else:
        steps = [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]
    if split_digits:
        steps.insert(0, pre_tokenizers.Digits(individual_digits=True))
    return steps[0] if len(steps) == 1 else pre_tokenizers.Sequence(steps)


def train_bpe(texts: Iterable[str], layout: VocabularyLayout, *, split_digits: bool = False,
              marks_with_letters: bool = False, length: int | None = None) -> tuple[Tokenizer, int]:
    """Train on `texts` and complete the layout above; returns the tokenizer and the number of learned tokens."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizer(split_digits, marks_with_letters)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=layout.vocab_size,
        special_tokens=[ENDOFTEXT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,  # the stage's own display; tokenizers' bars would draw lines under it
    )
    tokenizer.train_from_iterator(texts, trainer, length=length)
    learned = tokenizer.get_vocab_size()
    shortfall = layout.vocab_size - learned
    chat = list(CHAT_TOKENS) if layout.chat_tokens else []
    padding = layout.size - layout.vocab_size - len(chat)
    dummies = [dummy_token(i) for i in range(shortfall + padding)]
    added = dummies[:shortfall] + chat + dummies[shortfall:]
    tokenizer.add_special_tokens([AddedToken(token, special=True, normalized=False) for token in added])
    assert tokenizer.get_vocab_size() == layout.size
    return tokenizer, learned


def save_pretrained(tokenizer: Tokenizer, out_dir: str | Path, chat_tokens: bool) -> None:
    """An HF tokenizer directory (tokenizer.json, tokenizer_config.json, chat_template.jinja) for AutoTokenizer."""
    from transformers import PreTrainedTokenizerFast

    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=ENDOFTEXT,
        eos_token=ENDOFTEXT,
        chat_template=CHAT_TEMPLATE if chat_tokens else None,
    )
    fast.save_pretrained(out_dir)
    portable_tokenizer_class(out_dir)


def portable_tokenizer_class(tokenizer_dir: str | Path) -> None:
    """transformers 5 saves a fast tokenizer under its new class name; the old one loads in transformers 4 and 5
    (vLLM, lm-eval pins)."""
    config_path = Path(tokenizer_dir) / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    if config.get("tokenizer_class") in ("TokenizersBackend", "PreTrainedTokenizerFast"):
        config["tokenizer_class"] = "PreTrainedTokenizerFast"
        atomic_write_json(config_path, config)


@dataclass(frozen=True)
class TrainedTokenizer:
    """What the mix and model stages need of a trained tokenizer directory."""

    backend: Tokenizer
    """The Rust tokenizer (batch encoding on all cores)."""
    eos_id: int
    """<|endoftext|>, appended after every document when packing."""
    vocab_size: int
    """Every id, special and dummy tokens included: the model's vocabulary size."""


def load_trained_tokenizer(directory: str | Path) -> TrainedTokenizer:
    from transformers import AutoTokenizer

    directory = Path(directory)
    if not (directory / "tokenizer.json").is_file():
        raise FuxiError("no tokenizer.json here: run the tokenizer stage first", path=directory)
    try:
        tokenizer = AutoTokenizer.from_pretrained(directory)
    except (OSError, ValueError) as err:
        raise FuxiError(f"not a loadable tokenizer directory ({err})", path=directory) from None
    if tokenizer.eos_token_id is None:
        raise FuxiError("the tokenizer has no end-of-text token", path=directory)
    return TrainedTokenizer(tokenizer.backend_tokenizer, tokenizer.eos_token_id, len(tokenizer))
