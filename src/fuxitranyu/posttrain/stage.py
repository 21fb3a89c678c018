"""The `sft` and `dpo` stages: TRL's `SFTTrainer` and `DPOTrainer` on a language-filtered mixture (paper section 4).

Output of each: `model/` (a Hugging Face model directory: weights, tokenizer with `<PAD>` and the chat template,
generation config stopping at the end of a turn), `metrics.jsonl` (TRL's logs), `data_stats.json` (per set and
language: read, kept, dropped by the language filter, taken), `mix.md` (the mix table), `demo.jsonl` (the demo
examples, when they are used), `checkpoints/` (when `save_every_steps` is set).
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fuxitranyu.data.artifacts import parallel_dir
from fuxitranyu.data.parallel import parallel_sets
from fuxitranyu.errors import FuxiError
from fuxitranyu.io import atomic_write_json, atomic_write_text
from fuxitranyu.posttrain.artifacts import DATA_STATS, DEMO, MIX_TABLE
from fuxitranyu.posttrain.config import PostTrainSection
from fuxitranyu.posttrain.data import Mixture, SourceSet, mix, read_sets
from fuxitranyu.posttrain.demo import DemoSet, build_demo
from fuxitranyu.posttrain.model import (
    ChatTokenizer,
    check_fits,
    describe,
    load_base_model,
    load_chat_tokenizer,
    saved_vocab_size,
)
from fuxitranyu.posttrain.train import train, trl_arguments, trl_config
from fuxitranyu.runtime import (
    DECISIONS,
    HostMemory,
    Precision,
    RunDecisions,
    decided_host_memory,
    decided_precision,
    default_device,
)
from fuxitranyu.stage import CHECKPOINTS, METRICS, MODEL, Stage, StageContext
from fuxitranyu.tokenizer.train import portable_tokenizer_class

if TYPE_CHECKING:
    from fuxitranyu.recipe import Recipe

OUTPUTS = (MODEL, CHECKPOINTS, METRICS, DATA_STATS, MIX_TABLE, DEMO, DECISIONS)
PREVIOUS = {"sft": "pretrain", "dpo": "sft"}
"""The stage whose `model/` is the base model when the section names none."""


def _needs(key: str) -> Callable[[Recipe], tuple[str, ...]]:
    def needs(recipe: Recipe) -> tuple[str, ...]:
        section: PostTrainSection = getattr(recipe, key)
        found = ("data",) if section.data.demo is not None else ()
        return found + ((PREVIOUS[key],) if section.model is None else ())

    return needs


def _demo(ctx: StageContext, section: PostTrainSection, preference: bool) -> DemoSet:
    demo = section.data.demo
    files = parallel_sets(parallel_dir(ctx.inputs["data"]), demo.parallel_sets)
    built = build_demo(files, demo.examples, demo.prompt_languages, demo.max_chars, ctx.recipe.seed, preference)
    if ctx.world.is_main:
        atomic_write_text(ctx.out_dir / DEMO,
                          "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in built.records))
    return built


def prepare_mixture(ctx: StageContext, section: PostTrainSection, preference: bool) -> Mixture:
    from datasets import Dataset

    sets = read_sets(section.data.sets, preference, ctx.out_dir / ".cache" / f"rank-{ctx.world.rank}")
    demo = _demo(ctx, section, preference) if section.data.demo is not None else None
    if demo is not None:
        sets.append(SourceSet("demo", "data/parallel", Dataset.from_list(demo.records)))
    mixture = mix(sets, section.language_filter, ctx.recipe.seed)
    if ctx.world.is_main:
        stats = {**mixture.stats(), **({"demo": demo.stats} if demo else {})}
        atomic_write_json(ctx.out_dir / DATA_STATS, stats)
        atomic_write_text(ctx.out_dir / MIX_TABLE, mixture.markdown())
        ctx.console.print(mixture.table())
    return mixture


def _trainer(key: str, model, args, mixture: Mixture, chat: ChatTokenizer, section: PostTrainSection, base: Path):
    if key == "sft":
        from trl import SFTTrainer

        return SFTTrainer(model=model, args=args, train_dataset=mixture.dataset, processing_class=chat.tokenizer)
    from trl import DPOTrainer

    reference = None  # TRL loads the base again as the reference (or, with precompute_ref_log_probs, needs none)
    if section.reference:
        vocabularies = [saved_vocab_size(Path(section.reference)), saved_vocab_size(base)]
        if vocabularies[0] != vocabularies[1]:
            raise FuxiError(f"the reference model's vocabulary differs from the policy's ({vocabularies[0]} and "
                            f"{vocabularies[1]} ids); DPO compares their log-probabilities token by token",
                            path=section.reference)
    if section.reference or chat.pad.how == "added":  # another model, or embeddings grown for a new <PAD>
        reference = load_base_model(Path(section.reference) if section.reference else base, chat, section.attention,
                               args.seed)
    return DPOTrainer(model=model, ref_model=reference, args=args, train_dataset=mixture.dataset,
                      processing_class=chat.tokenizer)


def _quiet_unless_terminal() -> None:
    """datasets and transformers draw progress bars even into log files; keep them for terminals."""
    if not sys.stderr.isatty():
        import datasets
        import transformers

        datasets.disable_progress_bars()
        transformers.utils.logging.disable_progress_bar()


def decide(ctx: StageContext, section: PostTrainSection, device) -> tuple[Precision, HostMemory]:
    """Precision and kept host memory, decided at the run's first start and reused when it resumes (the Trainer's
    checkpoints hold optimizer state of that precision)."""
    decisions = RunDecisions(ctx.out_dir)
    precision = decided_precision(decisions, section.precision, device)
    host_memory = decided_host_memory(decisions, "auto", device)  # as pretraining: no page faults for each step
    if ctx.world.is_main:
        decisions.save()
        for key in sorted(decisions.reused):
            ctx.console.print(f"  {decisions.describe(key)}")
    return precision, host_memory


def post_train(ctx: StageContext, key: str) -> dict[str, Any]:
    section: PostTrainSection = getattr(ctx.recipe, key)
    _quiet_unless_terminal()
    if not ctx.resume and ctx.world.is_main:
        for name in OUTPUTS:
            path = ctx.out_dir / name
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
    base = Path(section.model) if section.model else ctx.inputs[PREVIOUS[key]] / MODEL
    chat = load_chat_tokenizer(base)
    mixture = prepare_mixture(ctx, section, preference=key == "dpo")
    model = load_base_model(base, chat, section.attention, ctx.recipe.seed)
    check_fits(model, section.max_length, f"{key}.max_length")
    device = default_device(ctx.world)
    precision, host_memory = decide(ctx, section, device)
    ctx.console.print(f"{key}: {len(mixture.dataset)} examples, {precision.name} ({precision.reason})")
    arguments = trl_arguments(section, key, ctx.recipe.seed, ctx.out_dir, precision, ctx.world,
                              cpu=device.type == "cpu")
    args = trl_config(section, arguments, key)
    trainer = _trainer(key, model, args, mixture, chat, section, base)
    summary = train(trainer, ctx.out_dir, ctx.resume, ctx.console)
    trainer.save_model(str(ctx.out_dir / MODEL))  # weights, config, generation config, tokenizer (FSDP-aware)
    if ctx.world.is_main:
        portable_tokenizer_class(ctx.out_dir / MODEL)
        (ctx.out_dir / MODEL / "training_args.bin").unlink(missing_ok=True)
    shutil.rmtree(ctx.out_dir / ".cache" / f"rank-{ctx.world.rank}", ignore_errors=True)
    for empty in (ctx.out_dir / ".cache", ctx.out_dir / CHECKPOINTS):
        with suppress(OSError):
            empty.rmdir()  # when empty: the cache after the last rank is done, checkpoints when none were asked for
    return {**describe(chat, model, base), **summary, "examples": len(mixture.dataset),
            "languages": mixture.stats()["languages"], "precision": precision.as_dict(),
            "host_memory": host_memory.as_dict(),
            "world_size": ctx.world.world_size}


def _stage(key: str, description: str) -> Stage:
    return Stage(key, sections=(key,), needs=_needs(key), run=lambda ctx: post_train(ctx, key),
                 description=description, enabled=lambda recipe: getattr(recipe, key) is not None, own_progress=True,
                 fingerprint_excludes=(f"{key}.log_every_steps", f"{key}.save_every_steps"))


SFT = _stage("sft", "TRL SFTTrainer on a language-filtered instruction mixture (ChatML, assistant-only loss)")
DPO = _stage("dpo", "TRL DPOTrainer on language-filtered preference pairs, the SFT model as reference")
