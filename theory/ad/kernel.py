r"""The one kernel under every AD estimator, and the pieces of the definition (docs/design.md §3).

:func:`_gap_row_sums` returns for each pair i the row sum :math:`r_i = \sum_{j \ne i} |\cos(v_i,v_j) -
\cos(t_i,t_j)|`, so that :math:`D_{stru} = \sum_i r_i / n^2`. It works on blocks of rows: each row is stored once
as :math:`x_i = [\hat v_i, \hat t_i]` (2d numbers) and one GEMM per tile, :math:`x_I [\hat v_J, -\hat t_J]^\top`,
gives :math:`\cos(v_i,v_j)-\cos(t_i,t_j)` directly. Diagonal blocks are halved recursively, so each unordered pair
is computed about once (:math:`\approx n^2 d` multiply-adds). Memory is :math:`O(nd + b^2)` for block size b; the
n×n matrix never exists. Tile products run in the inputs' precision, every sum across tiles in float64.

Also here: :func:`pair_scores` (:math:`s_i`, LAION-rescaled by default), :func:`combine`
(:math:`AD = \alpha D_{fea} + (1-\alpha) D_{stru}`), the result types :class:`ADResult` and :class:`Attribution`,
and :func:`ranking` (the order every ranking of pairs reads them in).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from implosion_base.errors import InputError
from implosion_base.validate import check_scalar, row_norms, torch_device

__all__ = ["ADResult", "Attribution", "DEFAULT_ALPHA", "DEFAULT_BLOCK", "combine", "pair_scores", "ranking"]

Precision = Literal["auto", "float32", "float64"]


Backend = Literal["numpy", "torch"]


DEFAULT_ALPHA = 0.8


DEFAULT_BLOCK = 2048


_Z95 = 1.959963984540054  # two-sided 95% normal quantile


@dataclass(frozen=True)
class ADResult:
    """AD of a training set.

    Attributes
    ----------
    ad, d_fea, d_stru : float
        :math:`AD = \\alpha D_{fea} + (1-\\alpha) D_{stru}` and its two terms.
    n : int
        Number of pairs.
    alpha, laion_scale : the settings used.
    ci95 : (float, float) or None
        95% confidence interval of ``ad`` (sampled estimator only; ``d_fea`` is exact there).
    d_stru_ci95 : (float, float) or None
        95% confidence interval of ``d_stru`` (sampled estimator only).
    n_samples : int or None
        Number of sampled pairs i<j (sampled estimator only).
    """

    ad: float
    d_fea: float
    d_stru: float
    n: int
    alpha: float
    laion_scale: bool
    ci95: tuple[float, float] | None = None
    d_stru_ci95: tuple[float, float] | None = None
    n_samples: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-ready); interval fields are omitted when not sampled."""
        out = asdict(self)
        for key in ("ci95", "d_stru_ci95", "n_samples"):
            if out[key] is None:
                del out[key]
            elif isinstance(out[key], tuple):
                out[key] = list(out[key])
        return out


@dataclass(frozen=True)
class Attribution:
    """Per-pair decomposition of AD: ``contribution = feature + structure`` and ``contribution.sum() == result.ad``.

    ``feature[i]`` is :math:`\\alpha (1-s_i)/n`; ``structure[i]`` is :math:`(1-\\alpha) r_i / n^2` with
    :math:`r_i = \\sum_{j\\ne i} |\\cos(v_i,v_j)-\\cos(t_i,t_j)|`, so each pair i<j is split equally between i and j.
    """

    result: ADResult
    feature: np.ndarray
    structure: np.ndarray
    score: np.ndarray  # s_i, the pair's (rescaled) text-image score
    contribution: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "contribution", self.feature + self.structure)

    def top(self, k: int) -> np.ndarray:
        """Indices of the k pairs with the largest contribution, largest first (ties broken by index)."""
        check_scalar(k, "k", low=0, integer=True)
        return ranking(self.contribution)[:k]


def ranking(scores: np.ndarray) -> np.ndarray:
    """Indices of ``scores`` from the largest to the smallest, ties broken by index: the order in which every
    ranking of pairs (top pairs, ranks, detection quality) reads them."""
    scores = np.asarray(scores, dtype=np.float64)
    return np.lexsort((np.arange(scores.size), -scores))


