"""`fuxitranyu chat MODEL` and `fuxitranyu generate MODEL --prompts FILE`: talk to, or batch-generate from, any causal
LM whose tokenizer has a chat template (ours write ChatML).

`chat` streams the reply as it is generated, keeps the conversation, and understands /reset, /exit and /help; on a
terminal it prompts with `> `, with piped input it prints only the replies, one after the other. `generate` reads
prompts (JSONL or one per line), generates in left-padded batches and writes one JSON line per prompt.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from fuxitranyu.errors import FuxiError
from fuxitranyu.posttrain.model import end_of_turn_ids, load_tokenizer

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

HELP = "/reset forgets the conversation, /exit (or Ctrl-D) leaves, /help shows this."


@dataclass(frozen=True)
class Sampling:
    max_new_tokens: int = 256
    temperature: float = 0.7
    """0 decodes greedily."""
    top_p: float = 0.9
    top_k: int = 0
    """0: no top-k cut."""
    repetition_penalty: float = 1.0

    def __post_init__(self) -> None:
        if self.max_new_tokens <= 0 or self.temperature < 0 or not 0 < self.top_p <= 1 or self.top_k < 0 \
                or self.repetition_penalty <= 0:
            raise FuxiError(f"invalid sampling settings {self}: need max_new_tokens > 0, temperature >= 0, "
                            f"0 < top_p <= 1, top_k >= 0, repetition_penalty > 0")

    def generate_kwargs(self) -> dict[str, Any]:
        common = {"max_new_tokens": self.max_new_tokens, "repetition_penalty": self.repetition_penalty}
        if self.temperature == 0:
            return {**common, "do_sample": False, "temperature": None, "top_p": None, "top_k": None}
        return {**common, "do_sample": True, "temperature": self.temperature, "top_p": self.top_p,
                "top_k": self.top_k or None}


@dataclass
class ChatModel:
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    stop_ids: list[int]
    max_positions: int | None

    def encode(self, messages: list[dict[str, str]]) -> list[int]:
        return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                                  return_dict=True)["input_ids"]

    def generate(self, batch: list[list[int]], sampling: Sampling, streamer=None) -> list[list[int]]:
        """New token ids for each prompt of a batch (left-padded), cut at the first stop token."""
        import torch

        width = max(len(ids) for ids in batch)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids in batch], device=self.model.device)
        mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in batch], device=self.model.device)
        with torch.inference_mode():
            output = self.model.generate(input_ids=input_ids, attention_mask=mask, eos_token_id=self.stop_ids,
                                         pad_token_id=pad, streamer=streamer, **sampling.generate_kwargs())
        replies = []
        for row in output[:, width:].tolist():
            stop = next((i for i, token in enumerate(row) if token in self.stop_ids), None)
            replies.append(row if stop is None else row[:stop + 1])
        return replies


def load_chat_model(model_dir: Path, precision: str = "auto") -> ChatModel:
    """The model on the fastest device, in the dtype `runtime.choose_precision` picks, with its stop tokens: the
    generation config's end-of-sequence tokens and the chat template's end of turn."""
    from transformers import AutoModelForCausalLM

    import fuxitranyu  # noqa: F401  (registers the FuxiTranyu model type)
    from fuxitranyu.runtime import choose_precision, default_device

    tokenizer = load_tokenizer(model_dir)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token  # only pads prompts on the left, under the attention mask
    device = default_device()
    dtype = choose_precision(precision, device).autocast_dtype
    try:
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype or "float32").to(device).eval()
    except (OSError, ValueError, KeyError) as err:
        raise FuxiError(f"cannot load the model ({err})", path=model_dir) from None
    configured = model.generation_config.eos_token_id
    configured = configured if isinstance(configured, list) else [] if configured is None else [configured]
    stop_ids = list(dict.fromkeys(configured + end_of_turn_ids(tokenizer)))
    return ChatModel(model, tokenizer, stop_ids, getattr(model.config, "max_position_embeddings", None))


# ----------------------------------------------------------------------------------------------------------------
# chat


def _streamer(tokenizer: PreTrainedTokenizerBase, out: TextIO):
    from transformers import TextStreamer

    class ReplyStreamer(TextStreamer):
        """transformers' streamer (it waits for whole words and characters) writing to `out`."""

        def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
            out.write(text + ("\n" if stream_end else ""))
            out.flush()

    return ReplyStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)


