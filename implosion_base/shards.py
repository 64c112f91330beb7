"""Text–image pairs spread over many shard files, read block by block and never all in memory.

A :class:`PairShards` is the row source (:class:`theory.ad.RowSource`) behind every pass over data too large for
memory, whatever layout the shards are in (:mod:`implosion_base.layouts`: clip-retrieval's ``img_emb/`` /
``text_emb/`` / ``metadata/``, DataComp's ``.npz`` + parquet, paired ``.npy``, pairs files). ``.npy`` rows are read
row range by row range. Nothing is ever unpickled.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from implosion_base.errors import InputError
from implosion_base.layouts import ReadOptions, ShardPart, read_parts

__all__ = ["PairShards", "ShardPart", "float32_rows", "open_shards"]


class PairShards:
    """Text–image pairs spread over shard files, read block by block (:class:`theory.ad.RowSource`): ``n``,
    ``d``, ``dtype``, ``block(a, b)``, ``take(idx)``; ``names[k]``, ``offsets[k]`` say which pairs shard k holds;
    ``labels`` the per-pair metadata columns every shard has (``file_name`` / ``caption``, a parquet table's
    columns). ``.npy`` shards are read row range by row range (:class:`implosion_base.npy_rows.NpyRows`: only the
    rows asked for, outside this process's resident memory); an ``.npz`` / ``.safetensors`` shard is read when
    opened."""

    def __init__(self, parts: list[ShardPart]):
        if not parts:
            raise InputError("no embedding shards given")
        self.names = [p.name for p in parts]
        self._text = [p.text for p in parts]
        self._image = [p.image for p in parts]
        sizes = [len(t) for t in self._text]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.n = int(self.offsets[-1])
        self.d = int(self._text[0].shape[1])
        self.dtype = np.result_type(*(t.dtype for t in self._text), *(v.dtype for v in self._image))
        keys = set.intersection(*(set(p.labels) for p in parts))
        self.labels = {k: np.concatenate([p.labels[k] for p in parts]) for k in parts[0].labels if k in keys}
        self.layouts: list[str] = []  # the layouts the shards were read from (open_shards says)
        self.files: list[Path] = [f for p in parts for f in p.files]  # every file read, in order
        self.part_files: list[Path] = [p.file for p in parts]  # shard k's file (whose folder holds its images)

    def shard_of(self, idx: np.ndarray) -> np.ndarray:
        """The shard number of each pair index."""
        return np.searchsorted(self.offsets, np.asarray(idx), side="right") - 1

    def block(self, a: int, b: int, out: tuple[np.ndarray, np.ndarray] | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
        """(text, image) rows a..b−1, in ``out``'s first b − a rows when given (buffers of this dtype reused
        from block to block: ``.npy`` rows are read straight into them)."""
        t, v = (x[:b - a] for x in out) if out is not None else (np.empty((b - a, self.d), self.dtype) for _ in "tv")
        for k in range(int(self.shard_of(a)), len(self._text)):
            lo, hi = self.offsets[k], self.offsets[k + 1]
            if lo >= b:
                break
            s, e = max(a, lo), min(b, hi)
            for part, dest in ((self._text[k], t), (self._image[k], v)):
                if hasattr(part, "read_into") and part.dtype == dest.dtype:
                    part.read_into(dest[s - a:e - a], s - lo, e - lo)
                else:
                    dest[s - a:e - a] = part[s - lo:e - lo]
        return t, v

    def take(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        idx = np.asarray(idx, dtype=np.int64)
        t = np.empty((len(idx), self.d), self.dtype)
        v = np.empty((len(idx), self.d), self.dtype)
        shard = self.shard_of(idx)
        for k in np.unique(shard):
            m = shard == k
            local = idx[m] - self.offsets[k]
            order = np.argsort(local, kind="stable")  # sorted reads are cheap on a memory map
            rows = local[order]
            where = np.flatnonzero(m)[order]
            t[where] = self._text[k][rows]
            v[where] = self._image[k][rows]
        return t, v


def open_shards(paths: Sequence[str | os.PathLike[str]], *, labels: bool = True,
                features: str | None = None) -> PairShards:
    """Every shard under ``paths``, each path read by the first layout that claims it
    (:mod:`implosion_base.layouts`: clip-retrieval's sibling folders, DataComp's ``.npz`` + parquet, paired
    ``text_emb_N.npy`` / ``img_emb_N.npy``, pairs files), a folder's shards in the number order of their names, the
    paths in the order given. A missing partner, shards of different widths or dtypes, a text/image shape mismatch
    or metadata of another length is an :class:`InputError` naming the file. ``labels=False`` skips the per-pair
    metadata (a worker that reads rows only); ``features`` chooses the model where a shard holds several."""
    options = ReadOptions(labels=labels, features=features)
    parts: list[ShardPart] = []
    layouts: list[str] = []
    for p in map(Path, paths):
        layout, found = read_parts(p, options)
        layouts.append(layout)
        parts += [q for q in found if q.file not in {r.file for r in parts}]  # a pair named by both its files
    for q in parts[1:]:
        if q.text.shape[1] != parts[0].text.shape[1]:
            raise InputError(f"{q.file}: width {q.text.shape[1]} differs from the first shard's "
                             f"{parts[0].text.shape[1]}")
        if q.text.dtype != parts[0].text.dtype:
            raise InputError(f"{q.file}: {q.text.dtype} embeddings where the first shard's are "
                             f"{parts[0].text.dtype}; one data set's shards share a dtype")
    shards = PairShards([q for q in parts if len(q.text)])
    shards.files = [f for q in parts for f in q.files]  # empty shards too: a rewrite of one is a new data set
    shards.layouts = sorted(set(layouts))
    return shards


def float32_rows(arrays: Sequence[np.ndarray], threads: int = 1,
                 outs: Sequence[np.ndarray | None] | None = None) -> list[np.ndarray]:
    """Each array as float32 (no copy when it already is): float16 rows — what clip-retrieval writes — cast into
    the first rows of its buffer in ``outs`` when given (buffers reused from block to block: fresh pages cost as much
    as the cast), the casts cut into ``threads`` equal row ranges run at once (numpy's cast releases the GIL)."""
    outs = list(outs) if outs is not None else [None] * len(arrays)
    result, jobs = [], []
    for x, out in zip(arrays, outs):
        if x.dtype == np.float32:
            result.append(x)
            continue
        out = np.empty(x.shape, np.float32) if out is None else out[:len(x)]
        result.append(out)
        jobs.append((x, out))
    if not jobs:
        return result
    pieces = max(1, threads // len(jobs))  # each array cut into this many row ranges
    cuts = []
    for x, out in jobs:
        ends = np.linspace(0, len(x), pieces + 1).astype(int)
        cuts += [(x, out, int(a), int(b)) for a, b in zip(ends[:-1], ends[1:])]

    def cast(job) -> None:
        x, out, a, b = job
        out[a:b] = x[a:b]

    if threads <= 1:
        for job in cuts:
            cast(job)
        return result
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(cast, cuts))
    return result
