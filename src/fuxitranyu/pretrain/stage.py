"""The `pretrain` stage: train the `model` stage's checkpoint on the `mix` stage's shards.

Output: `checkpoints/` (every checkpoint the schedule asks for, each loadable with `from_pretrained`, plus the exact
training state), `metrics.jsonl`, and `model/`: the final weights with the tokenizer and generation config beside
them, a Hugging Face model directory that serves on its own.
"""

from __future__ import annotations

import shutil
from typing import Any

from fuxitranyu.pretrain.artifacts import TENSORBOARD
from fuxitranyu.pretrain.checkpoint import DESCRIPTION, STATE, list_checkpoints
from fuxitranyu.pretrain.train import Trainer
from fuxitranyu.runtime import DECISIONS
from fuxitranyu.stage import CHECKPOINTS, METRICS, MODEL, Stage, StageContext
from fuxitranyu.tokenizer.artifacts import copy_tokenizer

OUTPUTS = (CHECKPOINTS, METRICS, TENSORBOARD, MODEL, DECISIONS)


def run_pretrain_stage(ctx: StageContext) -> dict[str, Any]:
    if not ctx.resume and ctx.world.is_main:
        for stale in OUTPUTS:
            path = ctx.out_dir / stale
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
    trainer = Trainer(ctx.recipe, ctx.inputs["model"], ctx.inputs["mix"], ctx.out_dir, ctx.console, ctx.world)
    resumed = trainer.resume() if ctx.resume else False
    stats = trainer.train()
    if ctx.world.is_main:
        final = list_checkpoints(ctx.out_dir / CHECKPOINTS)[-1]
        model_dir = ctx.out_dir / MODEL
        shutil.rmtree(model_dir, ignore_errors=True)
        model_dir.mkdir()
        for item in final.iterdir():
            if item.name not in (STATE, DESCRIPTION):
                shutil.copy2(item, model_dir / item.name)
        copy_tokenizer(ctx.inputs["tokenizer"], model_dir)
    return {**stats, "resumed": resumed, "world_size": ctx.world.world_size,
            "precision": trainer.runtime.precision.as_dict(), "host_memory": trainer.runtime.host_memory.as_dict(),
            "attention": trainer.attention.as_dict("attention"), "compile": trainer.compiled.as_dict("compile")}


STAGE = Stage("pretrain", sections=("pretrain",), needs=("model", "mix", "tokenizer"), run=run_pretrain_stage,
              description="AdamW + cosine schedule over the packed mix (DDP/FSDP2 under torchrun), checkpoints",
              fingerprint_excludes=("pretrain.log_every_steps", "pretrain.hardware"), own_progress=True,
              unhashed=(CHECKPOINTS,))