def fit_history(chat: ChatModel, history: list[dict[str, str]], room: int) -> list[dict[str, str]]:
    """The history without its oldest exchanges (a system turn stays) until the prompt leaves `room` tokens."""
    if chat.max_positions is None:
        return history
    trimmed = list(history)
    while len(chat.encode(trimmed)) + room > chat.max_positions:
        first = 1 if trimmed[0]["role"] == "system" else 0
        if len(trimmed) - first <= 1:
            raise FuxiError(f"the message does not fit in the model's {chat.max_positions} positions with "
                            f"{room} tokens to answer; shorten it or lower --max-new-tokens")
        del trimmed[first]
    return trimmed


def chat_loop(chat: ChatModel, sampling: Sampling, system: str | None, stdin: TextIO, out: TextIO,
              notes: TextIO) -> None:
    interactive = stdin.isatty()
    start = [{"role": "system", "content": system}] if system else []
    history = list(start)
    if interactive:
        notes.write(f"Chatting with {chat.model.name_or_path}. {HELP}\n")
    while True:
        if interactive:
            out.write("> ")
            out.flush()
        line = stdin.readline()
        if not line or line.strip() in ("/exit", "/quit"):
            break
        text = line.rstrip("\n")
        if text.strip() == "/reset":
            history = list(start)
            notes.write("(conversation reset)\n")
            continue
        if text.strip() == "/help":
            notes.write(HELP + "\n")
            continue
        if not text.strip():
            continue
        history = fit_history(chat, history + [{"role": "user", "content": text}], sampling.max_new_tokens)
        reply_ids = chat.generate([chat.encode(history)], sampling, streamer=_streamer(chat.tokenizer, out))[0]
        history.append({"role": "assistant", "content": chat.tokenizer.decode(reply_ids, skip_special_tokens=True)})


# ----------------------------------------------------------------------------------------------------------------
# generate


@dataclass(frozen=True)
class Prompt:
    id: str
    messages: list[dict[str, str]]
    record: dict
    """The input record, written back with the response."""


def read_prompts(path: Path) -> list[Prompt]:
    """JSONL records with `prompt` (a string or a conversation) or `messages`, and optionally `id`; any other file
    is one prompt per non-empty line."""
    from fuxitranyu.posttrain.data import RecordError, as_turns

    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise FuxiError(f"cannot read prompts ({err})", path=path) from None
    prompts = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        if path.suffix != ".jsonl":
            prompts.append(Prompt(str(number), [{"role": "user", "content": line}], {"prompt": line}))
            continue
        try:
            record = json.loads(line)
            value = record.get("messages", record.get("prompt")) if isinstance(record, dict) else None
            if value is None:
                raise RecordError('expected {"prompt": "..."} or {"messages": [...]}')
            turns = as_turns(value, "prompt", "user")
            if not any(turn["content"].strip() for turn in turns):
                raise RecordError("an empty prompt: there is nothing to answer")
            prompts.append(Prompt(str(record.get("id", number)), turns, record))
        except (json.JSONDecodeError, RecordError) as err:
            raise FuxiError(str(err), path=path, record=number) from None
    if not prompts:
        raise FuxiError("no prompts in the file", path=path)
    return prompts


def generate_records(chat: ChatModel, prompts: list[Prompt], sampling: Sampling, batch_size: int) -> list[dict]:
    """One output record per prompt, in input order; batches group prompts of similar length."""
    from rich.progress import Progress

    encoded = [chat.encode(p.messages) for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: -len(encoded[i]))
    results: dict[int, dict] = {}
    with Progress(disable=not sys.stderr.isatty(), transient=True) as progress:
        task = progress.add_task("generating", total=len(prompts))
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            for i, reply in zip(chunk, chat.generate([encoded[i] for i in chunk], sampling)):
                finished = bool(reply) and reply[-1] in chat.stop_ids
                results[i] = {**prompts[i].record, "id": prompts[i].id,
                              "response": chat.tokenizer.decode(reply, skip_special_tokens=True),
                              "finish_reason": "stop" if finished else "length", "new_tokens": len(reply)}
            progress.advance(task, len(chunk))
    return [results[i] for i in range(len(prompts))]