def pair_scores(cos: np.ndarray, laion_scale: bool = True) -> np.ndarray:
    r"""Feature score :math:`s_i` of each pair from its cosine :math:`\cos(t_i, v_i)`.

    With LAION rescaling :math:`s = \operatorname{clip}(4(\cos - 0.2), 0, 1)` (CLIP cosines of matched pairs sit
    around 0.2–0.45); without it :math:`s = \cos`.
    """
    cos = np.asarray(cos, dtype=np.float64)
    if laion_scale:
        return np.clip(4.0 * (cos - 0.2), 0.0, 1.0)
    return cos


def combine(d_fea: float, d_stru: float, alpha: float = DEFAULT_ALPHA) -> float:
    r""":math:`AD = \alpha D_{fea} + (1-\alpha) D_{stru}`."""
    return alpha * d_fea + (1.0 - alpha) * d_stru


def _compute_dtype(precision: Precision, *arrays: np.ndarray) -> np.dtype:
    if precision == "float64":
        return np.dtype(np.float64)
    if precision == "float32":
        return np.dtype(np.float32)
    if precision != "auto":
        raise InputError(f"precision must be 'auto', 'float32' or 'float64', got {precision!r}")
    low = all(a.dtype in (np.float16, np.float32) for a in arrays)
    return np.dtype(np.float32 if low else np.float64)


