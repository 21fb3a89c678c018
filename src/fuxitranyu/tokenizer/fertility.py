"""Fertility: tokens per word, per language, on a parallel set, for any number of tokenizers (paper 3.3, Fig. 2).

A word is what `fuxitranyu.data.text.words` says, the definition the data filters use too: a run of non-space
characters with punctuation stripped, except in the scripts written without spaces (Han, Kana, Thai, Lao, Khmer,
Myanmar: zh ja th lo km my), where every character with its combining marks is a word. Characters rather than a
dictionary segmenter: exact, fast and dependency-free, the same for every tokenizer; the price is that the fertility
of those six languages is per character and not comparable with the others' (tables mark their words `character`).
Bytes per token (UTF-8) needs no word at all and compares across every language.

Every tokenizer is measured on the same texts: all units of the parallel set that have the language. Special tokens
(a BOS that a tokenizer adds by itself) are not counted.
"""

from __future__ import annotations

import csv
import io
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from fuxitranyu.data.parallel import ParallelSet
from fuxitranyu.data.text import NO_SPACE_LANGUAGES, words
from fuxitranyu.errors import FuxiError
from fuxitranyu.io import atomic_write_json, atomic_write_text, save_figure
from fuxitranyu.languages import LABELS

WORD_DEFINITION = (
    "whitespace-separated runs with punctuation stripped; in zh ja th lo km my (no spaces between words) each "
    "character with its combining marks"
)
TABLE_SUFFIXES = (".csv", ".json", ".md")
_BATCH = 1024


# ----------------------------------------------------------------------------------------------------------------
# Tokenizers


@dataclass(frozen=True)
class NamedTokenizer:
    name: str
    count_tokens: Callable[[list[str]], list[int]]
    """Tokens of each text, special tokens left out."""


def load_named_tokenizer(spec: str | Path, name: str | None = None) -> NamedTokenizer:
    """`PATH` or `NAME=PATH`; PATH is a `tokenizer.json` or a Hugging Face tokenizer directory. Without a name, the
    directory's name (or the file's stem) names it."""
    given, sep, rest = str(spec).partition("=")
    if sep and given and not Path(spec).exists():
        path, name = Path(rest), name or given
    else:
        path = Path(spec)
    if name is None:
        name = path.parent.name if path.name == "tokenizer.json" else (path.name if path.is_dir() else path.stem)
    file = path / "tokenizer.json" if path.is_dir() else path
    if file.is_file():
        from tokenizers import Tokenizer

        try:
            tokenizer = Tokenizer.from_file(str(file))
        except Exception as err:  # tokenizers raises a bare Exception for a malformed file
            raise FuxiError(f"not a tokenizers JSON file ({err})", path=file) from None
        return NamedTokenizer(name, lambda texts: [len(e.ids) for e in
                                                   tokenizer.encode_batch_fast(texts, add_special_tokens=False)])
    if path.is_dir():
        from transformers import AutoTokenizer

        try:
            auto = AutoTokenizer.from_pretrained(path)
        except (OSError, ValueError) as err:
            raise FuxiError(f"not a tokenizer directory ({err})", path=path) from None
        return NamedTokenizer(name, lambda texts: [len(ids) for ids in
                                                   auto(texts, add_special_tokens=False)["input_ids"]])
    raise FuxiError("no tokenizer here: expected a tokenizer.json file or a Hugging Face tokenizer directory",
                    path=path)


# ----------------------------------------------------------------------------------------------------------------
# Measuring


@dataclass(frozen=True)
class Measurement:
    tokenizer: str
    language: str
    word: str
    """`whitespace` or `character` (see the module docstring)."""
    units: int
    words: int
    tokens: int
    bytes: int

    @property
    def fertility(self) -> float:
        return self.tokens / self.words

    @property
    def bytes_per_token(self) -> float:
        return self.bytes / self.tokens

    def row(self) -> dict:
        return asdict(self) | {"fertility": round(self.fertility, 4),
                               "bytes_per_token": round(self.bytes_per_token, 4)}


def _language_order(lab: str) -> tuple[int, str]:
    return (LABELS.index(lab), lab) if lab in LABELS else (len(LABELS), lab)


def measure(tokenizers: Sequence[NamedTokenizer], parallel: ParallelSet,
            languages: Sequence[str] = ()) -> list[Measurement]:
    """Tokens, words and bytes per (tokenizer, language): fertility is tokens / words over all the language's units
    (a ratio of sums, so long units weigh more, as in the paper's per-corpus numbers)."""
    names = [t.name for t in tokenizers]
    if len(set(names)) != len(names):
        raise FuxiError(f"two tokenizers have the same name ({', '.join(names)}); name them with NAME=PATH")
    present = {lab for unit in parallel.units for lab in unit["texts"]}
    wanted = sorted(set(languages) & present if languages else present, key=_language_order)
    if languages and not wanted:
        raise FuxiError(f"none of {', '.join(languages)} is in the parallel set (it has {', '.join(sorted(present))})")
    results = []
    for lab in wanted:
        texts = [unit["texts"][lab] for unit in parallel.units if lab in unit["texts"]]
        n_words = sum(len(words(text)) for text in texts)
        if n_words == 0:
            continue
        n_bytes = sum(len(text.encode("utf-8")) for text in texts)
        kind = "character" if lab in NO_SPACE_LANGUAGES else "whitespace"
        for tokenizer in tokenizers:
            tokens = sum(sum(tokenizer.count_tokens(texts[i:i + _BATCH])) for i in range(0, len(texts), _BATCH))
            results.append(Measurement(tokenizer.name, lab, kind, len(texts), n_words, tokens, n_bytes))
    if not results:
        raise FuxiError("the parallel set has no words to measure")
    return results


