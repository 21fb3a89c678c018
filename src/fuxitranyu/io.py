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

from fuxitranyu.errors import FuxiError


def file_sha256(path: str | Path) -> str:
    """Content hash of a (possibly large) file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


_VERIFIED: dict[tuple[str, int, int], str] = {}
"""(path, size, mtime) -> sha256 of files already hashed by this process: a file that several stages read in one
`fuxitranyu run` is hashed once."""


def tree_sha256(directory: str | Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """sha256 of every file under `directory` by relative POSIX path, except the top-level entries named in `skip`."""
    directory = Path(directory)
    hashes = {}
    for path in sorted(directory.rglob("*")):
        relative = path.relative_to(directory)
        if path.is_file() and relative.parts[0] not in skip:
            hashes[relative.as_posix()] = _cached_sha256(path)
    return hashes


def _cached_sha256(path: Path) -> str:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _VERIFIED:
        _VERIFIED[key] = file_sha256(path)
    return _VERIFIED[key]


def check_sha256(directory: str | Path, recorded: dict[str, str], owner: str) -> None:
    """Every file `recorded` (relative path -> sha256, as the stage that wrote them hashed them) is present with that
    content; a FuxiError names the first that is not. `owner` says which stage wrote them, for the remedy."""
    directory = Path(directory)
    for relative, digest in recorded.items():
        path = directory / relative
        if not path.is_file():
            raise FuxiError(f"missing: the {owner} stage wrote it and recorded its sha256; re-run that stage "
                            f"(fuxitranyu run --from {owner})", path=path)
        if _cached_sha256(path) != digest:
            raise FuxiError(f"changed since the {owner} stage wrote it: its sha256 differs from the one in the stage's "
                            f"manifest.json; re-run that stage (fuxitranyu run --from {owner})", path=path)


TMP_SUFFIX = ".tmp"
"""Every temporary name of an atomic write ends so (`.<name>.<random>.tmp`): what a kill leaves behind is found by
`remove_interrupted_writes` and never carried into a finished stage."""


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary file name beside `path` to write to; renamed to `path` when the block ends without error, removed
    when it raises."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the permissions open() would
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def atomic_write_json(path: str | Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False, sort_keys=False) + "\n")


def save_figure(figure, path: str | Path, **savefig) -> None:
    """A matplotlib figure written atomically (the format from `path`'s suffix): a kill leaves the old file or the
    new one."""
    path = Path(path)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format=path.suffix.lstrip(".") or None, **savefig)


def set_aside(path: str | Path, folder: str = "corrupt") -> Path:
    """Move a damaged checkpoint (or other item) into `<its parent>/<folder>/`: kept for inspection, never used
    again; returns where it went."""
    path = Path(path)
    target = path.parent / folder / path.name
    target.parent.mkdir(exist_ok=True)
    shutil.rmtree(target, ignore_errors=True)
    path.rename(target)
    return target


def remove_interrupted_writes(directory: str | Path) -> list[Path]:
    """Delete the temporary files and folders that killed atomic writes left under `directory` (a stage's working
    directory, when a run resumes in it); returns what was removed."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    leftovers = [p for p in directory.rglob(f"*{TMP_SUFFIX}") if not p.is_symlink()]
    removed = []
    for leftover in sorted(leftovers, key=lambda p: len(p.parts)):
        if any(parent in removed for parent in leftover.parents):
            continue
        shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink(missing_ok=True)
        removed.append(leftover)
    return removed


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
        tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX))
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

    directory = Path(directory)
    path = directory / ".lock"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+", encoding="utf-8")
    except OSError as err:
        blocking = next((p for p in (directory, *directory.parents) if p.is_file()), None)
        what = f"{blocking} is a file" if blocking else f"it cannot be created or written ({err.strerror})"
        raise FuxiError(f"not usable as a run directory: {what}; choose another output_dir", path=directory) from None
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
