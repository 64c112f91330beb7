r"""The training set of a sweep, kept up to date as poison is added (and benign pairs are replaced).

It holds what every solver and metric needs, updated incrementally so a C_P sweep never recomputes from scratch:

- the pairs themselves (for solvers that train on data, e.g. attention);
- the sufficient statistics of least squares, :math:`A = T^\top T` and :math:`B = T^\top V` (d × d, float64),
  updated in :math:`O(md^2)` per batch of m pairs ("Gram prefix sums": the ridge and capacity solvers need only
  these, so each sweep point costs one d × d solve);
- the Alignment Difficulty, through :class:`theory.ad.IncrementalAD` (:math:`O(m(n+m)d)` per batch).

Pair ids are positions in insertion order; removed pairs keep their ids (``alive`` marks them).
"""

from __future__ import annotations

import numpy as np

from theory.ad import DEFAULT_ALPHA, ADResult, IncrementalAD
from implosion_base.errors import InputError

__all__ = ["TrainingSet"]


class TrainingSet:
    """Pairs (unit text, unit image) with incremental least-squares statistics and AD."""

    def __init__(self, dim: int, *, alpha: float = DEFAULT_ALPHA, laion_scale: bool = True, ad_precision: str = "float64",
                 track_ad: bool = True):
        self.dim = dim
        self.gram = np.zeros((dim, dim))  # A = T^T T
        self.cross = np.zeros((dim, dim))  # B = T^T V
        self.image_sq = 0.0  # sum ||v||^2 (= n for unit rows, kept general)
        self._t = np.empty((0, dim))
        self._v = np.empty((0, dim))
        self._alive = np.empty(0, dtype=bool)
        self._size = 0
        self._ad = IncrementalAD(alpha, laion_scale, precision=ad_precision) if track_ad else None  # type: ignore[arg-type]

    @property
    def n(self) -> int:
        """Number of pairs currently in the set."""
        return int(self._alive[: self._size].sum())

    def _reserve(self, extra: int) -> None:
        need = self._size + extra
        if need <= self._t.shape[0]:
            return
        cap = max(need, 2 * self._t.shape[0], 1024)
        for name in ("_t", "_v"):
            old = getattr(self, name)
            new = np.empty((cap, self.dim))
            new[: self._size] = old[: self._size]
            setattr(self, name, new)
        alive = np.zeros(cap, dtype=bool)
        alive[: self._size] = self._alive[: self._size]
        self._alive = alive

    def add(self, text: np.ndarray, image: np.ndarray) -> np.ndarray:
        """Append pairs; return their ids."""
        m = text.shape[0]
        if text.shape != image.shape or text.ndim != 2 or text.shape[1] != self.dim:
            raise InputError(f"pairs must be two (m, {self.dim}) arrays, got {text.shape} and {image.shape}")
        self._reserve(m)
        ids = np.arange(self._size, self._size + m)
        self._t[ids], self._v[ids] = text, image
        self._alive[ids] = True
        self._size += m
        self.gram += text.T @ text
        self.cross += text.T @ image
        self.image_sq += float(np.sum(image * image))
        if self._ad is not None:
            self._ad.add(text, image)
        return ids

    def remove(self, ids: np.ndarray) -> None:
        """Remove the pairs with these ids (each must be present)."""
        ids = np.unique(np.asarray(ids, dtype=np.int64))
        if ids.size == 0:
            return
        if ids[-1] >= self._size or not self._alive[ids].all():
            raise InputError("remove: some ids are not in the training set")
        t, v = self._t[ids], self._v[ids]
        self.gram -= t.T @ t
        self.cross -= t.T @ v
        self.image_sq -= float(np.sum(v * v))
        if self._ad is not None:
            alive_ids = np.flatnonzero(self._alive[: self._size])
            self._ad.remove(np.searchsorted(alive_ids, ids))  # positions among the pairs held, in order
        self._alive[ids] = False

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(text, image) of the pairs currently in the set, in insertion order (copies)."""
        keep = np.flatnonzero(self._alive[: self._size])
        return self._t[keep], self._v[keep]

    def ad(self) -> ADResult:
        """Alignment Difficulty of the current set (needs ``track_ad``)."""
        if self._ad is None:
            raise InputError("this training set does not track AD")
        return self._ad.result()
