"""Where library output goes: a log file in the run directory, not the terminal, unless `--verbose`.

The terminal of `fuxitranyu run` shows our own lines and progress; transformers' "Loading weights" / "Writing model
shards" bars, datasets' bars, library warnings (FutureWarning and friends) and Python logging of every library are
kept in `<run dir>/logs/run.log` for when something needs explaining. datatrove's task logs have their own files
(`fuxitranyu.data.execution`).
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

RUN_LOG = "run.log"


def route_library_output(run_dir: Path, verbose: bool) -> Path | None:
    """Send library logging, warnings and progress bars to `run_dir/logs/run.log` (returned); with `verbose`, leave
    everything on the terminal and return None."""
    if verbose:
        return None
    os.environ["TQDM_DISABLE"] = "1"  # every library's tqdm bars (lm-eval reads it when imported, later)
    path = Path(run_dir) / "logs" / RUN_LOG
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_fuxitranyu", False)]:
        root.removeHandler(old)
        old.close()
    handler._fuxitranyu = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.captureWarnings(True)
    warnings.simplefilter("default")

    import datasets
    import huggingface_hub
    import transformers

    transformers.utils.logging.disable_default_handler()
    transformers.utils.logging.enable_propagation()
    transformers.utils.logging.disable_progress_bar()
    datasets.utils.logging.enable_propagation()
    datasets.utils.logging.disable_progress_bar()
    huggingface_hub.utils.disable_progress_bars()
    return path


def quiet_model_loading() -> None:
    """Interactive commands (chat, generate) print only the conversation: no "Loading weights" bars."""
    import transformers

    transformers.utils.logging.disable_progress_bar()
