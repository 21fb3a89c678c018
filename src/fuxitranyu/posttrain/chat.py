"""`fuxitranyu chat MODEL` and `fuxitranyu generate MODEL --prompts FILE`: talk to, or batch-generate from, any causal
LM whose tokenizer has a chat template (ours write ChatML).

`chat` streams the reply as it is generated, keeps the conversation, and understands /reset, /exit and /help; on a
terminal it prompts with `> ` (a message of several lines goes between two lines of three quotes), with piped input each
paragraph is a message and only the replies are printed. Replies get what the model's context leaves. `generate` reads
prompts (JSONL or one per line), generates in left-padded batches and writes one JSON line per prompt.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from fuxitranyu.errors import FuxiError
from fuxitranyu.posttrain.model import end_of_turn_ids, load_tokenizer

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

HELP = ('/reset forgets the conversation, /exit (or Ctrl-D) leaves, /help shows this; a line of """ '
        'starts a message of several lines and another ends it.')


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


MULTILINE = '"""'
"""On a terminal, a line of three quotes opens a message of several lines and another closes it (as ollama's chat)."""


def read_messages(stdin: TextIO, interactive: bool, out: TextIO) -> Iterator[str]:
    """The user's messages: on a terminal a line each, or several lines between two MULTILINE lines; from a pipe or a
    file, paragraphs (messages separated by a blank line), so that a message may hold line breaks."""
    paragraph: list[str] = []
    while True:
        if interactive:
            out.write("> ")
            out.flush()
        line = stdin.readline()
        if not line:
            break
        text = line.rstrip("\n")
        if interactive and text.strip() == MULTILINE:
            yield "\n".join(_lines_until(stdin, out, MULTILINE))
        elif interactive:
            yield text
        elif text.strip():
            paragraph.append(text)
        elif paragraph:
            yield "\n".join(paragraph)
            paragraph = []
    if paragraph:
        yield "\n".join(paragraph)


def _lines_until(stdin: TextIO, out: TextIO, closing: str) -> list[str]:
    lines = []
    while True:
        out.write(". ")
        out.flush()
        line = stdin.readline()
        if not line or line.strip() == closing:
            return lines
        lines.append(line.rstrip("\n"))


@dataclass
class Budget:
    """How many tokens a reply may have: what was asked (`--max-new-tokens`), or less when the model's context
    leaves less after the prompt; said once, the first time it happens."""

    wanted: int
    max_positions: int | None
    told: bool = False

    def prompt_room(self) -> int:
        """Tokens kept free for the reply when old turns are dropped to make the prompt fit."""
        return self.wanted if self.max_positions is None else min(self.wanted, self.max_positions // 2)

    def for_prompt(self, prompt_tokens: int, notes: TextIO) -> int:
        if self.max_positions is None:
            return self.wanted
        allowed = min(self.wanted, self.max_positions - prompt_tokens)
        if allowed < self.wanted and not self.told:
            notes.write(f"(replies are cut at the {self.max_positions} positions of the model's context: this one at "
                        f"{allowed} tokens)\n")
            self.told = True
        return allowed


def fit_history(chat: ChatModel, history: list[dict[str, str]], room: int) -> list[dict[str, str]] | None:
    """The history without its oldest exchanges (a system turn stays) until the prompt leaves `room` tokens; None
    when the last message alone does not fit."""
    if chat.max_positions is None:
        return history
    trimmed = list(history)
    while len(chat.encode(trimmed)) + room > chat.max_positions:
        first = 1 if trimmed[0]["role"] == "system" else 0
        if len(trimmed) - first <= 1:
            return None
        del trimmed[first]
    return trimmed


def chat_loop(chat: ChatModel, sampling: Sampling, system: str | None, stdin: TextIO, out: TextIO,
              notes: TextIO) -> None:
    interactive = stdin.isatty()
    start = [{"role": "system", "content": system}] if system else []
    history = list(start)
    budget = Budget(sampling.max_new_tokens, chat.max_positions)
    if interactive:
        notes.write(f"Chatting with {chat.model.name_or_path}. {HELP}\n")
    for text in read_messages(stdin, interactive, out):
        command = text.strip()
        if command in ("/exit", "/quit"):
            break
        if command == "/reset":
            history = list(start)
            notes.write("(conversation reset)\n")
            continue
        if command == "/help":
            notes.write(HELP + "\n")
            continue
        if not command:
            continue
        fitted = fit_history(chat, history + [{"role": "user", "content": text}], budget.prompt_room())
        if fitted is None:
            notes.write(f"(this message does not fit in the model's {chat.max_positions} positions with room for a "
                        f"reply; shorten it)\n")
            continue
        prompt = chat.encode(fitted)
        turn = replace(sampling, max_new_tokens=budget.for_prompt(len(prompt), notes))
        reply_ids = chat.generate([prompt], turn, streamer=_streamer(chat.tokenizer, out))[0]
        reply = chat.tokenizer.decode(reply_ids, skip_special_tokens=True)
        history = fitted + [{"role": "assistant", "content": reply}]


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
