"""What a figure or table builder returns: the files it wrote, its caption, and notes on where the data came from."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Built:
    """``files`` written (PNG and PDF for figures; MD and CSV for tables), the ``caption`` (what the reader sees),
    ``sources`` (data files and commands behind it), ``missing`` (what would complete it and the command that
    produces it) and, for tables, the ``markdown`` that the index shows inline."""

    files: list[Path]
    caption: str
    sources: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    markdown: str = ""
