"""The model side of post-training: a tokenizer ready for chat training (a chat template and a pad token), the base
model loaded to match it, and the final model directory written so that it serves, chats and post-trains again.

The paper pads with `<PAD>` (Appendix A). Our tokenizer pads its vocabulary with dummy tokens up to a multiple of 128,
so one dummy slot becomes `<PAD>` and the vocabulary keeps its size. A tokenizer with no pad token and no dummy slot
gets `<PAD>` as a new token, and the model's embeddings grow to the next multiple of 128.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fuxitranyu.errors import FuxiError
from fuxitranyu.tokenizer.layout import PAD_MULTIPLE, is_dummy_token

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

PAD = "<PAD>"


@dataclass(frozen=True)
class PadToken:
    token: str
    id: int
    how: str
    """`kept` (the tokenizer had a pad token), `dummy` (a dummy slot became <PAD>) or `added` (a new token)."""
    replaced: str | None = None
    """The dummy token whose slot <PAD> took."""


@dataclass
class ChatTokenizer:
    tokenizer: PreTrainedTokenizerBase
    pad: PadToken
    stop_ids: list[int]
    """Tokens that end the assistant's turn: the template's end-of-turn token and the end-of-text token."""


def load_tokenizer(model_dir: Path) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
    except (OSError, ValueError, TypeError) as err:
        raise FuxiError(f"no loadable tokenizer beside the model ({err})", path=model_dir) from None
    if not tokenizer.chat_template:
        raise FuxiError("the tokenizer has no chat template: post-training and chat need one (our tokenizer stage "
                        "writes ChatML with tokenizer.chat_tokens: true; for another model, put a "
                        "chat_template.jinja beside its tokenizer files)", path=model_dir)
    return tokenizer


def end_of_turn_ids(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """The special token that the chat template writes after an assistant's answer (ChatML: <|im_end|>), plus the
    end-of-text token: where generation stops."""
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}], tokenize=False)
    tail = rendered[rendered.rindex("y") + 1:]
    special = {i for i, token in tokenizer.added_tokens_decoder.items() if token.special}
    ids = [i for i in tokenizer(tail, add_special_tokens=False)["input_ids"] if i in special][:1]
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids


def _rename_added_token(tokenizer: PreTrainedTokenizerBase, old: str, new: str) -> PreTrainedTokenizerBase:
    """The tokenizer with the added token `old` renamed `new` (same id), through its saved files: neither
    `tokenizers` nor transformers can rename a token in place."""
    from transformers import AutoTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save_pretrained(tmp)
        for name, entries in (("tokenizer.json", "added_tokens"), ("tokenizer_config.json", "added_tokens_decoder")):
            path = Path(tmp) / name
            data = json.loads(path.read_text(encoding="utf-8"))
            found = data.get(entries) or []
            for entry in found.values() if isinstance(found, dict) else found:
                if entry.get("content") == old:
                    entry["content"] = new
            path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
        renamed = AutoTokenizer.from_pretrained(tmp)
    return renamed


def _free_dummy(tokenizer: PreTrainedTokenizerBase) -> int | None:
    """The dummy slot <PAD> takes: the first one after the other added tokens (released 8B layout: 250682, after
    <|im_start|> 250680 and <|im_end|> 250681), else the first one."""
    added = sorted(tokenizer.added_tokens_decoder.items())
    dummies = [i for i, token in added if is_dummy_token(token.content)]
    if not dummies:
        return None
    last_real = max((i for i, token in added if not is_dummy_token(token.content)), default=-1)
    return next((i for i in dummies if i > last_real), dummies[0])


def load_chat_tokenizer(model_dir: Path) -> ChatTokenizer:
    """The tokenizer beside a model, with a chat template (or an error) and a pad token."""
    tokenizer = load_tokenizer(model_dir)
    if tokenizer.pad_token is not None:
        pad = PadToken(tokenizer.pad_token, tokenizer.pad_token_id, "kept")
    elif getattr(tokenizer, "is_fast", False) and (slot := _free_dummy(tokenizer)) is not None:
        dummy = tokenizer.convert_ids_to_tokens(slot)
        tokenizer = _rename_added_token(tokenizer, dummy, PAD)
        tokenizer.pad_token = PAD
        if tokenizer.pad_token_id != slot:
            raise FuxiError(f"renaming {dummy} to {PAD} moved it from id {slot} to {tokenizer.pad_token_id}",
                            path=model_dir)
        pad = PadToken(PAD, slot, "dummy", replaced=dummy)
    else:
        tokenizer.add_special_tokens({"pad_token": PAD})
        pad = PadToken(PAD, tokenizer.pad_token_id, "added")
    return ChatTokenizer(tokenizer, pad, end_of_turn_ids(tokenizer))


def load_base_model(model_dir: Path, chat: ChatTokenizer, attention: str, seed: int = 0) -> PreTrainedModel:
    """The model in fp32 (the trainer's mixed precision keeps fp32 master weights), its embeddings grown when the
    pad token is new and beyond them, its pad and stop tokens set for generation. transformers draws the grown rows
    at random (around the mean of the others): from `seed`, so that the same run gives the same weights, and a DPO
    reference loaded apart from its policy gets the very same rows."""
    import torch
    from transformers import AutoModelForCausalLM

    import fuxitranyu  # noqa: F401  (registers the FuxiTranyu model type with the Auto classes)

    if not (model_dir / "config.json").is_file():
        raise FuxiError("not a model directory: config.json is missing", path=model_dir)
    try:
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation=attention)
    except (OSError, ValueError, KeyError) as err:
        raise FuxiError(f"cannot load the model ({err})", path=model_dir) from None
    if len(chat.tokenizer) > model.get_input_embeddings().num_embeddings:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model.resize_token_embeddings(len(chat.tokenizer), pad_to_multiple_of=PAD_MULTIPLE)
    model.config.pad_token_id = chat.pad.id
    model.generation_config.pad_token_id = chat.pad.id
    model.generation_config.eos_token_id = chat.stop_ids
    return model


def saved_vocab_size(model_dir: Path) -> int:
    """The vocabulary size in a model directory's config.json."""
    try:
        config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        message = f"not a model directory: config.json is missing or unreadable ({err})"
        raise FuxiError(message, path=model_dir) from None
    config = config.get("text_config", config)
    if "vocab_size" not in config:
        raise FuxiError("config.json has no vocab_size", path=model_dir)
    return config["vocab_size"]


def check_fits(model: PreTrainedModel, max_length: int, key: str) -> None:
    positions = getattr(model.config, "max_position_embeddings", None)
    if positions is not None and max_length > positions:
        raise FuxiError(f"{key} {max_length} is longer than the model's max_position_embeddings {positions}; "
                        f"lower it (--set {key}={positions})")


def describe(chat: ChatTokenizer, model: PreTrainedModel, base: Path) -> dict[str, Any]:
    return {"base_model": str(base), "pad_token": asdict(chat.pad), "stop_ids": chat.stop_ids,
            "vocab_size": model.get_input_embeddings().num_embeddings}
