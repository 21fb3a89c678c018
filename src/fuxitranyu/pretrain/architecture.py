"""What the trainer needs of a causal LM, found on any Hugging Face model: ours, or a stock architecture that
pretraining continues (`model.init_from`: Llama, Qwen2, Mistral, GPT-NeoX, BLOOM, ...).

The trainer computes the loss itself (the fused output layer and cross-entropy of `loss.py`), so it needs the
model's body apart from its head; it shards, compiles and checkpoints decoder layers, so it needs the list of them;
and it leaves embeddings out of weight decay. A model whose logits are not plain `hidden @ W.T` (a bias, a scale, a
soft cap) would be trained on another loss than its own, and is refused, naming what was found.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from fuxitranyu.errors import FuxiError

LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_multiplier_scale")
"""Config fields of families whose head changes the logits after `hidden @ W.T` (Gemma 2, Cohere, Granite, ...)."""


def model_type(model_dir: Path) -> str:
    """The `model_type` a checkpoint's config.json declares, read without loading anything."""
    path = Path(model_dir) / "config.json"
    try:
        return str(json.loads(path.read_text(encoding="utf-8"))["model_type"])
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as err:
        raise FuxiError(f"not a Hugging Face model directory: config.json with a model_type was expected ({err})",
                        path=path) from None


@dataclass(frozen=True)
class TrainableParts:
    body: nn.Module
    """The model without its head: called with input ids, returns `last_hidden_state`."""
    head: nn.Linear
    """The output layer, `hidden @ head.weight.T` the logits."""
    layers: nn.ModuleList
    """The decoder layers, in order (what FSDP shards and `compile` compiles one by one)."""
    embeddings: tuple[nn.Parameter, ...]
    """Input and output embedding tables (one when tied): not weight-decayed."""


def trainable_parts(model: nn.Module) -> TrainableParts:
    """The parts of `model` the trainer uses; a FuxiError naming the model class and what is missing otherwise."""
    name = type(model).__name__
    body = model.base_model
    head = model.get_output_embeddings()
    problems = []
    if body is model:
        problems.append("no base model under the head (base_model_prefix)")
    if not isinstance(head, nn.Linear):
        problems.append(f"no linear output layer (get_output_embeddings() is {type(head).__name__})")
    elif head.bias is not None:
        problems.append("an output layer with a bias")
    transforms = [field for field in LOGIT_TRANSFORMS if getattr(model.config, field, None) not in (None, 1, 1.0)]
    if transforms:
        problems.append(f"logits transformed after the output layer ({', '.join(transforms)})")
    count = getattr(model.config, "num_hidden_layers", None)
    layers = next((m for m in body.modules() if isinstance(m, nn.ModuleList) and len(m) == count), None)
    if layers is None:
        problems.append(f"no list of num_hidden_layers={count} decoder layers")
    if problems:
        raise FuxiError(f"{name} cannot be trained here: {'; '.join(problems)}. The trainer needs a causal LM whose "
                        f"logits are its last hidden state times its output layer's weight (Llama, Qwen2, Mistral, "
                        f"GPT-NeoX, BLOOM, FuxiTranyu, ...)")
    tables = {id(p): p for p in (model.get_input_embeddings().weight, head.weight)}
    return TrainableParts(body, head, layers, tuple(tables.values()))


def width_proxy(config):
    """A FuxiTranyu config of the same widths as any model's `config`: what the bf16 probe times one layer of
    (the probe asks whether bf16 pays at this width on this device, not for one family's exact layer)."""
    from fuxitranyu.model.configuration_fuxitranyu import FuxiTranyuConfig

    if isinstance(config, FuxiTranyuConfig):
        return config
    d, heads = config.hidden_size, config.num_attention_heads
    return FuxiTranyuConfig(hidden_size=d, intermediate_size=getattr(config, "intermediate_size", None) or 4 * d,
                            num_attention_heads=heads,
                            num_key_value_heads=getattr(config, "num_key_value_heads", None) or heads,
                            head_dim=getattr(config, "head_dim", None) or d // heads, num_hidden_layers=1,
                            vocab_size=config.vocab_size)


def load_config(model_dir: Path):
    """The checkpoint's config object (ours or any family transformers knows)."""
    from transformers import AutoConfig

    import fuxitranyu  # noqa: F401  registers our model type

    return AutoConfig.from_pretrained(model_dir)


def load_causal_lm(model_dir: Path, implementation: str) -> nn.Module:
    """Any causal LM checkpoint in fp32 with `implementation` as its attention kernel, its trainable parts checked."""
    from transformers import AutoModelForCausalLM

    import fuxitranyu  # noqa: F401

    try:
        model = AutoModelForCausalLM.from_pretrained(model_dir, attn_implementation=implementation,
                                                     dtype=torch.float32)
    except ValueError as err:  # e.g. an attention kernel the family does not support
        raise FuxiError(f"cannot load the model with attention {implementation!r}: {err}", path=model_dir) from None
    trainable_parts(model)
    return model
