"""One exception family for problems a user can fix.

The CLI prints a `FuxiError` as one line (no traceback) and exits with status 2. Anything else that escapes is a bug
in fuxitranyu and keeps its traceback.
"""

from __future__ import annotations

from pathlib import Path


class FuxiError(Exception):
    """A user-fixable error. `path` and `record` (a line number or record id) locate the bad input."""

    def __init__(self, message: str, *, path: str | Path | None = None, record: int | str | None = None):
        self.message = message
        self.path = None if path is None else str(path)
        self.record = record
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.path or ""
        if self.record is not None:
            where = f"{where}:{self.record}" if where else f"record {self.record}"
        return f"{where}: {self.message}" if where else self.message

    def __reduce__(self):
        # Exceptions pickle as `cls(*args)`, which keyword-only and extra constructor arguments break; an error raised
        # in a worker process (datatrove's executors, torchrun) must arrive in the parent whole, or the parent waits
        # forever for a result that cannot be unpickled.
        return _rebuild, (type(self), self.__dict__.copy())


def _rebuild(cls: type[FuxiError], state: dict) -> FuxiError:
    error = cls.__new__(cls)
    error.__dict__.update(state)
    Exception.__init__(error, str(error))
    return error


def error_as_dict(error: FuxiError) -> dict:
    """A FuxiError as JSON-ready data, for a process that hands it to another through a file (`error_from_dict`)."""
    fields = {key: value for key, value in error.__dict__.items() if isinstance(value, (str, int, float, type(None)))}
    return {"type": type(error).__name__, "fields": fields}


def error_from_dict(data: dict) -> FuxiError:
    """The FuxiError `error_as_dict` described, rebuilt without unpickling: a file in a run directory is data, never
    code, so only the FuxiError classes loaded in this process can be named (others arrive as a plain FuxiError)."""
    classes, pending = {}, [FuxiError]
    while pending:
        cls = pending.pop()
        classes[cls.__name__] = cls
        pending.extend(cls.__subclasses__())
    fields = data.get("fields") if isinstance(data, dict) else None
    if not isinstance(fields, dict) or not isinstance(fields.get("message"), str):
        raise FuxiError(f"unreadable error record: {str(data)[:200]}")
    return _rebuild(classes.get(data.get("type"), FuxiError), fields)


class RecipeError(FuxiError):
    """A recipe or a command-line override is invalid."""


class UnknownLanguageError(FuxiError, KeyError):
    """A language code is not one of the supported natural or programming languages."""

    __str__ = FuxiError.__str__
