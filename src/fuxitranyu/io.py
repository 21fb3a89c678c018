"""Atomic writes: a kill never leaves a half-written file or directory under its final name."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def file_sha256(path: str | Path) -> str:
    """Content hash of a (possibly large) file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def atomic_write_text(path: str | Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the permissions open() would
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False, sort_keys=False) + "\n")


@contextmanager
def atomic_directory(path: str | Path, scratch: str | Path | None = None) -> Iterator[Path]:
    """Yield a working directory beside `path`; on success it replaces `path`.

    Without `scratch` the working directory is fresh and removed on failure. With `scratch` it is that directory,
    kept on failure so that a re-run can resume the work inside it. A directory cannot be renamed over a non-empty
    one, so an existing `path` is first moved aside; a kill between the two renames leaves the old version under
    `.<name>.old-*`, never a partial new one under `path`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if scratch is None:
        tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.tmp-"))
    else:
        tmp = Path(scratch)
        tmp.mkdir(parents=True, exist_ok=True)
    try:
        yield tmp
    except BaseException:
        if scratch is None:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if path.exists():
        old = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.old-"))
        os.replace(path, old / path.name)
    os.replace(tmp, path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextmanager
def run_lock(directory: str | Path, enabled: bool = True) -> Iterator[None]:
    """Hold `directory/.lock` for the duration: a second run into the same directory fails at once with the first
    one's pid. The lock is the kernel's (flock), so a run killed with -9 leaves no stale lock behind."""
    if not enabled:
        yield
        return
    import fcntl

    from fuxitranyu.errors import FuxiError

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / ".lock"
    handle = open(path, "a+", encoding="utf-8")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "another process"
            raise FuxiError(f"another run is using this directory ({owner}); wait for it to finish or use another "
                            f"output_dir", path=directory) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        handle.flush()
        yield
    finally:
        handle.close()  # closing the descriptor releases the lock
