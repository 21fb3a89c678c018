"""The `tokenizer` stage: train on the per-language-capped sample, write the HF tokenizer directory, and measure its
fertility on the data stage's held-out parallel sets when they exist.

Training documents come from `tokenizer.inputs` when the recipe names any, else from the data stage's `clean/`.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from fuxitranyu.data.artifacts import clean_dir, parallel_dir
from fuxitranyu.data.parallel import read_parallel
from fuxitranyu.errors import FuxiError
from fuxitranyu.io import atomic_write_text
from fuxitranyu.languages import language
from fuxitranyu.stage import Stage, StageContext
from fuxitranyu.tokenizer.artifacts import EXTENSION, FERTILITY_JSON, FERTILITY_MD
from fuxitranyu.tokenizer.config import TokenizerSection
from fuxitranyu.tokenizer.corpus import plan_sample
from fuxitranyu.tokenizer.extend import extend_tokenizer, unchanged_ids
from fuxitranyu.tokenizer.fertility import (
    NamedTokenizer,
    load_named_tokenizer,
    markdown,
    measure,
    summarize_fertility,
    write_table,
)
from fuxitranyu.tokenizer.layout import CHAT_TOKENS, ENDOFTEXT, VocabularyLayout
from fuxitranyu.tokenizer.train import save_pretrained, train_bpe


def train_tokenizer(config: TokenizerSection, inputs: Sequence[str | Path], out_dir: str | Path, seed: int,
                    console: Console | None = None) -> dict[str, Any]:
    """Sample, train and save into `out_dir` (which the caller makes atomic); returns the stats for the manifest."""
    console = console or Console(stderr=True)
    layout = VocabularyLayout(config.vocab_size, config.chat_tokens, config.pad_to_multiple_of)
    started = time.perf_counter()
    sample = plan_sample(inputs, cap=config.max_documents_per_language, sampling=config.sampling, seed=seed,
                         languages=config.languages)
    console.print(f"  {config.sampling} sample: {sample.documents:,} documents of "
                  f"{sum(c.documents for c in sample.counts.values()):,} in {len(sample.counts)} languages")
    counted = time.perf_counter()
    tokenizer, learned = train_bpe(sample.texts(), layout, split_digits=config.split_digits,
                                   marks_with_letters=config.marks_with_letters, length=sample.documents)
    trained = time.perf_counter()
    if learned < config.vocab_size:
        console.print(f"  [yellow]warning:[/] the sample allowed only {learned:,} of {config.vocab_size:,} tokens; "
                      f"the other {config.vocab_size - learned:,} ids are dummy tokens")
    save_pretrained(tokenizer, out_dir, config.chat_tokens)
    sampled_bytes = sum(c.sampled_bytes for c in sample.counts.values())
    chat = list(CHAT_TOKENS) if config.chat_tokens else []
    return {
        "vocabulary": {
            "learned": learned,
            "size": layout.size,
            "dummy_tokens": layout.size - learned - len(chat),
            "special_tokens": {token: tokenizer.token_to_id(token) for token in [ENDOFTEXT, *chat]},
        },
        "sample": {
            "documents": sample.documents,
            "bytes": sampled_bytes,
            "languages": sample.stats(),
        },
        "phase_seconds": {"count": round(counted - started, 3), "sample_and_train": round(trained - counted, 3)},
        "training_mb_per_s": round(sampled_bytes / 1e6 / max(trained - counted, 1e-9), 3),
        "files": {"tokenizer.json": hashlib.sha256((Path(out_dir) / "tokenizer.json").read_bytes()).hexdigest()},
    }


def fertility_report(tokenizers: list[NamedTokenizer], parallel_folder: Path, out_dir: Path) -> dict[str, Any]:
    """fertility.json / fertility.md of the run's tokenizer (first; then the base it extends) on a folder of parallel
    sets; returns the summary of the first, and the others' per-language fertility."""
    parallel = read_parallel([parallel_folder])
    measurements = measure(tokenizers, parallel)
    write_table(measurements, out_dir / FERTILITY_JSON)
    atomic_write_text(out_dir / FERTILITY_MD, markdown(measurements))
    first, *others = [t.name for t in tokenizers]
    per_language = {name: {m.language: round(m.fertility, 4) for m in measurements if m.tokenizer == name}
                    for name in (first, *others)}
    return {"parallel_units": len(parallel.units), "per_language": per_language[first],
            **summarize_fertility(measurements)[first],
            **({"compared": {name: per_language[name] for name in others}} if others else {})}


