"""Rewrite a checkpoint between our `fuxitranyu` model type and transformers' stock `ArceeForCausalLM`.

The two architectures are the same network with the same parameter names, so conversion is a config rewrite and a
copy of the weight files, which stay byte-identical. The written checkpoint is loaded back and its logits compared
with the source's on a probe batch; an export that would compute something else is refused and removed.

What an Arcee checkpoint opens (read from the engines' sources, 2026-11): transformers' `from_pretrained` and everything
built on it (lm-eval's `hf` backend, the bare `lm-eval` CLI, TRL), and vLLM / SGLang with `--model-impl
transformers`. Their *native* Arcee implementations do not fit this network: vLLM's and SGLang's `ArceeMLP` accept only
`hidden_act == "relu2"` (SGLang also builds the MLP without biases), and llama.cpp's Arcee graph has no attention
output or MLP biases and hard-codes ReLU².
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Literal

import torch
from transformers import ArceeConfig, GenerationConfig, PreTrainedConfig

from fuxitranyu.errors import FuxiError
from fuxitranyu.io import atomic_directory
from fuxitranyu.model.configuration_fuxitranyu import FuxiTranyuConfig
from fuxitranyu.tokenizer.artifacts import copy_tokenizer

# Every field that defines the network; both config classes have all of them.
ARCHITECTURE_FIELDS = (
    "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
    "num_key_value_heads", "head_dim", "hidden_act", "max_position_embeddings", "initializer_range",
    "rms_norm_eps", "rope_parameters", "attention_bias", "mlp_bias", "attention_dropout", "tie_word_embeddings",
    "use_cache", "pad_token_id", "bos_token_id", "eos_token_id", "dtype",
)
TARGETS: dict[str, tuple[type[PreTrainedConfig], str]] = {
    "arcee": (ArceeConfig, "ArceeForCausalLM"),
    "fuxitranyu": (FuxiTranyuConfig, "FuxiTranyuForCausalLM"),
}


def convert_config(config: PreTrainedConfig, to: Literal["arcee", "fuxitranyu"]) -> PreTrainedConfig:
    if to not in TARGETS:
        raise FuxiError(f"cannot export to {to!r}; targets: {', '.join(TARGETS)}")
    if config.model_type not in TARGETS:
        raise FuxiError(f"cannot convert model_type {config.model_type!r}; expected one of {', '.join(TARGETS)}")
    config_class, architecture = TARGETS[to]
    converted = config_class(**{name: getattr(config, name) for name in ARCHITECTURE_FIELDS})
    converted.architectures = [architecture]
    return converted


PROBE_SHAPE = (2, 32)
"""Sequences × tokens of the batch whose logits must agree between source and export."""
TOLERANCE = 1e-4


def probe_logits(model_dir: Path, ids: torch.Tensor) -> torch.Tensor:
    """Logits of the checkpoint in `model_dir` (loaded through the Auto classes, in fp32) on `ids`; the model is
    freed before returning, so that only one model is in memory at a time."""
    from transformers import AutoModelForCausalLM  # our model type is registered by fuxitranyu.model's import

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    with torch.no_grad():
        logits = model(ids, attention_mask=torch.ones_like(ids)).logits
    del model
    return logits


def check_export(source: Path, exported: Path, vocab_size: int) -> float:
    """The largest logit difference between the two checkpoints on a seeded probe batch; `FuxiError` above
    `TOLERANCE`."""
    ids = torch.randint(0, vocab_size, PROBE_SHAPE, generator=torch.Generator().manual_seed(0))
    difference = (probe_logits(source, ids) - probe_logits(exported, ids)).abs().max().item()
    if not difference <= TOLERANCE:
        raise FuxiError(f"the exported checkpoint computes different logits (max difference {difference:.3g} > "
                        f"{TOLERANCE:g} on a probe batch); nothing was written", path=exported)
    return difference


def export_checkpoint(model_dir: str | Path, out_dir: str | Path, to: Literal["arcee", "fuxitranyu"],
                      tokenizer_dir: str | Path | None = None, verify: bool = True) -> float | None:
    """Write `model_dir` as a checkpoint of type `to` into `out_dir` (atomically): weights copied unchanged, config
    rewritten, a generation config and the tokenizer (from `tokenizer_dir` when the source has none) beside them.
    Returns the largest logit difference found by the check (None with `verify=False`)."""
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    config_path = model_dir / "config.json"
    if not config_path.is_file():
        raise FuxiError("not a model directory: config.json is missing", path=model_dir)
    if out_dir.resolve() == model_dir.resolve():
        raise FuxiError("output directory must differ from the input directory", path=out_dir)
    try:
        raw = json.loads(config_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise FuxiError(f"config.json is not valid JSON: {err}", path=config_path) from err
    model_type = raw.get("model_type")
    if model_type not in TARGETS:
        raise FuxiError(f"model_type {model_type!r} cannot be converted; expected one of {', '.join(TARGETS)}",
                        path=config_path)
    source_class, _ = TARGETS[model_type]
    converted = convert_config(source_class.from_dict(raw), to)
    difference = None
    with atomic_directory(out_dir) as tmp:
        for item in model_dir.iterdir():
            if item.name in ("config.json", "manifest.json") or item.name.startswith("."):
                continue
            if item.is_dir():
                shutil.copytree(item, tmp / item.name)
            else:
                shutil.copy2(item, tmp / item.name)
        converted.save_pretrained(tmp)
        if not (tmp / "generation_config.json").is_file():
            GenerationConfig.from_model_config(converted).save_pretrained(tmp)
        if tokenizer_dir is not None:
            copy_tokenizer(tokenizer_dir, tmp)
        if verify:
            difference = check_export(model_dir, tmp, converted.vocab_size)
    return difference
