"""A 2-D ``.npy`` array read row range by row range with ``os.pread`` (:class:`NpyRows`), never memory-mapped and
never unpickled: what every ``.npy`` embedding layout reads (:mod:`implosion_base.layouts`)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from implosion_base.errors import InputError

__all__ = ["FLOATS", "NpyRows", "open_npy"]

#: The float types an embedding array may hold.
FLOATS = (np.float16, np.float32, np.float64)


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

    def read_into(self, dest: np.ndarray, a: int, b: int) -> None:
        """Rows a..b−1 into ``dest`` (a C-contiguous array of that shape and this dtype), read straight into its
        memory: no intermediate buffer, no fresh pages."""
        view = memoryview(dest).cast("B")
        fd = os.open(self.path, os.O_RDONLY)
        try:
            done, offset = 0, self.offset + a * self.row_bytes
            while done < len(view):
                got = os.preadv(fd, [view[done:]], offset + done)
                if got <= 0:
                    raise InputError(f"{self.path}: truncated while reading rows {a}..{b - 1}")
                done += got
        finally:
            os.close(fd)

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


def open_npy(path: Path) -> NpyRows:
    """``path`` as :class:`NpyRows`, checked: a readable 2-D float16/32/64 array, else an InputError naming it (a
    1-D array, an object array or a pickle is refused by name)."""
    try:
        arr = NpyRows(path)
    except InputError:
        raise
    except (OSError, ValueError, EOFError) as exc:
        raise InputError(f"{path}: not a readable .npy array ({type(exc).__name__}: {exc})") from None
    if arr.ndim != 2 or arr.dtype.type not in FLOATS:
        raise InputError(f"{path}: expected a 2-D float16/32/64 array, got {arr.dtype} of shape {arr.shape}")
    return arr
