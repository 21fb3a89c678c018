"""Checkpoints: a `save_pretrained` model directory plus the exact training state, written atomically, verified when
read back.

    checkpoints/step-000120/     config.json, model.safetensors (or model-0000k-of-0000n.safetensors + index),
                                 generation_config.json, training_state.pt, checkpoint.json
    checkpoints/corrupt/         checkpoints that failed verification, set aside (never deleted)

`checkpoint.json` (step, tokens, sha256 of every file) is written last, inside a temporary directory that is renamed
into place only when complete: a kill at any moment leaves either no new checkpoint or a complete one. Each checkpoint
describes itself, so there is no shared list to corrupt. Under FSDP every rank takes part in gathering the full
state; rank 0 writes.
"""

from __future__ import annotations

import json
import random
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from fuxitranyu.errors import FuxiError
from fuxitranyu.io import TMP_SUFFIX, atomic_write_json, file_sha256

DESCRIPTION = "checkpoint.json"
STATE = "training_state.pt"


class CorruptCheckpoint(FuxiError):
    """A checkpoint whose files are missing, truncated or differ from the hashes it was written with."""


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    step: int
    tokens: int
    files: dict[str, str]
    """File name -> sha256, as written."""


def rng_state() -> dict[str, Any]:
    """Every generator's state as tensors, numbers and strings only, so that it loads with `weights_only=True`."""
    name, keys, position, has_gauss, gauss = np.random.get_state()
    state = {"python": random.getstate(), "numpy": [name, torch.from_numpy(keys.astype(np.int64)), position,
                                                      has_gauss, gauss], "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    name, keys, position, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), position, has_gauss, gauss))
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


def weight_files(directory: Path) -> list[Path]:
    """The safetensors files of a model directory: one file, or the shards its index lists."""
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as err:
            raise CorruptCheckpoint(f"unreadable weight index ({err})", path=index) from None
        return [directory / name for name in sorted(set(weight_map.values()))]
    return [directory / "model.safetensors"]


def load_weights(directory: Path) -> dict[str, torch.Tensor]:
    """All tensors of a (possibly sharded) safetensors model directory."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    state: dict[str, torch.Tensor] = {}
    for file in weight_files(directory):
        try:
            state.update(load_file(file))
        except (OSError, SafetensorError) as err:
            raise CorruptCheckpoint(f"unreadable weights ({err})", path=file) from None
    return state


def save_checkpoint(folder: Path, step: int, tokens: int, wrapper, model, optimizer, training_state: dict,
                    sharded: bool, rank: int, max_shard_size: str = "5GB") -> Path | None:
    """Write `folder/step-<step>`; returns its path on rank 0."""
    model_state, optimizer_state = full_state_dicts(wrapper, model, optimizer, sharded)
    final = folder / f"step-{step:06d}"
    if rank == 0:
        tmp = folder / f".step-{step:06d}{TMP_SUFFIX}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        model.save_pretrained(tmp, state_dict=model_state, max_shard_size=max_shard_size)
        torch.save({"optimizer": optimizer_state, "rng": rng_state(), **training_state}, tmp / STATE)
        files = {p.name: file_sha256(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        atomic_write_json(tmp / DESCRIPTION, {"step": step, "tokens": tokens, "files": files})
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
    if dist.is_initialized():
        dist.barrier()
    return final if rank == 0 else None


def describe(path: Path) -> Checkpoint:
    """A checkpoint directory's own description; `CorruptCheckpoint` when it is missing or unreadable."""
    try:
        raw = json.loads((path / DESCRIPTION).read_text(encoding="utf-8"))
        return Checkpoint(path, int(raw["step"]), int(raw["tokens"]), dict(raw["files"]))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise CorruptCheckpoint(f"missing or unreadable {DESCRIPTION} ({err})", path=path) from None


def list_checkpoints(folder: Path) -> list[Path]:
    """Checkpoint directories, oldest first (temporary and set-aside ones excluded)."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("step-*") if p.is_dir())


def verify_files(checkpoint: Checkpoint, skip: tuple[str, ...] = ()) -> None:
    """Every file (but those in `skip`) present with the hash it was written with; `CorruptCheckpoint` otherwise.
    Readers of the model alone (evaluation, analyses) skip the training state."""
    for name, digest in checkpoint.files.items():
        if name in skip:
            continue
        path = checkpoint.path / name
        if not path.is_file():
            raise CorruptCheckpoint("file missing", path=path)
        if file_sha256(path) != digest:
            raise CorruptCheckpoint("content differs from the hash written with the checkpoint (changed or "
                                    "truncated on disk)", path=path)


def verify(checkpoint: Checkpoint) -> None:
    """Every file present with the hash it was written with, and finite weights; `CorruptCheckpoint` otherwise.
    Weights holding NaN or Inf were saved after a divergence: as useless to restore as a damaged file."""
    verify_files(checkpoint)
    broken = [name for name, tensor in load_weights(checkpoint.path).items() if not torch.isfinite(tensor).all()]
    if broken:
        raise CorruptCheckpoint(f"weights hold NaN or Inf ({', '.join(broken[:3])}"
                                f"{'...' if len(broken) > 3 else ''})", path=checkpoint.path)


def read_training_state(path: Path) -> dict:
    """`training_state.pt` loaded with `weights_only=True`: tensors, numbers, strings, lists and dicts, never an
    object that unpickling would construct by running code. A checkpoint from someone else is not trusted code."""
    import pickle

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"GLOBAL (\S+)", str(err))
        what = f" (it asks to run {found.group(1)})" if found else ""
        raise FuxiError(f"refused: the training state holds a pickled object{what}, not only tensors, numbers and "
                        f"containers; it was not loaded and nothing in it ran. fuxitranyu never writes such a file: "
                        f"remove this checkpoint, or start over with --no-resume", path=path) from None
    except Exception as err:  # torch raises RuntimeError/EOFError for a damaged file
        raise CorruptCheckpoint(f"unreadable training state ({type(err).__name__}: {err})", path=path) from None


def load_checkpoint(checkpoint: Checkpoint, wrapper, model, optimizer, sharded: bool, verified: bool = False) -> dict:
    """Verify (unless the caller just did), then restore model, optimizer and RNG; returns the rest of the training
    state."""
    if not verified:
        verify(checkpoint)
    state = read_training_state(checkpoint.path / STATE)
    model_state = load_weights(checkpoint.path)
    if set(model_state) != set(model.state_dict()):
        # Saved under the family's original names (transformers renames some modules, e.g. GPT-NeoX's embed_out, and
        # writes tied weights once): let transformers map them onto the modules, as it does when loading.
        loaded = type(model).from_pretrained(checkpoint.path, dtype=torch.float32)
        model_state = {name: tensor.detach() for name, tensor in loaded.state_dict().items()}
    load_full_state_dicts(wrapper, model, optimizer, model_state, state.pop("optimizer"), sharded)
    set_rng_state(state.pop("rng"))
    return state
