"""Lazy re-exports for package ``__init__`` files (shared by theory, simulate, empirical, paper_figures).

A package re-exports its public names (POT style) without importing its submodules up front: importing
``theory`` stays cheap, and ``python -m theory.ad`` runs ``theory.ad`` once (an eager import in ``__init__``
would load it twice and make runpy warn).
"""

from __future__ import annotations

from importlib import import_module
from importlib.util import find_spec
from typing import Any, Callable


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[list[str], Callable[[str], Any], Callable[[], list[str]]]:
    """``(__all__, __getattr__, __dir__)`` for a package whose names live in the modules ``exports`` maps to; its
    public submodules are attributes too, imported on first use."""
    names = sorted(exports)

    def __getattr__(name: str) -> Any:
        if name in exports:
            return getattr(import_module(exports[name]), name)
        if not name.startswith("_") and find_spec(f"{package}.{name}") is not None:
            return import_module(f"{package}.{name}")  # ``import theory; theory.ad``: a public submodule
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return names

    return names, __getattr__, __dir__
