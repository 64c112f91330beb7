r"""AD of a growing (or shrinking) set of pairs, updated in :math:`O(m(n+m)d)` per batch of m pairs
(:class:`IncrementalAD`): what makes a C_P sweep cheap — poison pairs are added batch by batch, never recomputed.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from implosion_base.errors import InputError
from implosion_base.validate import check_alpha, check_pairs
from theory.ad.kernel import (DEFAULT_ALPHA, DEFAULT_BLOCK, ADResult, Attribution, Backend, Precision,
                              _attribution_from_terms, _check_block, _from_terms, _gap_row_sums, _joint_rows, _Ops,
                              pair_scores)

__all__ = ["IncrementalAD"]

class IncrementalAD:
    r"""AD of a growing (or shrinking) set of pairs, updated in :math:`O(m(n+m)d)` per batch of m.

    Keeps the normalised rows, each pair's feature term :math:`1-s_i` and its structure row sum
    :math:`r_i = \sum_{j\ne i}|\cos(v_i,v_j)-\cos(t_i,t_j)|`. Adding m pairs computes only the new×old and
    new×new tiles; removing pairs subtracts their tiles. :meth:`result` and :meth:`attribution` are O(n).
    This is what makes a C_P sweep cheap: poison pairs are added batch by batch, never recomputed.

    Examples
    --------
    >>> acc = IncrementalAD(alpha=0.8)
    >>> _ = acc.add(benign_text, benign_image)          # doctest: +SKIP
    >>> acc.add(poison_text, poison_image).ad           # doctest: +SKIP
    """

    def __init__(
        self,
        alpha: float = DEFAULT_ALPHA,
        laion_scale: bool = True,
        *,
        block: int = DEFAULT_BLOCK,
        precision: Precision = "float64",
        backend: Backend = "numpy",
        device: str | None = None,
    ):
        self.alpha = check_alpha(alpha)
        self.laion_scale = bool(laion_scale)
        self.block = _check_block(block)
        if precision not in ("float32", "float64"):
            raise InputError(f"precision must be 'float32' or 'float64' for IncrementalAD, got {precision!r}")
        self._dtype = np.dtype(precision)
        self._ops = _Ops(backend, device)
        self._d: int | None = None
        self._n = 0
        self._x = np.empty((0, 0), dtype=self._dtype)  # reshaped to (capacity, 2d) on the first add
        self._f = np.empty(0, dtype=np.float64)
        self._r = np.empty(0, dtype=np.float64)

    @property
    def n(self) -> int:
        """Number of pairs held."""
        return self._n

    def _grow(self, extra: int) -> None:
        need = self._n + extra
        if need <= self._x.shape[0]:
            return
        cap = max(need, 2 * self._x.shape[0], 64)
        x = np.empty((cap, 2 * self._d), dtype=self._dtype)
        if self._n:
            x[: self._n] = self._x[: self._n]
        f = np.zeros(cap, dtype=np.float64)
        f[: self._n] = self._f[: self._n]
        r = np.zeros(cap, dtype=np.float64)
        r[: self._n] = self._r[: self._n]
        self._x, self._f, self._r = x, f, r

    def add(self, text: Any, image: Any) -> ADResult | None:
        """Append m pairs; return the AD of all pairs held (``None`` while fewer than 2)."""
        t, v = check_pairs(text, image, min_n=1)
        if self._d is None:
            self._d = t.shape[1]
        elif t.shape[1] != self._d:
            raise InputError(f"pairs must have dimension d={self._d} like the ones already added, got d={t.shape[1]}")
        x_new, cos = _joint_rows(t, v, self._dtype)
        m, n = t.shape[0], self._n
        self._grow(m)
        r_new, _ = _gap_row_sums(x_new, None, self._d, block=self.block, ops=self._ops)
        if n:
            r_cross_new, r_cross_old = _gap_row_sums(x_new, self._x[:n], self._d, block=self.block, ops=self._ops)
            r_new += r_cross_new
            self._r[:n] += r_cross_old
        self._x[n : n + m] = x_new
        self._f[n : n + m] = 1.0 - pair_scores(cos, self.laion_scale)
        self._r[n : n + m] = r_new
        self._n = n + m
        return self.result() if self._n >= 2 else None

    def remove(self, indices: Sequence[int] | np.ndarray) -> ADResult | None:
        """Remove the pairs at ``indices`` (positions in the current order; later pairs shift down)."""
        idx = np.unique(np.asarray(indices, dtype=np.int64).ravel())
        if idx.size == 0:
            return self.result() if self._n >= 2 else None
        if idx[0] < 0 or idx[-1] >= self._n:
            raise InputError(f"indices must lie in [0, {self._n}), got {int(idx[0])}..{int(idx[-1])}")
        keep = np.ones(self._n, dtype=bool)
        keep[idx] = False
        x = self._x[: self._n]
        _, r_keep = _gap_row_sums(x[idx], x[keep], self._d, block=self.block, ops=self._ops)
        m = int(keep.sum())
        self._x[:m] = x[keep]
        self._f[:m] = self._f[: self._n][keep]
        self._r[:m] = self._r[: self._n][keep] - r_keep
        self._n = m
        return self.result() if self._n >= 2 else None

    def result(self) -> ADResult:
        """AD of the pairs held (needs n ≥ 2)."""
        self._need_two()
        return _from_terms(self._f[: self._n], self._r[: self._n], self.alpha, self.laion_scale)

    def attribution(self) -> Attribution:
        """Per-pair shares of the current AD (see :func:`pair_attribution`)."""
        self._need_two()
        return _attribution_from_terms(self._f[: self._n], self._r[: self._n], self.alpha, self.laion_scale)

    def _need_two(self) -> None:
        if self._n < 2:
            raise InputError(f"need at least 2 pairs, got n={self._n}")
