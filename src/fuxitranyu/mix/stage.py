"""The `mix` stage: count tokens per language with the trained tokenizer, plan the balanced mix, pack the shards.

Tokenized documents are cached under `<run>/.cache/tokens-<data and tokenizer fingerprints>/`, so `mix plan` (which
only counts) and `mix build` tokenize once between them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from fuxitranyu.errors import FuxiError
from fuxitranyu.io import atomic_write_json
from fuxitranyu.data.readers import clean_documents
from fuxitranyu.mix.build import pack, token_dtype, tokenize_language
from fuxitranyu.mix.plan import MixPlan, plan_mix

if TYPE_CHECKING:
    from fuxitranyu.pipeline import StageContext
    from fuxitranyu.recipe import Recipe


def load_tokenizer(tokenizer_dir: Path):
    """(fast tokenizer backend, end-of-text id, vocabulary size incl. specials and padding)."""
    from transformers import AutoTokenizer

    if not (tokenizer_dir / "tokenizer.json").is_file():
        raise FuxiError("no tokenizer.json here: run the tokenizer stage first", path=tokenizer_dir)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    if tokenizer.eos_token_id is None:
        raise FuxiError("the tokenizer has no end-of-text token", path=tokenizer_dir)
    return tokenizer.backend_tokenizer, tokenizer.eos_token_id, len(tokenizer)


def count_tokens(recipe: Recipe, data_dir: Path, tokenizer, cache: Path, console: Console) -> dict[str, int]:
    """Tokens per language in the clean data, each document counted with its end-of-text token; `tokenizer` is
    what `load_tokenizer` returns."""
    backend, _, vocab_size = tokenizer
    dtype = token_dtype(vocab_size)
    clean = data_dir / "clean"
    languages = sorted(p.name for p in clean.iterdir() if p.is_dir()) if clean.is_dir() else []
    if not languages:
        raise FuxiError("the data stage produced no documents", path=clean)
    counts = {}
    for language in languages:
        done = cache / f"{language}.idx"
        if done.is_file():
            documents = done.stat().st_size // 8 - 1
            tokens = (cache / f"{language}.bin").stat().st_size // dtype.itemsize
        else:
            texts = (text for _, text in clean_documents(clean, language))
            documents, tokens = tokenize_language(texts, backend, dtype, cache,
                                                  language, recipe.mix.batch_documents)
        counts[language] = tokens + documents
    console.print(f"counted {sum(counts.values()):,} tokens in {len(counts)} languages")
    return counts


def token_cache(recipe: Recipe, data_dir: Path, tokenizer_dir: Path) -> Path:
    from fuxitranyu.pipeline import read_manifest

    fingerprints = []
    for stage_dir in (data_dir, tokenizer_dir):
        manifest = read_manifest(stage_dir)
        if manifest is None:
            raise FuxiError("stage has not run (no manifest.json)", path=stage_dir)
        fingerprints.append(manifest["fingerprint"][:12])
    return recipe.run_dir / ".cache" / f"tokens-{'-'.join(fingerprints)}"


def plan_table(plan: MixPlan, actual: dict[str, int] | None = None) -> Table:
    table = Table(title=f"mix: {plan.strategy}, budget {plan.budget:,} tokens")
    for column in ("language", "available", "tokens", "share", "epochs", "capped"):
        table.add_column(column, justify="left" if column == "language" else "right")
    if actual is not None:
        table.add_column("actual", justify="right")
    for row in plan.languages:
        cells = [row.language, f"{row.available:,}", f"{row.tokens:,}", f"{row.share:.2%}", f"{row.epochs:.2f}",
                 "yes" if row.capped else ""]
        if actual is not None:
            cells.append(f"{actual.get(row.language, 0):,}")
        table.add_row(*cells)
    return table


def make_plan(recipe: Recipe, data_dir: Path, tokenizer_dir: Path, console: Console, tokenizer=None) -> MixPlan:
    tokenizer = tokenizer or load_tokenizer(tokenizer_dir)
    available = count_tokens(recipe, data_dir, tokenizer, token_cache(recipe, data_dir, tokenizer_dir), console)
    plan = plan_mix(available, recipe.mix, recipe.mix.total_tokens or recipe.pretrain.total_tokens)
    console.print(plan_table(plan))
    for warning in plan.warnings:
        console.print(f"[yellow]warning:[/] {warning}")
    return plan


def run_mix_stage(ctx: StageContext) -> dict[str, Any]:
    recipe = ctx.recipe
    data_dir, tokenizer_dir = ctx.inputs["data"], ctx.inputs["tokenizer"]
    tokenizer = load_tokenizer(tokenizer_dir)
    plan = make_plan(recipe, data_dir, tokenizer_dir, ctx.console, tokenizer)
    _, eos_id, vocab_size = tokenizer
    index = pack(plan, token_cache(recipe, data_dir, tokenizer_dir), ctx.out_dir, recipe.pretrain.context_length,
                 eos_id, vocab_size, recipe.mix.sequences_per_shard, recipe.seed)
    ctx.console.print(plan_table(plan, index["sampled_tokens"]))
    ctx.console.print(f"{index['total_sequences']:,} sequences of {index['sequence_length']} tokens in "
                      f"{len(index['shards'])} shards; {index['tail_tokens_dropped']} tail tokens dropped")
    atomic_write_json(ctx.out_dir / "plan.json", plan.as_dict())
    return {"plan": plan.as_dict(), "sampled_tokens": index["sampled_tokens"],
            "sequences": index["total_sequences"], "tail_tokens_dropped": index["tail_tokens_dropped"]}
