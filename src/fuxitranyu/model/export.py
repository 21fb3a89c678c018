"""Rewrite a checkpoint between our `fuxitranyu` model type and transformers' stock `ArceeForCausalLM`.

The two architectures are the same network with the same parameter names (DESIGN decision 1), so conversion is a
config rewrite and a copy of the weight files, which stay byte-identical. An Arcee checkpoint is served by vLLM,
SGLang and llama.cpp and evaluated by the bare `lm-eval` CLI, none of which know our model type.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Literal

from transformers import ArceeConfig, PreTrainedConfig

from fuxitranyu.errors import FuxiError
from fuxitranyu.io import atomic_directory
from fuxitranyu.model.configuration import FuxiTranyuConfig

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


def export_checkpoint(model_dir: str | Path, out_dir: str | Path, to: Literal["arcee", "fuxitranyu"]) -> Path:
    """Write `model_dir` as a checkpoint of type `to` into `out_dir` (atomically); weights are copied unchanged."""
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
    with atomic_directory(out_dir) as tmp:
        for item in model_dir.iterdir():
            if item.name == "config.json" or item.name.startswith("."):
                continue
            if item.is_dir():
                shutil.copytree(item, tmp / item.name)
            else:
                shutil.copy2(item, tmp / item.name)
        converted.save_pretrained(tmp)
    return out_dir
