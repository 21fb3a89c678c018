"""The `pretrain` stage: train the `model` stage's checkpoint on the `mix` stage's shards.

Output: `checkpoints/` (every checkpoint the schedule asks for, each loadable with `from_pretrained`, plus the exact
training state), `metrics.jsonl`, and `model/`, the final weights as a Hugging Face model directory.
"""

from __future__ import annotations

import os
import shutil
from typing import TYPE_CHECKING, Any

from fuxitranyu.pretrain.checkpoint import latest_checkpoint

if TYPE_CHECKING:
    from fuxitranyu.pipeline import StageContext


def run_pretrain_stage(ctx: StageContext) -> dict[str, Any]:
    from fuxitranyu.pretrain.train import Trainer

    if not ctx.resume and int(os.environ.get("RANK", "0")) == 0:
        for stale in ("checkpoints", "metrics.jsonl", "tensorboard", "model"):
            path = ctx.out_dir / stale
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
    trainer = Trainer(ctx.recipe, ctx.inputs["model"], ctx.inputs["mix"], ctx.out_dir, ctx.console)
    resumed = trainer.resume() if ctx.resume else False
    stats = trainer.train()
    if trainer.runtime.rank == 0:
        final = latest_checkpoint(ctx.out_dir / "checkpoints")
        shutil.rmtree(ctx.out_dir / "model", ignore_errors=True)
        (ctx.out_dir / "model").mkdir()
        for item in final.iterdir():
            if item.name != "training_state.pt":
                shutil.copy2(item, ctx.out_dir / "model" / item.name)
    return {**stats, "resumed": resumed, "world_size": trainer.runtime.world_size}
