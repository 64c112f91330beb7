"""Text–image pairs spread over many shard files, read block by block and never all in memory.

A :class:`PairShards` is the row source (:class:`theory.ad.RowSource`) behind every pass over data too large for
memory: pairs files (``.npz`` / ``.safetensors``, :mod:`implosion_base.pairs_file`) and LAION-style paired ``.npy``
shards (``text_emb_XXXX.npy`` + ``img_emb_XXXX.npy``, with an optional ``metadata_XXXX.csv`` beside them), read
row range by row range. Nothing is ever unpickled.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from implosion_base.errors import InputError
from implosion_base.pairs_file import PAIR_LABELS, SUFFIXES, load_arrays, load_pair_labels, load_side_metadata

__all__ = ["NPY_IMAGE", "NPY_TEXT", "NpyRows", "PairShards", "open_shards"]

#: Paired ``.npy`` shards as LAION-style embedding releases ship them: ``text_emb_XXXX.npy`` + ``img_emb_XXXX.npy``.
NPY_TEXT, NPY_IMAGE = "text_emb_", "img_emb_"


_FLOATS = (np.float16, np.float32, np.float64)


class PairShards:
    """Text–image pairs spread over shard files, read block by block (:class:`theory.ad.RowSource`): ``n``,
    ``d``, ``dtype``, ``block(a, b)``, ``take(idx)``; ``names[k]``, ``offsets[k]`` say which pairs shard k holds;
    ``labels`` the per-pair ``file_name`` / ``caption`` strings when every shard has them. ``.npy`` shards are read
    row range by row range (:class:`NpyRows`: only the rows asked for, outside this process's resident memory); an
    ``.npz`` / ``.safetensors`` shard is read when opened."""

    def __init__(self, parts: list[tuple[str, np.ndarray, np.ndarray, dict[str, np.ndarray]]]):
        if not parts:
            raise InputError("no embedding shards given")
        self.names = [p[0] for p in parts]
        self._text = [p[1] for p in parts]
        self._image = [p[2] for p in parts]
        sizes = [len(t) for t in self._text]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.n = int(self.offsets[-1])
        self.d = int(self._text[0].shape[1])
        self.dtype = np.result_type(*(t.dtype for t in self._text), *(v.dtype for v in self._image))
        keys = set.intersection(*(set(p[3]) for p in parts))
        self.labels = {k: np.concatenate([p[3][k] for p in parts]) for k in PAIR_LABELS if k in keys}

    def shard_of(self, idx: np.ndarray) -> np.ndarray:
        """The shard number of each pair index."""
        return np.searchsorted(self.offsets, np.asarray(idx), side="right") - 1

    def block(self, a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
        t = np.empty((b - a, self.d), self.dtype)
        v = np.empty((b - a, self.d), self.dtype)
        for k in range(int(self.shard_of(a)), len(self._text)):
            lo, hi = self.offsets[k], self.offsets[k + 1]
            if lo >= b:
                break
            s, e = max(a, lo), min(b, hi)
            t[s - a:e - a] = self._text[k][s - lo:e - lo]
            v[s - a:e - a] = self._image[k][s - lo:e - lo]
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


class NpyRows:
    """The rows of a 2-D ``.npy`` file, read on demand with ``os.pread`` — not memory-mapped, so the pages read stay
    in the operating system's cache and out of this process's resident memory (a memory map would add every page
    it ever touched to the RSS: 8 GB for a LAION-sized shard set). ``len``, ``shape``, ``dtype``, ``ndim`` and
    ``rows[a:b]`` / ``rows[sorted int array]`` as for an array."""

    def __init__(self, path: Path):
        from numpy.lib import format as npy_format

        self.path = Path(path)
        with open(self.path, "rb") as fh:
            version = npy_format.read_magic(fh)
            read_header = npy_format.read_array_header_1_0 if version == (1, 0) else npy_format.read_array_header_2_0
            shape, fortran, dtype = read_header(fh)
            self.offset = fh.tell()
        if fortran:
            raise InputError(f"{path}: a Fortran-ordered array; save it C-ordered (np.ascontiguousarray)")
        if dtype.hasobject:
            raise InputError(f"{path}: holds Python objects (a pickle); only numeric arrays are read")
        self.shape, self.dtype, self.ndim = tuple(shape), np.dtype(dtype), len(shape)
        self.row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize if self.ndim else 0
        size = self.path.stat().st_size
        if self.ndim and self.offset + self.shape[0] * self.row_bytes > size:
            raise InputError(f"{path}: truncated ({size} bytes for a {self.dtype} array of shape {self.shape})")

    def __len__(self) -> int:
        return self.shape[0]

    def _read(self, fd: int, a: int, b: int) -> np.ndarray:
        raw = os.pread(fd, (b - a) * self.row_bytes, self.offset + a * self.row_bytes)
        return np.frombuffer(raw, dtype=self.dtype).reshape((b - a, *self.shape[1:]))

    def __getitem__(self, key) -> np.ndarray:
        fd = os.open(self.path, os.O_RDONLY)
        try:
            if isinstance(key, slice):
                a, b, step = key.indices(self.shape[0])
                if step != 1:
                    raise IndexError("only contiguous row slices")
                return self._read(fd, a, max(a, b))
            idx = np.asarray(key, dtype=np.int64)
            out = np.empty((len(idx), *self.shape[1:]), self.dtype)
            k = 0
            while k < len(idx):  # runs of consecutive rows in one read each
                e = k + 1
                while e < len(idx) and idx[e] == idx[e - 1] + 1:
                    e += 1
                out[k:e] = self._read(fd, int(idx[k]), int(idx[e - 1]) + 1)
                k = e
            return out
        finally:
            os.close(fd)


def _npy(path: Path) -> NpyRows:
    try:
        arr = NpyRows(path)
    except InputError:
        raise
    except (OSError, ValueError, EOFError) as exc:
        raise InputError(f"{path}: not a readable .npy array ({type(exc).__name__}: {exc})") from None
    if arr.ndim != 2 or arr.dtype.type not in _FLOATS:
        raise InputError(f"{path}: expected a 2-D float16/32/64 array, got {arr.dtype} of shape {arr.shape}")
    return arr


def open_shards(paths: Sequence[str | os.PathLike[str]], *, labels: bool = True) -> PairShards:
    """Every shard named in ``paths`` — pairs files (``.npz`` / ``.safetensors`` with ``text`` and ``image``),
    paired ``text_emb_XXXX.npy`` / ``img_emb_XXXX.npy`` files (either of the two names its pair) or folders of
    them — in the order given (a folder's shards sorted by name). A missing partner, shards of different widths or
    a text/image size mismatch is an :class:`InputError` naming the shard. ``labels=False`` skips the per-pair
    metadata (a worker that reads rows only)."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.suffix.lower() in SUFFIXES
                           or (q.suffix == ".npy" and q.name.startswith(NPY_TEXT)))
            if not found:
                raise InputError(f"{p}: no embedding shards (*.npz, *.safetensors, {NPY_TEXT}*.npy) in this folder")
            files += found
        elif not p.exists():
            raise InputError(f"{p}: no such file")
        else:
            files.append(p)
    parts, seen = [], set()
    for f in files:
        if f.suffix == ".npy":
            if f.name.startswith(NPY_IMAGE):
                f = f.with_name(NPY_TEXT + f.name[len(NPY_IMAGE):])
            if not f.name.startswith(NPY_TEXT):
                raise InputError(f"{f}: a .npy shard must be named {NPY_TEXT}XXXX.npy or {NPY_IMAGE}XXXX.npy")
            if f in seen:
                continue
            seen.add(f)
            partner = f.with_name(NPY_IMAGE + f.name[len(NPY_TEXT):])
            if not f.is_file() or not partner.is_file():
                missing = f if not f.is_file() else partner
                raise InputError(f"{missing}: missing (each {NPY_TEXT}XXXX.npy needs its {NPY_IMAGE}XXXX.npy)")
            t, v = _npy(f), _npy(partner)
            if t.dtype != v.dtype:  # one release's shards share a dtype: a mismatch means files from two releases
                raise InputError(f"{f.name} is {t.dtype} but {partner.name} is {v.dtype}: the two halves of a shard "
                                 "pair must share a dtype (convert one, or check that they belong together)")
            name = f.name[len(NPY_TEXT):-4]
            side = f.with_name(f"metadata_{name}.csv")  # LAION-style: metadata_XXXX beside the embeddings
            meta = load_side_metadata(side, len(t)) if labels and side.is_file() else {}
        else:
            arrays = load_arrays(f, ("text", "image"))
            t, v = arrays["text"], arrays["image"]
            for a, what in ((t, "text"), (v, "image")):
                if a.ndim != 2 or a.dtype.type not in _FLOATS:
                    raise InputError(f"{f}: {what} must be a 2-D float16/32/64 array, got {a.dtype} {a.shape}")
            meta = load_pair_labels(f, len(t)) if labels else {}
            name = f.name
        if t.shape != v.shape:
            raise InputError(f"{f}: text {t.shape} and image {v.shape} shapes differ")
        if parts and t.shape[1] != parts[0][1].shape[1]:
            raise InputError(f"{f}: width {t.shape[1]} differs from the first shard's {parts[0][1].shape[1]}")
        if len(t):
            parts.append((name, t, v, meta))
    return PairShards(parts)
