"""The `model` stage: the recipe's architecture with seeded random weights, saved as a Hugging Face checkpoint.

It is the starting point that pretraining loads, and it makes the architecture of a run inspectable before any
compute is spent (`fuxitranyu model info runs/<name>/model`).
"""

from __future__ import annotations

from typing import Any

import torch

from fuxitranyu.errors import FuxiError
from fuxitranyu.io import file_sha256
from fuxitranyu.model.modeling import FuxiTranyuForCausalLM
from fuxitranyu.model.summary import summarize
from fuxitranyu.stage import Stage, StageContext
from fuxitranyu.tokenizer.train import load_trained_tokenizer


def write_initial_checkpoint(ctx: StageContext) -> dict[str, Any]:
    config = ctx.recipe.build_model_config()
    trained = load_trained_tokenizer(ctx.inputs["tokenizer"])
    if (trained.vocab_size, trained.eos_id) != (config.vocab_size, config.eos_token_id):
        raise FuxiError(f"the trained tokenizer has {trained.vocab_size:,} ids and end-of-text id {trained.eos_id}; "
                        f"the recipe's tokenizer section lays out {config.vocab_size:,} and {config.eos_token_id}: "
                        f"re-run the tokenizer stage", path=ctx.inputs["tokenizer"])
    summary = summarize(config)
    if summary.weights_gib(4) > 4:
        # A preset this large is initialised by the distributed trainer on its devices, not materialised here.
        config.save_pretrained(ctx.out_dir)
        ctx.console.print(f"  {summary.parameters:,} parameters: config only, weights are initialised when training")
        return {"parameters": summary.parameters, "weights": None}
    torch.manual_seed(ctx.recipe.seed)
    model = FuxiTranyuForCausalLM(config)
    model.save_pretrained(ctx.out_dir)
    ctx.console.print(f"  {summary.parameters:,} parameters, {summary.weights_gib(4) * 1024:.1f} MiB in fp32")
    return {
        "parameters": summary.parameters,
        "non_embedding_parameters": summary.non_embedding_parameters,
        "weights": {"model.safetensors": file_sha256(ctx.out_dir / "model.safetensors")},
    }


STAGE = Stage("model", sections=("model",), needs=("tokenizer",), run=write_initial_checkpoint,
              description="the recipe's architecture with seeded random weights, vocabulary from the tokenizer")
