"""The `model` stage: the recipe's architecture with seeded random weights, saved as a Hugging Face checkpoint.

It is the starting point that pretraining loads, and it makes the architecture of a run inspectable before any
compute is spent (`fuxitranyu model info runs/<name>/model`).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch

from fuxitranyu.errors import FuxiError
from fuxitranyu.io import file_sha256
from fuxitranyu.model.modeling import FuxiTranyuForCausalLM
from fuxitranyu.model.summary import summarize
from fuxitranyu.stage import Stage, StageContext
from fuxitranyu.tokenizer.train import load_trained_tokenizer

BASE_MODEL_FILES = ("config.json", "generation_config.json", "model.safetensors", "model.safetensors.index.json")
"""What is taken from `model.init_from`, with every `model-*.safetensors` shard its index names."""


def copy_base_model(ctx: StageContext) -> dict[str, Any]:
    """`model.init_from` as the starting point: its config and weights copied unchanged (the manifest hashes them),
    checked to load, to be trainable here (`pretrain.architecture`) and to cover the tokenizer's ids."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from fuxitranyu.model.summary import summarize_module
    from fuxitranyu.pretrain.architecture import trainable_parts

    base = Path(str(ctx.recipe.model.init_from)).expanduser()
    names = [name for name in BASE_MODEL_FILES if (base / name).is_file()] + \
        sorted(path.name for path in base.glob("model-*.safetensors"))
    if not any(name.endswith(".safetensors") for name in names):
        raise FuxiError("model.init_from has no safetensors weights (model.safetensors or model-*.safetensors)",
                        path=base)
    for name in names:
        shutil.copy2(base / name, ctx.out_dir / name)
        if name.endswith(".safetensors"):
            check_safetensors(ctx.out_dir / name, base / name)
    grown = grow_base_model(ctx, base)
    config = AutoConfig.from_pretrained(ctx.out_dir)
    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(config)
    trainable_parts(skeleton)
    tokenizer = load_trained_tokenizer(ctx.inputs["tokenizer"])
    rows = skeleton.get_input_embeddings().weight.shape[0]
    if tokenizer.vocab_size > rows:
        raise FuxiError(f"the tokenizer has {tokenizer.vocab_size:,} ids but the model's embeddings only {rows:,} "
                        f"rows: tokenizer.base is not this model's tokenizer", path=base)
    summary = summarize_module(skeleton)
    ctx.console.print(f"  {type(skeleton).__name__} from {base}: {summary.parameters:,} parameters")
    weights = sorted(path.name for path in ctx.out_dir.glob("*.safetensors"))
    return {"parameters": summary.parameters, "non_embedding_parameters": summary.non_embedding_parameters,
            "init_from": str(base), "architecture": type(skeleton).__name__,
            **({"extension": grown} if grown else {}),
            "weights": {name: file_sha256(ctx.out_dir / name) for name in weights}}


def check_safetensors(path: Path, origin: Path) -> None:
    """A truncated or damaged weights file is refused here, not when pretraining loads it: its header must parse
    and cover the whole file."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(path, "pt") as weights:
            weights.keys()
    except (SafetensorError, OSError) as err:
        raise FuxiError(f"not a readable safetensors file ({err}); download the model again", path=origin) from None


def grow_base_model(ctx: StageContext, base: Path) -> dict[str, Any] | None:
    """With an extended tokenizer: the copied model with a row for every new id, initialised as `model.new_rows`
    says, saved over the copy; None for a tokenizer used as it is."""
    from transformers import AutoModelForCausalLM

    from fuxitranyu.model.new_tokens import base_pieces, grow_embeddings
    from fuxitranyu.tokenizer.artifacts import EXTENSION
    from fuxitranyu.tokenizer.extend import read_extension

    extension = read_extension(ctx.inputs["tokenizer"], EXTENSION)
    if extension is None:
        return None
    model = AutoModelForCausalLM.from_pretrained(ctx.out_dir, dtype=torch.float32)
    pieces = base_pieces(Path(str(ctx.recipe.tokenizer.base)).expanduser(), extension)
    grown = grow_embeddings(model, extension, pieces, ctx.recipe.model.new_rows,
                            ctx.recipe.tokenizer.pad_to_multiple_of, ctx.recipe.seed)
    for stale in ctx.out_dir.glob("model*.safetensors*"):
        stale.unlink()
    model.save_pretrained(ctx.out_dir)
    ctx.console.print(f"  embeddings grown from {grown['rows_before']:,} to {grown['rows_after']:,} rows; "
                      f"{grown['added_tokens']:,} new tokens, {grown['rows_from_pieces']:,} from their pieces' mean")
    return grown


def write_initial_checkpoint(ctx: StageContext) -> dict[str, Any]:
    if ctx.recipe.model.init_from:
        return copy_base_model(ctx)
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
              description="the recipe's architecture with seeded random weights (vocabulary from the tokenizer), "
                          "or the model it continues from")
