"""Lazy package exports: a package names its public objects and the modules they live in, and each is imported on
first use, so that importing one submodule (the command line imports `artifacts` modules) does not load torch."""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from typing import Any


def lazy_exports(package: str, where: dict[str, str]) -> Callable[[str], Any]:
    """The module-level `__getattr__` of `package` for the names in `where` (name -> module)."""

    def __getattr__(name: str) -> Any:
        if name in where:
            return getattr(import_module(where[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
