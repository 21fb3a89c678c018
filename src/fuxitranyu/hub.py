"""What can be had from the Hugging Face hub here: its caches, and whether it answers at all.

Everything that names a hub dataset (data sources, evaluation suites) checks before any work starts, so that an
offline machine gets one clear list of what is missing instead of a hang or a failure hours in.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

HUB_TIMEOUT_SECONDS = 10


def in_hf_cache(dataset_path: str, dataset_name: str | None = None) -> bool:
    """Whether the hub cache holds a snapshot of the dataset, or the datasets cache a prepared copy of its config."""
    import datasets.config
    import huggingface_hub.constants

    repository = f"datasets--{dataset_path.replace('/', '--')}"
    snapshots = Path(huggingface_hub.constants.HF_HUB_CACHE) / repository / "snapshots"
    if snapshots.is_dir() and any(snapshots.iterdir()):
        return True
    prepared = Path(datasets.config.HF_DATASETS_CACHE) / dataset_path.replace("/", "___")
    return (prepared / dataset_name).is_dir() if dataset_name else prepared.is_dir() and any(prepared.iterdir())


def hub_offline() -> bool:
    return any(os.environ.get(name, "").lower() in ("1", "true", "yes") for name in ("HF_HUB_OFFLINE",
                                                                                     "HF_DATASETS_OFFLINE"))


@cache
def hub_answers(dataset_path: str) -> bool:
    """Whether the hub knows `dataset_path` and answers within HUB_TIMEOUT_SECONDS (False when declared offline)."""
    if hub_offline():
        return False
    import huggingface_hub

    try:
        huggingface_hub.HfApi().dataset_info(dataset_path, timeout=HUB_TIMEOUT_SECONDS)
    except Exception:  # no network, DNS failure, timeout, unknown or gated dataset: not reachable from here
        return False
    return True


def model_reachable(name: str) -> bool:
    """Whether a model named `name` (`org/model`) can be loaded from the Hugging Face cache, or else from the hub
    within HUB_TIMEOUT_SECONDS: checked before an evaluation, not after minutes of retries."""
    import huggingface_hub

    try:
        if isinstance(huggingface_hub.try_to_load_from_cache(name, "config.json"), str):
            return True
    except ValueError:  # not a valid repository name
        return False
    if hub_offline():
        return False
    try:
        huggingface_hub.HfApi().model_info(name, timeout=HUB_TIMEOUT_SECONDS)
    except Exception:  # no network, DNS failure, timeout, unknown or gated model
        return False
    return True
