"""What every layout gives the row source: :class:`ShardPart` (one shard's text and image rows and its per-pair
labels), :class:`ReadOptions`, the numeric order of shard files, and the metadata tables they share (CSV, parquet)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from implosion_base.errors import InputError
from implosion_base.npy_rows import FLOATS

__all__ = ["ReadOptions", "ShardPart", "check_part", "read_parquet", "shard_order"]


@dataclass(frozen=True)
class ReadOptions:
    """How shards are read: ``labels`` (False: rows only, as a worker reads them) and ``features``, the embedding
    model's prefix when a shard holds several (DataComp's ``l14`` / ``b32``; None: ``l14`` when present)."""

    labels: bool = True
    features: str | None = None


@dataclass(frozen=True)
class ShardPart:
    """One shard: its name, its text and image rows (arrays, or :class:`implosion_base.npy_rows.NpyRows` read on
    demand), the file to name in messages, its per-pair labels (string arrays, one entry per pair) and every file
    it was read from (``read``; ``file`` alone when empty)."""

    name: str
    text: Any
    image: Any
    file: Path
    labels: dict[str, np.ndarray] = field(default_factory=dict)
    read: tuple[Path, ...] = ()

    @property
    def files(self) -> tuple[Path, ...]:
        return self.read or (self.file,)


def shard_order(path: Path) -> tuple:
    """Sort key of shard files: by the number in their name (``text_emb_10`` after ``text_emb_9``), then by name."""
    numbers = re.findall(r"\d+", path.stem)
    return (int(numbers[-1]) if numbers else -1, path.name)


def check_part(part: ShardPart) -> ShardPart:
    """The part's rows: 2-D float16/32/64 arrays of one shape and one dtype, and one label per pair; an InputError
    naming the file otherwise."""
    t, v = part.text, part.image
    for a, what in ((t, "text"), (v, "image")):
        if a.ndim != 2 or np.dtype(a.dtype).type not in FLOATS:
            raise InputError(f"{part.file}: the {what} embeddings must be a 2-D float16/32/64 array, got {a.dtype} "
                             f"of shape {tuple(a.shape)}")
    if tuple(t.shape) != tuple(v.shape):
        raise InputError(f"{part.file}: text {tuple(t.shape)} and image {tuple(v.shape)} shapes differ")
    if t.dtype != v.dtype:  # one release's shards share a dtype: a mismatch means files from two releases
        raise InputError(f"{part.file}: text is {t.dtype} but image is {v.dtype}; the two halves of a shard must "
                         "share a dtype (convert one, or check that they belong together)")
    for key, values in part.labels.items():
        if len(values) != len(t):
            raise InputError(f"{part.file}: {len(values)} metadata rows ('{key}') for {len(t)} embedded pairs; one "
                             "row per pair, in order")
    return part


def read_parquet(path: Path, n: int) -> dict[str, np.ndarray]:
    """Every column of a parquet metadata table of ``n`` rows (one per embedded pair, in order) as strings, read
    with pyarrow (the ``audit`` extra); a file pyarrow cannot read, of another length, or no pyarrow, is an
    InputError naming the file."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise InputError(f"{path}: reading parquet metadata needs pyarrow (pip install 'implosion-toolkit[audit]')") \
            from None
    try:
        table = pq.read_table(path)
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable parquet table ({type(exc).__name__}: {str(exc)[:200]})") from None
    if table.num_rows != n:
        raise InputError(f"{path}: {table.num_rows} metadata rows for {n} embedded pairs; one row per pair, in order")
    return {name: np.asarray(["" if v is None else str(v) for v in table.column(name).to_pylist()], dtype=str)
            for name in table.column_names}