def summarize_fertility(measurements: Sequence[Measurement]) -> dict[str, dict]:
    """Per tokenizer: mean fertility and the spread between the best and worst language, over the languages whose
    words are whitespace-separated (the character-counted ones are not on the same scale), and mean bytes/token."""
    summary = {}
    for name in dict.fromkeys(m.tokenizer for m in measurements):
        mine = [m for m in measurements if m.tokenizer == name]
        spaced = [m for m in mine if m.word == "whitespace"] or mine
        best = min(spaced, key=lambda m: m.fertility)
        worst = max(spaced, key=lambda m: m.fertility)
        summary[name] = {
            "languages": len(spaced),
            "mean_fertility": round(statistics.fmean(m.fertility for m in spaced), 4),
            "best": {"language": best.language, "fertility": round(best.fertility, 4)},
            "worst": {"language": worst.language, "fertility": round(worst.fertility, 4)},
            "worst_to_best": round(worst.fertility / best.fertility, 4),
            "mean_bytes_per_token": round(statistics.fmean(m.bytes_per_token for m in mine), 4),
        }
    return summary


# ----------------------------------------------------------------------------------------------------------------
# Output


def markdown(measurements: Sequence[Measurement]) -> str:
    names = list(dict.fromkeys(m.tokenizer for m in measurements))
    languages = list(dict.fromkeys(m.language for m in measurements))
    cell = {(m.tokenizer, m.language): m for m in measurements}

    def pivot(title: str, value: Callable[[Measurement], float]) -> list[str]:
        lines = [title, "", "| language | units | " + " | ".join(names) + " |",
                 "|---|---:|" + "---:|" * len(names)]
        for lab in languages:
            first = cell[(names[0], lab)]
            mark = " *" if first.word == "character" else ""
            values = " | ".join(f"{value(cell[(n, lab)]):.2f}" for n in names)
            lines.append(f"| {lab}{mark} | {first.units} | {values} |")
        return lines + [""]

    lines = pivot("Fertility (tokens per word; * = every character counts as a word)", lambda m: m.fertility)
    lines += pivot("Bytes per token (UTF-8)", lambda m: m.bytes_per_token)
    lines += ["Spread over the languages written with spaces", "",
              "| tokenizer | languages | mean fertility | best | worst | worst / best | mean bytes per token |",
              "|---|---:|---:|---|---|---:|---:|"]
    for name, s in summarize_fertility(measurements).items():
        lines.append(f"| {name} | {s['languages']} | {s['mean_fertility']:.2f} | "
                     f"{s['best']['language']} {s['best']['fertility']:.2f} | "
                     f"{s['worst']['language']} {s['worst']['fertility']:.2f} | {s['worst_to_best']:.2f} | "
                     f"{s['mean_bytes_per_token']:.2f} |")
    return "\n".join(lines) + "\n"


def write_table(measurements: Sequence[Measurement], path: str | Path) -> None:
    """CSV (one row per tokenizer and language), JSON (rows + summary) or Markdown, by the file's suffix."""
    path = Path(path)
    if path.suffix not in TABLE_SUFFIXES:
        raise FuxiError(f"unknown table format: use {', '.join(TABLE_SUFFIXES)}", path=path)
    if path.suffix == ".csv":
        buffer = io.StringIO()
        rows = [m.row() for m in measurements]
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else ["tokenizer"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(path, buffer.getvalue())
    elif path.suffix == ".json":
        atomic_write_json(path, {"word": WORD_DEFINITION, "measurements": [m.row() for m in measurements],
                                 "summary": summarize_fertility(measurements)})
    else:
        atomic_write_text(path, markdown(measurements))


def plot(measurements: Sequence[Measurement], path: str | Path, title: str = "Tokenizer fertility") -> None:
    """Grouped bars per language, one bar per tokenizer, as the paper's Fig. 2 (PNG, SVG or PDF by suffix)."""
    try:
        from matplotlib.figure import (
            Figure,  # no pyplot: no global backend or figure state is touched
        )
    except ImportError:
        raise FuxiError("plotting needs matplotlib (pip install matplotlib)") from None
    path = Path(path)
    names = list(dict.fromkeys(m.tokenizer for m in measurements))
    languages = list(dict.fromkeys(m.language for m in measurements))
    cell = {(m.tokenizer, m.language): m.fertility for m in measurements}
    width = 0.8 / len(names)
    fig = Figure(figsize=(min(max(8.0, 0.05 * len(languages) * (len(names) + 1)), 20.0), 4.5))
    ax = fig.subplots()
    for i, name in enumerate(names):
        xs = [j + (i - (len(names) - 1) / 2) * width for j in range(len(languages))]
        ax.bar(xs, [cell.get((name, lab), 0.0) for lab in languages], width, label=name)
    ax.set_xticks(range(len(languages)),
                  [f"{lab}*" if lab in NO_SPACE_LANGUAGES else lab for lab in languages])
    ax.set_xlim(-0.6, len(languages) - 0.4)
    ax.set_ylabel("fertility (tokens per word)")
    ax.set_title(title)
    ax.legend(frameon=False, ncols=len(names), loc="upper center", bbox_to_anchor=(0.5, -0.08))
    ax.grid(axis="y", alpha=0.3)
    if any(lab in NO_SPACE_LANGUAGES for lab in languages):
        fig.text(0.01, 0.01, "* tokens per character (written without spaces)", fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=150)
