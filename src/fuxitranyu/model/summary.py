"""Parameter counts, memory and FLOP estimates of a configuration, without allocating the model."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fuxitranyu.model.configuration_fuxitranyu import FuxiTranyuConfig


def closed_form_parameter_count(config: FuxiTranyuConfig) -> int:
    """Parameters by formula: embeddings and lm_head (untied), then per layer attention + MLP + biases + 2 norms."""
    d, f, v = config.hidden_size, config.intermediate_size, config.vocab_size
    q_width = config.num_attention_heads * config.head_dim
    kv_width = config.num_key_value_heads * config.head_dim
    attention = d * q_width + 2 * d * kv_width + q_width * d
    if config.attention_bias:
        attention += q_width + 2 * kv_width + d
    mlp = 2 * d * f + ((f + d) if config.mlp_bias else 0)
    per_layer = attention + mlp + 2 * d
    embeddings = v * d * (1 if config.tie_word_embeddings else 2)
    return embeddings + config.num_hidden_layers * per_layer + d


def meta_parameter_count(config: FuxiTranyuConfig) -> int:
    """Parameters of the real module tree, built on the meta device (no memory is allocated)."""
    from fuxitranyu.model.modeling import FuxiTranyuForCausalLM

    with torch.device("meta"):
        model = FuxiTranyuForCausalLM(config)
    return sum(p.numel() for p in model.parameters())


@dataclass(frozen=True)
class ModelSummary:
    parameters: int
    embedding_parameters: int
    """Input embeddings plus the (untied) lm_head."""
    non_embedding_parameters: int
    training_flops_per_token: float
    """6·N_non-embedding + 6·N_lm_head + 12·L·d·T: forward + backward matmuls incl. attention scores at length T."""
    kv_cache_bytes_per_token_bf16: int
    context_length: int
    """The T of the FLOPs: the one asked for, else the model's longest (2048 for a family without a limit)."""

    def weights_gib(self, bytes_per_parameter: int) -> float:
        return self.parameters * bytes_per_parameter / 2**30


def summarize(config: FuxiTranyuConfig, context_length: int | None = None) -> ModelSummary:
    """The summary of our architecture at `config`, from its module tree on the meta device (nothing allocated)."""
    from fuxitranyu.model.modeling import FuxiTranyuForCausalLM

    with torch.device("meta"):
        return summarize_module(FuxiTranyuForCausalLM(config), context_length)


def recipe_model(recipe) -> torch.nn.Module:
    """The model a recipe trains, on the meta device: its FuxiTranyu architecture, or the model `model.init_from`
    names, with the rows an extended tokenizer adds (at most `tokenizer.new_tokens`, padded as the model stage pads
    them). Only the config is read: a plan needs no weights."""
    from fuxitranyu.model.modeling import FuxiTranyuForCausalLM

    if not recipe.model.init_from:
        with torch.device("meta"):
            return FuxiTranyuForCausalLM(recipe.build_model_config())
    from pathlib import Path

    from transformers import AutoModelForCausalLM

    from fuxitranyu.pretrain.architecture import load_config

    config = load_config(Path(recipe.model.init_from).expanduser())
    if recipe.tokenizer.mode == "extend":
        multiple = recipe.tokenizer.pad_to_multiple_of
        config.vocab_size = -(-(config.vocab_size + recipe.tokenizer.new_tokens) // multiple) * multiple
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config)


def summarize_module(model: torch.nn.Module, context_length: int | None = None) -> ModelSummary:
    """The summary of any Hugging Face causal LM module (ours or a stock architecture, real or on the meta device):
    parameters counted on the module, the widths read from its config's standard names."""
    config = model.config
    total = sum(p.numel() for p in model.parameters())
    lm_head = model.get_output_embeddings().weight
    tables = {id(w): w.numel() for w in (model.get_input_embeddings().weight, lm_head)}  # one entry when tied
    embeddings = sum(tables.values())
    layers, d = config.num_hidden_layers, config.hidden_size
    t = context_length or getattr(config, "max_position_embeddings", None) or 2048
    flops = 6 * (total - embeddings) + 6 * lm_head.numel() + 12 * layers * d * t
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or d // heads
    return ModelSummary(total, embeddings, total - embeddings, float(flops), 2 * layers * kv_heads * head_dim * 2, t)
