"""Extending an existing BPE tokenizer with tokens learned on new languages (`tokenizer.mode: extend`).

A BPE is learned on the target languages' sample with the base's own normaliser and pre-tokenizer (so that a new
token is a piece the base's pipeline can produce), and its merges are walked in the order it learned them: a merge
whose result the base already has is skipped, any other is appended after the base's merges, its token after the
base's ids (ids of the base never change meaning; special tokens keep theirs). Characters of the targets' alphabet
that the base lacks (a SentencePiece-style vocabulary that spells them in bytes) are added first, as tokens.

BPE applies merges by rank, and the appended ones rank last. So text keeps the base's tokens unless the base's final
segmentation of one of its words holds two adjacent tokens that an appended merge joins; the extension reports how
often that happens on each language of the held-out parallel sets (`unchanged_ids`). Merges learned on the targets'
scripts do not join pieces of other scripts, but the targets' documents also hold ASCII (code, options, English
words), and a merge of ASCII pieces would change English and code: when no target is written in the Latin script,
tokens made of ASCII characters only are not added (`ascii_tokens`).

Hand-written because the tokenizers library trains a vocabulary from scratch but has no way to grow one.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from fuxitranyu.errors import FuxiError
from fuxitranyu.io import atomic_write_json

ATTEMPTS = (2, 4, 8)
"""Learned vocabulary sizes tried, as multiples of the tokens wanted: learned pieces the base already has are skipped,
so the learner must learn more than it adds."""


@dataclass(frozen=True)
class Extension:
    base_size: int
    """Ids of the base tokenizer (its largest id + 1, special tokens included)."""
    added: list[tuple[int, str]]
    """(id, token) of every added token, in order (token strings in the base's vocabulary alphabet)."""

    @property
    def size(self) -> int:
        return self.base_size + len(self.added)

    def as_dict(self) -> dict:
        return {"base_size": self.base_size, "size": self.size, "added": [list(item) for item in self.added]}


def _learner(base: dict, merges_wanted: int, texts: Callable[[], Iterable[str]]):
    """A BPE learned on `texts` with the base's normaliser and pre-tokenizer, `merges_wanted` merges beyond its
    alphabet: (its merges in order, its alphabet)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    learner = Tokenizer(models.BPE(unk_token=base["model"].get("unk_token")))
    for kind in ("normalizer", "pre_tokenizer"):
        if base.get(kind):
            setattr(learner, kind, _component(base[kind], kind))
    byte_level = "ByteLevel" in json.dumps(base.get("pre_tokenizer"))
    alphabet = pre_tokenizers.ByteLevel.alphabet() if byte_level else sorted({c for text in texts() for c in text})
    trainer = trainers.BpeTrainer(vocab_size=len(alphabet) + merges_wanted, initial_alphabet=alphabet,
                                  show_progress=False)
    learner.train_from_iterator(texts(), trainer)
    learned = json.loads(learner.to_str())["model"]
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in learned["merges"]]
    results = {a + b for a, b in merges}
    ordered = sorted(learned["vocab"], key=learned["vocab"].__getitem__)
    return merges, [token for token in ordered if token not in results]


def _component(spec: dict, kind: str):
    """A normaliser or pre-tokenizer object rebuilt from its tokenizer.json entry."""
    from tokenizers import Tokenizer

    shell = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": [], "normalizer": None,
             "pre_tokenizer": None, "post_processor": None, "decoder": None,
             "model": {"type": "BPE", "vocab": {}, "merges": []}, kind: spec}
    return getattr(Tokenizer.from_str(json.dumps(shell)), kind)


def _ascii_only(byte_level: bool) -> Callable[[str], bool]:
    """Whether a vocabulary entry spells only ASCII characters (byte-level entries map each character to a byte)."""
    if not byte_level:
        return lambda token: all(ord(c) < 128 or c == "\u2581" for c in token)  # ▁: SentencePiece's space
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    byte_of = {character: byte for byte, character in bytes_to_unicode().items()}
    return lambda token: all(byte_of.get(c, 255) < 128 for c in token)


def extend_bpe(base_json: dict, new_tokens: int, texts: Callable[[], Iterable[str]], ascii_tokens: bool = True
               ) -> tuple[dict, Extension]:
    """The base tokenizer.json grown by up to `new_tokens` tokens learned on `texts` (called once per attempt);
    without `ascii_tokens`, tokens spelling only ASCII are left out."""
    model = base_json["model"]
    if model.get("type") != "BPE":
        raise FuxiError(f"tokenizer.mode extend needs a BPE tokenizer; the base's model is {model.get('type')}")
    vocab: dict[str, int] = dict(model["vocab"])
    # The base's added tokens (specials such as Llama 3's <|begin_of_text|> at 128000) join the model's vocabulary at
    # their ids: the tokenizers library gives an added token that its model lacks the next free id at load time,
    # which after appended tokens would no longer be the id the base model was trained with.
    vocab.update({token["content"]: token["id"] for token in base_json.get("added_tokens", [])
                  if token["content"] not in vocab})
    base_size = max(vocab.values()) + 1
    added: list[tuple[int, str]] = []
    merges: list[tuple[str, str]] = []
    ascii_only = _ascii_only("ByteLevel" in json.dumps(base_json.get("pre_tokenizer")))
    for factor in ATTEMPTS:
        learned, alphabet = _learner(base_json, factor * new_tokens, texts)
        added, merges = [], []
        for token in alphabet:  # characters the base spells in bytes
            if token not in vocab and len(added) < new_tokens:
                added.append((base_size + len(added), token))
        known = set(vocab) | {token for _, token in added}
        for left, right in learned:
            if len(added) >= new_tokens:
                break
            token = left + right
            if token in known or left not in known or right not in known or (not ascii_tokens and ascii_only(token)):
                continue
            added.append((base_size + len(added), token))
            merges.append((left, right))
            known.add(token)
        if len(added) >= new_tokens:
            break
    grown = json.loads(json.dumps(base_json))
    grown["model"]["vocab"] = {**vocab, **{token: index for index, token in added}}
    strings = bool(model["merges"]) and isinstance(model["merges"][0], str)
    grown["model"]["merges"] = list(model["merges"]) + [f"{a} {b}" if strings else [a, b] for a, b in merges]
    return grown, Extension(base_size, added)


def extend_tokenizer(base_dir: Path, out_dir: Path, new_tokens: int, texts: Callable[[], Iterable[str]],
                     extension_file: str, ascii_tokens: bool = True) -> Extension:
    """Save the base tokenizer (all of transformers' files) into `out_dir` with its tokenizer.json extended, and the
    list of added tokens as `extension_file`."""
    from transformers import AutoTokenizer

    path = base_dir / "tokenizer.json"
    try:
        base_json = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise FuxiError(f"tokenizer.mode extend needs the base's tokenizer.json ({err})", path=path) from None
    grown, extension = extend_bpe(base_json, new_tokens, texts, ascii_tokens)
    base = AutoTokenizer.from_pretrained(base_dir)
    base.save_pretrained(out_dir)
    (out_dir / "tokenizer.json").write_text(json.dumps(grown, ensure_ascii=False), encoding="utf-8")
    extended = AutoTokenizer.from_pretrained(out_dir).get_vocab()
    moved = sorted(token for token, index in base.get_vocab().items() if extended.get(token) != index)
    if moved:  # a guard: the promise of this module is that no base id changes meaning
        raise FuxiError(f"extending moved base tokens to other ids ({', '.join(moved[:5])}); the base's "
                        f"tokenizer.json has a layout this extension does not handle", path=path)
    atomic_write_json(out_dir / extension_file, extension.as_dict())
    return extension


def read_extension(tokenizer_dir: Path, extension_file: str) -> Extension | None:
    """The extension a tokenizer stage recorded, or None for a tokenizer that was not extended."""
    path = tokenizer_dir / extension_file
    if not path.is_file():
        return None
    raw = json.loads(path.read_text(encoding="utf-8"))
    return Extension(int(raw["base_size"]), [(int(index), str(token)) for index, token in raw["added"]])


def unchanged_ids(base_dir: Path, extended_dir: Path, units: list[dict]) -> dict[str, float]:
    """Per language, the share of the parallel units whose ids the extended tokenizer leaves as the base had them."""
    from tokenizers import Tokenizer

    base, extended = (Tokenizer.from_file(str(folder / "tokenizer.json")) for folder in (base_dir, extended_dir))
    texts: dict[str, list[str]] = {}
    for unit in units:
        for language, text in unit["texts"].items():
            texts.setdefault(language, []).append(text)
    shares = {}
    for language, batch in sorted(texts.items()):
        before = base.encode_batch_fast(batch, add_special_tokens=False)
        after = extended.encode_batch_fast(batch, add_special_tokens=False)
        shares[language] = round(sum(a.ids == b.ids for a, b in zip(before, after)) / len(batch), 4)
    return shares
