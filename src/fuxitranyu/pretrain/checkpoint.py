"""Checkpoints: a `save_pretrained` model directory plus the exact training state, written atomically.

    checkpoints/step-000120/            model (config.json, model.safetensors) + training_state.pt
    checkpoints/manifest.json           [{step, tokens, path, sha256}] of complete checkpoints, oldest first

A checkpoint is written under a temporary name, renamed when complete, and only then listed in the manifest; a kill
at any moment leaves either the previous manifest or the new one, never a listed checkpoint that is incomplete.
Under FSDP every rank takes part in gathering the full state; rank 0 writes.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from fuxitranyu.errors import FuxiError
from fuxitranyu.io import atomic_write_json, file_sha256

MANIFEST = "manifest.json"
STATE = "training_state.pt"


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def full_state_dicts(wrapper: torch.nn.Module, model: torch.nn.Module, optimizer, sharded: bool
                     ) -> tuple[dict, dict]:
    """Unsharded model and optimizer state dicts (on CPU), gathered from every rank when the model is sharded."""
    if sharded:
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            get_model_state_dict,
            get_optimizer_state_dict,
        )

        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        return (get_model_state_dict(model, options=options),
                get_optimizer_state_dict(wrapper, optimizer, options=options))
    return ({k: v.detach().cpu() for k, v in model.state_dict().items()}, optimizer.state_dict())


def load_full_state_dicts(wrapper, model, optimizer, model_state: dict, optimizer_state: dict, sharded: bool) -> None:
    if sharded:
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_model_state_dict,
            set_optimizer_state_dict,
        )

        options = StateDictOptions(full_state_dict=True)
        set_model_state_dict(model, model_state, options=options)
        set_optimizer_state_dict(wrapper, optimizer, optimizer_state, options=options)
        return
    model.load_state_dict(model_state)
    optimizer.load_state_dict(optimizer_state)


def save_checkpoint(folder: Path, step: int, tokens: int, wrapper, model, optimizer, training_state: dict,
                    sharded: bool, rank: int) -> Path | None:
    """Write `folder/step-<step>` and list it in the manifest; returns its path on rank 0."""
    model_state, optimizer_state = full_state_dicts(wrapper, model, optimizer, sharded)
    final = folder / f"step-{step:06d}"
    if rank == 0:
        tmp = folder / f".step-{step:06d}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        model.save_pretrained(tmp, state_dict=model_state)
        torch.save({"optimizer": optimizer_state, "rng": rng_state(), **training_state}, tmp / STATE)
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        entries = [e for e in read_manifest(folder) if e["step"] != step]
        entries.append({"step": step, "tokens": tokens, "path": final.name,
                        "sha256": file_sha256(final / "model.safetensors")})
        atomic_write_json(folder / MANIFEST, entries)
    if dist.is_initialized():
        dist.barrier()
    return final if rank == 0 else None


def read_manifest(folder: Path) -> list[dict]:
    path = folder / MANIFEST
    if not path.is_file():
        return []
    return json.loads(path.read_text(encoding="utf-8"))


def latest_checkpoint(folder: Path) -> Path | None:
    """The newest checkpoint listed in the manifest whose files are all there."""
    for entry in reversed(read_manifest(folder)):
        path = folder / entry["path"]
        if (path / STATE).is_file() and (path / "model.safetensors").is_file():
            return path
    return None


def load_checkpoint(path: Path, wrapper, model, optimizer, sharded: bool) -> dict:
    """Restore model, optimizer and RNG from `path`; returns the rest of the training state."""
    from safetensors.torch import load_file

    if not (path / STATE).is_file():
        raise FuxiError("incomplete checkpoint: training_state.pt is missing", path=path)
    state = torch.load(path / STATE, map_location="cpu", weights_only=False)
    model_state = load_file(path / "model.safetensors")
    load_full_state_dicts(wrapper, model, optimizer, model_state, state.pop("optimizer"), sharded)
    set_rng_state(state.pop("rng"))
    return state