def _joint_rows(text: np.ndarray, image: np.ndarray, dtype: np.dtype, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Validate and normalise; return ``x`` (n × 2d rows :math:`[\\hat v_i, \\hat t_i]` in ``dtype``) and the
    float64 pair cosines :math:`\\cos(t_i, v_i)`."""
    nt = row_norms(text, "text", chunk)
    nv = row_norms(image, "image", chunk)
    n, d = text.shape
    x = np.empty((n, 2 * d), dtype=dtype)
    cos = np.empty(n, dtype=np.float64)
    for a in range(0, n, chunk):
        b = min(n, a + chunk)
        vb = np.asarray(image[a:b], dtype=np.float64) / nv[a:b, None]
        tb = np.asarray(text[a:b], dtype=np.float64) / nt[a:b, None]
        cos[a:b] = np.einsum("ij,ij->i", tb, vb)
        x[a:b, :d] = vb
        x[a:b, d:] = tb
    return x, cos


class _Ops:
    """The handful of array operations the kernel needs, for numpy or torch (lazily imported)."""

    def __init__(self, backend: Backend, device: str | None):
        self.backend = backend
        if backend == "numpy":
            if device not in (None, "cpu"):
                raise InputError(f"the numpy backend runs on the CPU only, got device={device!r}")
            self.torch = None
        elif backend == "torch":
            try:
                import torch
            except ImportError:
                raise InputError("backend='torch' needs PyTorch: pip install torch (or the 'empirical' extra)") from None
            self.torch = torch
            self.device = torch_device(torch, device)
        else:
            raise InputError(f"backend must be 'numpy' or 'torch', got {backend!r}")

    def put(self, x: np.ndarray) -> Any:
        if self.torch is None:
            return x
        return self.torch.from_numpy(np.ascontiguousarray(x)).to(self.device)

    def flip_text(self, xj: Any, d: int) -> Any:
        """:math:`[\\hat v, \\hat t] \\mapsto [\\hat v, -\\hat t]` (a copy)."""
        y = xj.clone() if self.torch is not None else xj.copy()
        y[:, d:] *= -1
        return y

    def abs_row_col_sums(self, tile: Any, *, diagonal: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """|tile| row sums (and column sums unless ``diagonal``), zeroing the diagonal first if asked.

        Sums within a tile (≤ block terms) run in the tile's precision, everything across tiles in float64: for
        float32 tiles the in-tile rounding (~1e-7 relative) is no larger than that of the float32 products."""
        if self.torch is None:
            if diagonal:
                np.fill_diagonal(tile, 0.0)
            np.abs(tile, out=tile)
            rows = tile.sum(axis=1).astype(np.float64)
            cols = None if diagonal else tile.sum(axis=0).astype(np.float64)
            return rows, cols
        if diagonal:
            tile.fill_diagonal_(0.0)
        tile.abs_()
        rows = tile.sum(dim=1).cpu().numpy().astype(np.float64)
        cols = None if diagonal else tile.sum(dim=0).cpu().numpy().astype(np.float64)
        return rows, cols


_LEAF = 256  # diagonal blocks are halved down to this size, so only ~n^2/2 products are computed


def _gap_row_sums(
    xa: np.ndarray, xb: np.ndarray | None, d: int, *, block: int, ops: _Ops
) -> tuple[np.ndarray, np.ndarray]:
    r"""Blocked row/column sums of :math:`|\cos(v_a,v_b) - \cos(t_a,t_b)|`.

    With ``xb=None`` (one set against itself) returns ``(r, r)`` with :math:`r_i = \sum_{j\ne i}|\cdot|`;
    otherwise ``(ra, rb)`` with :math:`ra_a = \sum_b |\cdot|` and :math:`rb_b = \sum_a |\cdot|`. Rows are
    :math:`[\hat v, \hat t]` (see :func:`_joint_rows`). Cost :math:`O(|a||b|d)` flops (:math:`\approx n^2 d`
    for one set: each unordered pair once), memory :math:`O(\text{block}^2)` beyond the inputs.
    """
    xa_dev = ops.put(xa)
    if xb is None:
        r = _self_sums(xa_dev, d, block, ops)
        return r, r
    return _cross_sums(xa_dev, ops.put(xb), d, block, ops)


def _cross_sums(xa: Any, xb: Any, d: int, block: int, ops: _Ops) -> tuple[np.ndarray, np.ndarray]:
    """Row and column sums of |tile| over every (a-block, b-block) tile; one GEMM per tile.

    The a side is flipped (``[v, -t]``) once per a-block, so a small a (a batch being added) costs no copies of
    the large b side; b-blocks widen when a-blocks are short, keeping tiles at about ``block**2`` entries."""
    na, nb = xa.shape[0], xb.shape[0]
    ra = np.zeros(na, dtype=np.float64)
    rb = np.zeros(nb, dtype=np.float64)
    for i0 in range(0, na, block):
        i1 = min(na, i0 + block)
        ya = ops.flip_text(xa[i0:i1], d)  # [v_I, -t_I]
        width = max(block, (block * block) // (i1 - i0))
        for j0 in range(0, nb, width):
            j1 = min(nb, j0 + width)
            tile = ya @ xb[j0:j1].T  # cos(v_i, v_j) - cos(t_i, t_j)
            rows, cols = ops.abs_row_col_sums(tile, diagonal=False)
            ra[i0:i1] += rows
            rb[j0:j1] += cols
    return ra, rb


def _self_sums(x: Any, d: int, block: int, ops: _Ops) -> np.ndarray:
    """Row sums of one set against itself, diagonal excluded: halves recursively (each half against itself,
    plus the two halves against each other), one square tile with a zeroed diagonal at the leaves."""
    n = x.shape[0]
    if n <= min(block, _LEAF):
        rows, _ = ops.abs_row_col_sums(x @ ops.flip_text(x, d).T, diagonal=True)
        return rows
    h = n // 2
    r = np.empty(n, dtype=np.float64)
    ra, rb = _cross_sums(x[:h], x[h:], d, block, ops)
    r[:h] = _self_sums(x[:h], d, block, ops) + ra
    r[h:] = _self_sums(x[h:], d, block, ops) + rb
    return r


def _check_block(block: int) -> int:
    return int(check_scalar(block, "block", low=1, integer=True))


def _from_terms(f: np.ndarray, r: np.ndarray, alpha: float, laion_scale: bool) -> ADResult:
    r"""AD from per-pair feature terms :math:`f_i = 1-s_i` and structure row sums :math:`r_i`."""
    n = f.size
    d_fea = float(f.mean())
    d_stru = float(r.sum() / (n * n))
    return ADResult(combine(d_fea, d_stru, alpha), d_fea, d_stru, n, alpha, bool(laion_scale))


def _attribution_from_terms(f: np.ndarray, r: np.ndarray, alpha: float, laion_scale: bool) -> Attribution:
    n = f.size
    return Attribution(_from_terms(f, r, alpha, laion_scale), alpha * f / n, (1.0 - alpha) * r / (n * n), 1.0 - f)
