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
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path

RUN_LOG = "run.log"
_routed_to: Path | None = None
"""The run log library output goes to, once `route_library_output` has run without --verbose."""
_verbose = False


def route_library_output(run_dir: Path, verbose: bool) -> Path | None:
    """Send library logging, warnings and progress bars to `run_dir/logs/run.log` (returned); with `verbose`, leave
    everything on the terminal and return None."""
    global _routed_to, _verbose
    _verbose = verbose
    if verbose:
        _routed_to = None
        return None
    os.environ["TQDM_DISABLE"] = "1"  # tqdm bars whose library leaves `disable` unset
    path = Path(run_dir) / "logs" / RUN_LOG
    _routed_to = path
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


@contextmanager
def library_prints() -> Iterator[None]:
    """What a library writes to stdout and stderr itself (lm-eval's tqdm bars, which it enables explicitly, and its
    `print`s, e.g. "bootstrapping for stddev" once per task) goes to the run log, or nowhere outside a run; with
    --verbose it stays on the terminal."""
    if _verbose:
        yield
        return
    target = open(_routed_to, "a", encoding="utf-8") if _routed_to else open(os.devnull, "w")  # noqa: SIM115
    try:
        with redirect_stdout(target), redirect_stderr(target):
            yield
    finally:
        target.close()