def base_tokenizer(ctx: StageContext, console: Console) -> dict[str, Any]:
    """The base tokenizer as it is (`reuse`) or with tokens learned on the run's documents (`extend`), saved into
    the stage's folder with transformers' files; returns the stats."""
    from transformers import AutoTokenizer

    config, out_dir = ctx.recipe.tokenizer, ctx.out_dir
    base = Path(str(config.base)).expanduser()
    try:
        tokenizer = AutoTokenizer.from_pretrained(base)
    except (OSError, ValueError) as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise FuxiError(f"tokenizer.base is not a loadable tokenizer directory ({first_line.rstrip(': ')}); "
                        f"it needs the base model's tokenizer.json and tokenizer_config.json", path=base) from None
    if not tokenizer.is_fast:
        raise FuxiError("tokenizer.base has no fast tokenizer (tokenizer.json): the mix stage encodes with the "
                        "Rust tokenizers library", path=base)
    if tokenizer.eos_token_id is None:
        raise FuxiError("tokenizer.base has no end-of-text token: the mix stage ends every document with one",
                        path=base)
    specials = {token: tokenizer.convert_tokens_to_ids(token) for token in tokenizer.all_special_tokens}
    stats = {"inputs": {"base": str(base)}, "base": {"path": str(base), "mode": config.mode, "size": len(tokenizer)}}
    if config.mode == "reuse":
        tokenizer.save_pretrained(out_dir)
        console.print(f"  the base tokenizer as it is: {len(tokenizer):,} ids")
        return {**stats, "vocabulary": {"size": len(tokenizer), "learned": 0, "dummy_tokens": 0,
                                        "special_tokens": specials}}
    inputs, source = _training_inputs(ctx)
    sample = plan_sample(inputs, cap=config.max_documents_per_language, sampling=config.sampling,
                         seed=ctx.recipe.seed, languages=config.languages)
    latin = not config.languages or any(label.startswith("code-") or "Latn" in language(label).scripts
                                        for label in config.languages)
    extension = extend_tokenizer(base, out_dir, config.new_tokens, sample.texts, EXTENSION, ascii_tokens=latin)
    console.print(f"  the base tokenizer ({extension.base_size:,} ids) + {len(extension.added):,} tokens learned on "
                  f"{sample.documents:,} documents of {', '.join(sorted(sample.counts))}")
    return {**stats, "inputs": {**stats["inputs"], **source},
            "vocabulary": {"size": extension.size, "learned": len(extension.added), "dummy_tokens": 0,
                           "special_tokens": specials},
            "sample": {"documents": sample.documents, "languages": sample.stats()}}


def _training_inputs(ctx: StageContext) -> tuple[list, dict[str, Any]]:
    """(the documents to learn from, what they are for the manifest): the recipe's inputs or the data stage's."""
    config = ctx.recipe.tokenizer
    if config.inputs:
        return list(config.inputs), {"paths": list(config.inputs)}
    clean = clean_dir(ctx.inputs["data"])
    if not clean.is_dir():
        raise FuxiError("the data stage wrote no clean/ documents", path=clean)
    return [clean], {"data": ctx.input_fingerprints["data"]}


def _train(ctx: StageContext) -> dict[str, Any]:
    config = ctx.recipe.tokenizer
    inputs, source = _training_inputs(ctx)
    stats = {"inputs": source, **train_tokenizer(config, inputs, ctx.out_dir, ctx.recipe.seed, ctx.console)}
    ctx.console.print(f"  vocabulary {stats['vocabulary']['size']:,} ({stats['vocabulary']['learned']:,} learned), "
                      f"{stats['training_mb_per_s']:.2f} MB/s")
    return stats


def run_tokenizer_stage(ctx: StageContext) -> dict[str, Any]:
    config = ctx.recipe.tokenizer
    stats = base_tokenizer(ctx, ctx.console) if config.base else _train(ctx)
    parallel = parallel_dir(ctx.inputs["data"]) if "data" in ctx.inputs else None
    if parallel is not None and parallel.is_dir():
        named = [load_named_tokenizer(ctx.out_dir, name=ctx.recipe.name)]
        if config.mode == "extend":
            base = Path(str(config.base)).expanduser()
            named.append(load_named_tokenizer(base, name="base"))
            stats["unchanged_ids"] = unchanged_ids(base, ctx.out_dir, read_parallel([parallel]).units)
        stats["fertility"] = fertility_report(named, parallel, ctx.out_dir)
    return stats


def _reads_data(recipe) -> tuple[str, ...]:
    """The data stage's clean documents (or, for a base tokenizer, its parallel sets for fertility), unless the
    recipe names its own inputs (fertility is then measured only on `fuxitranyu tokenizer fertility`'s sets)."""
    return () if recipe.tokenizer.inputs and not recipe.tokenizer.base else ("data",)


STAGE = Stage("tokenizer", sections=("tokenizer",), needs=_reads_data, run=run_tokenizer_stage,
              description="byte-level BPE on a per-language-capped sample, fertility on the held-out parallel sets")
