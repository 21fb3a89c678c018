"""The `mix` stage: count tokens per language with the trained tokenizer, plan the balanced mix, pack the shards.

Tokenized documents are cached under `<run>/.cache/tokens-<data and tokenizer fingerprints>/`, so `mix plan` (which
only counts) and `mix build` tokenize once between them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.table import Table

from fuxitranyu.data.artifacts import clean_dir
from fuxitranyu.data.readers import clean_documents
from fuxitranyu.errors import FuxiError
from fuxitranyu.io import atomic_write_json
from fuxitranyu.mix.artifacts import PLAN
from fuxitranyu.mix.build import pack, token_dtype, tokenize_language, verified_cache
from fuxitranyu.mix.plan import MixPlan, plan_mix
from fuxitranyu.stage import Stage, StageContext
from fuxitranyu.tokenizer.train import TrainedTokenizer, load_trained_tokenizer


def count_tokens(ctx: StageContext, tokenizer: TrainedTokenizer, cache: Path) -> dict[str, int]:
    """Tokens per language in the data stage's clean documents, each document counted with its end-of-text token.
    Each language is tokenized once into `cache` and reused by later runs with the same data and tokenizer."""
    dtype = token_dtype(tokenizer.vocab_size)
    clean = clean_dir(ctx.inputs["data"])
    languages = sorted(p.name for p in clean.iterdir() if p.is_dir()) if clean.is_dir() else []
    if not languages:
        raise FuxiError("the data stage produced no documents", path=clean)
    counts = {}
    for language in languages:
        cached = verified_cache(cache, language, dtype)
        if cached is not None:
            documents, tokens = cached
        else:
            if (cache / f"{language}.idx").is_file():
                ctx.console.print(f"  [yellow]warning:[/] the token cache of {language} was damaged; tokenizing again")
            texts = (text for _, text in clean_documents(clean, language))
            documents, tokens = tokenize_language(texts, tokenizer.backend, dtype, cache, language,
                                                  ctx.recipe.mix.batch_documents)
        counts[language] = tokens + documents
    ctx.console.print(f"counted {sum(counts.values()):,} tokens in {len(counts)} languages")
    return counts


def token_cache(ctx: StageContext) -> Path:
    """Where the tokenized documents of this data + tokenizer pair are cached (named by their fingerprints)."""
    names = [ctx.input_fingerprints[stage][:12] for stage in ("data", "tokenizer")]
    return ctx.recipe.run_dir / ".cache" / f"tokens-{'-'.join(names)}"


def plan_table(plan: MixPlan, actual: dict[str, int] | None = None) -> Table:
    table = Table(title=f"mix: {plan.strategy}, budget {plan.budget:,} tokens")
    roles = any(row.role != "mix" for row in plan.languages)
    for column in ("language", *(("role",) if roles else ()), "available", "tokens", "share", "epochs", "capped"):
        table.add_column(column, justify="left" if column in ("language", "role") else "right")
    if actual is not None:
        table.add_column("actual", justify="right")
    for row in plan.languages:
        cells = [row.language, *((row.role,) if roles else ()), f"{row.available:,}", f"{row.tokens:,}",
                 f"{row.share:.2%}", f"{row.epochs:.2f}", "yes" if row.capped else ""]
        if actual is not None:
            cells.append(f"{actual.get(row.language, 0):,}")
        table.add_row(*cells)
    return table


def make_plan(ctx: StageContext, tokenizer: TrainedTokenizer | None = None) -> MixPlan:
    """Count the tokens per language (tokenizing into the cache once) and plan the mix; prints the plan."""
    tokenizer = tokenizer or load_trained_tokenizer(ctx.inputs["tokenizer"])
    available = count_tokens(ctx, tokenizer, token_cache(ctx))
    recipe = ctx.recipe
    plan = plan_mix(available, recipe.mix, recipe.mix.total_tokens or recipe.pretrain.total_tokens)
    ctx.console.print(plan_table(plan))
    for warning in plan.warnings:
        ctx.console.print(f"[yellow]warning:[/] {warning}")
    return plan


def run_mix_stage(ctx: StageContext) -> dict[str, Any]:
    recipe = ctx.recipe
    tokenizer = load_trained_tokenizer(ctx.inputs["tokenizer"])
    plan = make_plan(ctx, tokenizer)
    index = pack(plan, token_cache(ctx), ctx.out_dir, recipe.mix.context_length, tokenizer.eos_id,
                 tokenizer.vocab_size, recipe.mix.sequences_per_shard, recipe.seed, recipe.mix.validation_documents)
    ctx.console.print(plan_table(plan, index["sampled_tokens"]))
    ctx.console.print(f"{index['total_sequences']:,} sequences of {index['sequence_length']} tokens in "
                      f"{len(index['shards'])} shards; {index['tail_tokens_dropped']} tail tokens dropped")
    atomic_write_json(ctx.out_dir / PLAN, plan.as_dict())
    return {"plan": plan.as_dict(), "sampled_tokens": index["sampled_tokens"],
            "sequences": index["total_sequences"], "tail_tokens_dropped": index["tail_tokens_dropped"],
            "unigram_entropy": index["unigram_entropy"],
            "validation": {lang: entry["sequences"] for lang, entry in index["validation"].items()}}


STAGE = Stage("mix", sections=("mix", "pretrain.total_tokens"), needs=("data", "tokenizer"), run=run_mix_stage,
              description="balanced sampling plan -> tokenize -> shuffle -> pack into fixed-length sequences")
