r"""Alignment Difficulty (AD) of a set of text–image training pairs.

Definition (Ding et al., "Understanding Implosion in Text-to-Image Generative Models", CCS 2024; the exact form
of the authors' released code, docs/design.md §3). For n pairs :math:`(t_i, v_i)`, L2-normalised, in one joint space:

.. math::

    s_i &= \cos(t_i, v_i), \qquad \text{LAION rescaling (default): } s_i \leftarrow \operatorname{clip}(4(s_i-0.2), 0, 1)

    D_{fea} &= \frac1n \sum_i (1 - s_i) \in [0, 1]\ \text{(rescaled)}

    D_{stru} &= \frac{2}{n^2} \sum_{i<j} \bigl|\cos(v_i, v_j) - \cos(t_i, t_j)\bigr| \in [0, 2)

    AD &= \alpha D_{fea} + (1-\alpha) D_{stru}, \qquad \alpha = 0.8.

Note the :math:`n^2` (not :math:`n(n-1)`) in :math:`D_{stru}`: it is what the authors' code computes.

Everything here goes through one kernel, :func:`_gap_row_sums`, which returns for each pair i the row sum
:math:`r_i = \sum_{j \ne i} |\cos(v_i,v_j) - \cos(t_i,t_j)|`, so that :math:`D_{stru} = \sum_i r_i / n^2`. The
kernel works on blocks of rows: each row is stored once as :math:`x_i = [\hat v_i, \hat t_i]` (2d numbers) and
one GEMM per tile, :math:`x_I [\hat v_J, -\hat t_J]^\top`, gives :math:`\cos(v_i,v_j)-\cos(t_i,t_j)` directly.
Diagonal blocks are halved recursively, so each unordered pair is computed about once (:math:`\approx n^2 d`
multiply-adds). Memory is :math:`O(nd + b^2)` for block size b; the n×n matrix never exists.

Precision: tile products are computed in the inputs' floating precision (float32 inputs → float32 GEMM, as the
authors' float32 reference does; float64 inputs → float64); sums within a tile (≤ block terms) run in the
tile's precision and every sum across tiles in float64. Pass
``precision="float64"`` to force float64 products. Agreement with a float64 brute force is ~1e-15 for float64
inputs and ~1e-7 for float32 inputs (the authors' target is 1e-5).

Entry points (POT-style functional API):

- :func:`alignment_difficulty` – exact, blocked, numpy or torch (GPU) backend → :class:`ADResult`.
- :func:`alignment_difficulty_sampled` – uniform random pairs i<j, unbiased for :math:`D_{stru}`, 95% CI;
  :math:`D_{fea}` stays exact (it is O(nd)). For n where :math:`n^2` is out of reach.
- :class:`IncrementalAD` – add (and remove) pairs at :math:`O(m(n+m)d)` per batch of m; equal to the exact value.
- :func:`pair_attribution` – each pair's share of AD,
  :math:`c_i = \alpha(1-s_i)/n + (1-\alpha) r_i/n^2` with :math:`\sum_i c_i = AD`; high :math:`c_i` flags pairs
  that disagree with the rest (a poison detector to evaluate).
- ``python -m theory.ad FILE`` – the command line (see :func:`main`).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Literal, Protocol, Sequence

import numpy as np

from implosion_base.cli import ArgumentParser, dry_run, path_arg, run_main
from implosion_base.errors import InputError
from implosion_base.validate import check_scalar, check_alpha, check_pairs, row_norms, torch_device

__all__ = [
    "ADResult",
    "Attribution",
    "IncrementalAD",
    "alignment_difficulty",
    "alignment_difficulty_sampled",
    "combine",
    "pair_attribution",
    "pair_scores",
]

Precision = Literal["auto", "float32", "float64"]
Backend = Literal["numpy", "torch"]

DEFAULT_ALPHA = 0.8
DEFAULT_BLOCK = 2048
_Z95 = 1.959963984540054  # two-sided 95% normal quantile


# ----------------------------------------------------------------------------------------------------------------
# results


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


# ----------------------------------------------------------------------------------------------------------------
# the pieces of the definition


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


# ----------------------------------------------------------------------------------------------------------------
# normalisation into the kernel's row layout


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


# ----------------------------------------------------------------------------------------------------------------
# the kernel


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


# ----------------------------------------------------------------------------------------------------------------
# exact AD and attribution


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


def _exact_parts(
    text: Any, image: Any, alpha: float, laion_scale: bool, block: int, precision: Precision,
    backend: Backend, device: str | None,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Validated per-pair feature terms f, structure row sums r, and alpha."""
    alpha = check_alpha(alpha)
    block = _check_block(block)
    ops = _Ops(backend, device)
    t, v = check_pairs(text, image)
    d = t.shape[1]
    x, cos = _joint_rows(t, v, _compute_dtype(precision, t, v))
    f = 1.0 - pair_scores(cos, laion_scale)
    r, _ = _gap_row_sums(x, None, d, block=block, ops=ops)
    return f, r, alpha


def alignment_difficulty(
    text: Any,
    image: Any,
    alpha: float = DEFAULT_ALPHA,
    laion_scale: bool = True,
    *,
    block: int = DEFAULT_BLOCK,
    precision: Precision = "auto",
    backend: Backend = "numpy",
    device: str | None = None,
) -> ADResult:
    r"""Exact Alignment Difficulty of n text–image pairs.

    .. math:: AD = \alpha\,\frac1n\sum_i (1-s_i) + (1-\alpha)\,\frac{2}{n^2}\sum_{i<j}
              \bigl|\cos(v_i,v_j)-\cos(t_i,t_j)\bigr|

    Parameters
    ----------
    text, image : array_like, shape (n, d)
        Row i of each is pair i; any nonzero scale (rows are L2-normalised here). n ≥ 2.
    alpha : float in [0, 1]
        Weight of the feature term.
    laion_scale : bool
        Rescale pair cosines with :math:`\operatorname{clip}(4(s-0.2),0,1)` (the authors' default).
    block : int
        Tile size; memory beyond the inputs is :math:`O(nd + \text{block}^2)`.
    precision : 'auto' | 'float32' | 'float64'
        Precision of tile products ('auto': float32 iff both inputs are float16/float32). Sums across tiles
        are float64.
    backend : 'numpy' | 'torch'
        'torch' runs the tiles on ``device`` (default: CUDA if available).

    Returns
    -------
    ADResult

    Raises
    ------
    InputError
        Mismatched shapes, n < 2, NaN/inf, a zero row, alpha outside [0, 1].
    """
    f, r, alpha = _exact_parts(text, image, alpha, laion_scale, block, precision, backend, device)
    return _from_terms(f, r, alpha, laion_scale)


def pair_attribution(
    text: Any,
    image: Any,
    alpha: float = DEFAULT_ALPHA,
    laion_scale: bool = True,
    *,
    block: int = DEFAULT_BLOCK,
    precision: Precision = "auto",
    backend: Backend = "numpy",
    device: str | None = None,
) -> Attribution:
    r"""Each pair's share of AD (same computation and cost as :func:`alignment_difficulty`).

    .. math:: c_i = \frac{\alpha (1-s_i)}{n} + \frac{(1-\alpha)}{n^2}\sum_{j\ne i}
              \bigl|\cos(v_i,v_j)-\cos(t_i,t_j)\bigr|, \qquad \sum_i c_i = AD.
    """
    f, r, alpha = _exact_parts(text, image, alpha, laion_scale, block, precision, backend, device)
    return _attribution_from_terms(f, r, alpha, laion_scale)


# ----------------------------------------------------------------------------------------------------------------
# sampled estimator


def alignment_difficulty_sampled(
    text: Any,
    image: Any,
    n_samples: int = 1_000_000,
    alpha: float = DEFAULT_ALPHA,
    laion_scale: bool = True,
    *,
    seed: int | None = 0,
    chunk: int = 8192,
) -> ADResult:
    r"""AD with :math:`D_{stru}` estimated from ``n_samples`` uniform random pairs i<j (with replacement).

    Each unordered pair i≠j is drawn with probability :math:`2/(n(n-1))`, so with
    :math:`\hat\mu` the sample mean of :math:`|\cos(v_i,v_j)-\cos(t_i,t_j)|`,
    :math:`\hat D_{stru} = \frac{n-1}{n}\hat\mu` is unbiased. The 95% interval is the normal one,
    :math:`\hat D_{stru} \pm 1.96\,\frac{n-1}{n}\,\hat\sigma/\sqrt{N}`; :math:`D_{fea}` is computed exactly, so
    the AD interval is :math:`(1-\alpha)` times it. Memory :math:`O(n + \text{chunk}\cdot d)`: the inputs are not
    copied, so n in the millions is fine (pairs are drawn ``chunk`` at a time; small chunks stay in cache).
    """
    alpha = check_alpha(alpha)
    check_scalar(n_samples, "n_samples", low=2, integer=True)
    t, v = check_pairs(text, image)
    n, _ = t.shape
    nt = row_norms(t, "text", chunk)
    nv = row_norms(v, "image", chunk)
    cos = np.empty(n, dtype=np.float64)
    for a in range(0, n, chunk):
        tb = np.asarray(t[a : a + chunk], dtype=np.float64)
        vb = np.asarray(v[a : a + chunk], dtype=np.float64)
        cos[a : a + chunk] = np.einsum("ij,ij->i", tb, vb) / (nt[a : a + chunk] * nv[a : a + chunk])
    d_fea = float((1.0 - pair_scores(cos, laion_scale)).mean())

    ct = _compute_dtype("auto", t, v)
    mean, var = _sample_gaps(lambda idx: (t[idx], v[idx]), nt, nv, n, n_samples, np.random.default_rng(seed), chunk,
                             ct)
    return _sampled_result(d_fea, mean, var, n, n_samples, alpha, laion_scale)


def _sample_gaps(take: Callable[[np.ndarray], tuple[Any, Any]], nt: np.ndarray, nv: np.ndarray, n: int,
                 n_samples: int, rng: np.random.Generator, chunk: int, ct: np.dtype) -> tuple[float, float]:
    r"""Mean and variance of :math:`|\cos(v_i,v_j)-\cos(t_i,t_j)|` over ``n_samples`` uniform pairs i≠j drawn
    ``chunk`` at a time; ``take(idx)`` gives the (text, image) rows ``idx`` (arrays or any row store)."""
    count, mean, m2 = 0, 0.0, 0.0  # running mean and sum of squared deviations (Chan et al. merge)
    while count < n_samples:
        m = min(chunk, n_samples - count)
        i = rng.integers(0, n, size=m)
        j = rng.integers(0, n - 1, size=m)
        j += j >= i  # uniform over j != i
        (ti, vi), (tj, vj) = take(i), take(j)
        ti, tj, vi, vj = (np.asarray(a, dtype=ct) for a in (ti, tj, vi, vj))
        ctt = np.einsum("ij,ij->i", ti, tj).astype(np.float64) / (nt[i] * nt[j])
        cvv = np.einsum("ij,ij->i", vi, vj).astype(np.float64) / (nv[i] * nv[j])
        gap = np.abs(cvv - ctt)
        g_mean = float(gap.mean())
        g_m2 = float(np.sum((gap - g_mean) ** 2))
        delta = g_mean - mean
        total = count + m
        mean += delta * m / total
        m2 += g_m2 + delta * delta * count * m / total
        count = total
    return mean, m2 / (n_samples - 1)


def _sampled_result(d_fea: float, mean: float, var: float, n: int, n_samples: int, alpha: float,
                    laion_scale: bool) -> ADResult:
    r"""The sampled estimator's result: :math:`\hat D_{stru} = \frac{n-1}{n}\hat\mu` with its normal 95% interval."""
    scale = (n - 1) / n
    d_stru = scale * mean
    half = _Z95 * scale * math.sqrt(var / n_samples)
    return sampled_result(d_fea, d_stru, (d_stru - half, d_stru + half), n, n_samples, alpha, laion_scale)


def sampled_result(d_fea: float, d_stru: float, d_stru_ci95: tuple[float, float], n: int, n_terms: int,
                   alpha: float, laion_scale: bool) -> ADResult:
    """An :class:`ADResult` with :math:`D_{fea}` exact and :math:`D_{stru}` estimated with its 95% interval; AD's
    interval is (1 − α) times that of :math:`D_{stru}`."""
    ad = combine(d_fea, d_stru, alpha)
    lo, hi = d_stru_ci95
    return ADResult(ad, d_fea, d_stru, n, alpha, bool(laion_scale),
                    ci95=(ad - (1 - alpha) * (d_stru - lo), ad + (1 - alpha) * (hi - d_stru)),
                    d_stru_ci95=(lo, hi), n_samples=int(n_terms))


# ----------------------------------------------------------------------------------------------------------------
# pairs that do not fit in memory: the same computations over a row store


class RowSource(Protocol):
    """n pairs held elsewhere (shards on disk, memory maps): ``n``, ``d``, ``dtype``; ``block(a, b)`` returns the
    (text, image) rows a..b−1 and ``take(idx)`` the rows ``idx``, as arrays (:class:`implosion_base.shards.PairShards`
    is one)."""

    n: int
    d: int
    dtype: np.dtype

    def block(self, a: int, b: int) -> tuple[np.ndarray, np.ndarray]: ...

    def take(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


@dataclass(frozen=True)
class PairTerms:
    r"""What one pass over a row store gives: each pair's cosine :math:`\cos(t_i, v_i)` and its text and image row
    norms (validated: no NaN, inf or zero rows). Every streamed computation below starts from them; pass them in
    to read the store once for several."""

    cos: np.ndarray
    text_norms: np.ndarray
    image_norms: np.ndarray


def pair_terms_streamed(src: RowSource, rows: int = 8192) -> PairTerms:
    """:class:`PairTerms` of ``src``, one block of ``rows`` pairs at a time."""
    cos, nt, nv = (np.empty(src.n, dtype=np.float64) for _ in range(3))
    for a in range(0, src.n, rows):
        b = min(src.n, a + rows)
        t, v = src.block(a, b)
        nt[a:b] = row_norms(t, f"text (pairs {a}..{b - 1})")
        nv[a:b] = row_norms(v, f"image (pairs {a}..{b - 1})")
        cos[a:b] = np.einsum("ij,ij->i", np.asarray(t, np.float64), np.asarray(v, np.float64)) / (nt[a:b] * nv[a:b])
    return PairTerms(cos, nt, nv)


def pair_attribution_streamed(src: RowSource, alpha: float = DEFAULT_ALPHA, laion_scale: bool = True, *,
                              rows: int = 8192, block: int = DEFAULT_BLOCK, precision: Precision = "auto",
                              terms: PairTerms | None = None) -> Attribution:
    r""":func:`pair_attribution` of pairs that need not fit in memory: blocks of ``rows`` pairs are read from
    ``src`` and compared block pair by block pair (each block against itself, then against every later block), so
    memory is :math:`O(\text{rows}\cdot d + \text{block}^2)` whatever n; the cost is the exact kernel's
    :math:`n^2 d`. The result equals the in-memory one to rounding. ``terms``: the store's
    :func:`pair_terms_streamed`, when already read."""
    alpha = check_alpha(alpha)
    block = _check_block(block)
    check_scalar(rows, "rows", low=1, integer=True)
    if src.n < 2:
        raise InputError(f"need at least 2 pairs, got n={src.n}")
    ops = _Ops("numpy", None)
    dtype = _compute_dtype(precision, np.empty(0, src.dtype))
    terms = terms or pair_terms_streamed(src, rows)
    f = 1.0 - pair_scores(terms.cos, laion_scale)
    r = np.zeros(src.n, dtype=np.float64)
    starts = list(range(0, src.n, rows))

    def joint(a: int) -> np.ndarray:
        return _joint_rows(*src.block(a, min(src.n, a + rows)), dtype)[0]

    for k, a in enumerate(starts):
        xa = joint(a)
        ra = r[a:a + len(xa)]
        ra += _gap_row_sums(xa, None, src.d, block=block, ops=ops)[0]
        for b in starts[k + 1:]:
            xb = joint(b)
            s_a, s_b = _gap_row_sums(xa, xb, src.d, block=block, ops=ops)
            ra += s_a
            r[b:b + len(xb)] += s_b
    return _attribution_from_terms(f, r, alpha, laion_scale)


@dataclass(frozen=True)
class StructureSample:
    r"""What :func:`structure_sampled` estimates: each pair's structure row sum :math:`\hat r_i` with its standard
    error, :math:`\hat D_{stru}` with its 95% interval, and how many pair terms were used."""

    row_sums: np.ndarray
    row_se: np.ndarray
    d_stru: float
    d_stru_ci95: tuple[float, float]
    n_terms: int


def partner_group(n: int) -> int:
    """Rows that share one draw of random partners in :func:`structure_sampled`: min(4096, ⌈n/32⌉), so there are
    at least 32 groups (the interval's clusters) when n allows. A function of n alone: every block layout, worker
    count or memory budget that reads whole groups gives bit-identical estimates."""
    return max(1, min(4096, -(-int(n) // 32)))


@dataclass(frozen=True)
class StructureBlock:
    """One block task's share of :func:`structure_sampled` (rows ``start`` .. ``start + len(cos) − 1``, whole
    partner groups): the rows' :class:`PairTerms` and sampled structure row sums with their standard errors, and
    per partner group its mean term and size; :func:`combine_structure` joins blocks in order."""

    start: int
    cos: np.ndarray
    text_norms: np.ndarray
    image_norms: np.ndarray
    row_sums: np.ndarray
    row_se: np.ndarray
    group_means: np.ndarray
    group_sizes: np.ndarray
    n_terms: int

    def arrays(self) -> dict[str, np.ndarray]:
        """Every field as an array (for an ``.npz`` record of a finished block)."""
        return {k: np.asarray(getattr(self, k)) for k in self.__dataclass_fields__}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> "StructureBlock":
        """The inverse of :meth:`arrays`."""
        return cls(int(arrays["start"]), *(np.asarray(arrays[k]) for k in (
            "cos", "text_norms", "image_norms", "row_sums", "row_se", "group_means", "group_sizes")),
            int(arrays["n_terms"]))


def _norms_named(src: RowSource, x: np.ndarray, first: int, what: str) -> np.ndarray:
    """:func:`row_norms` of rows ``first``.. of ``src``; a NaN/inf or zero row is an InputError naming its shard and
    row there when ``src`` knows its shards (``names``, ``shard_of``, ``offsets``), else its pair index."""
    try:
        return row_norms(x, what)
    except InputError:
        with np.errstate(invalid="ignore", over="ignore"):
            y = np.asarray(x, dtype=np.float64)
            bad = ~np.isfinite(y).all(1) | ~np.any(y != 0, axis=1)
        row = first + int(np.flatnonzero(bad)[0]) if bad.any() else first
        problem = "NaN or inf" if bad.any() and not np.isfinite(y[row - first]).all() else "a zero vector or too large"
        if hasattr(src, "shard_of"):
            k = int(src.shard_of(row))
            raise InputError(f"shard {src.names[k]}: {what} row {row - int(src.offsets[k])} (pair {row}) is {problem}") \
                from None
        raise InputError(f"{what} of pair {row} is {problem}") from None


def structure_block(src: RowSource, a: int, b: int, partners: int, seed: int,
                    rows: tuple[np.ndarray, np.ndarray] | None = None) -> StructureBlock:
    r"""The rows a..b−1 (``a`` a multiple of :func:`partner_group`, ``b`` too or n) of :func:`structure_sampled`.

    Per partner group g of G rows: ``partners`` rows j drawn uniformly from all n by the generator seeded
    (``seed``, g), each pair's cosine and norms, every term :math:`g_{ij} = |\cos(v_i,v_j)-\cos(t_i,t_j)|` of the
    group's rows against them (float32, two small matrix products; j = i left out), :math:`\hat r_i = (n-1)\bar
    g_i` with standard error :math:`(n-1)s_i/\sqrt{\text{used}_i}`, and the group's mean term. Each group is computed
    alone, so the result for a row does not depend on which block it was read in. ``rows``: the block's
    (text, image) rows when already read."""
    n, size = src.n, partner_group(src.n)
    if a % size or (b % size and b != n) or not 0 <= a < b <= n:
        raise ValueError(f"block {a}..{b} is not made of whole partner groups of {size} rows (n = {n})")
    t_all, v_all = rows if rows is not None else src.block(a, b)
    out = {k: np.empty(b - a) for k in ("cos", "text_norms", "image_norms", "row_sums", "row_se")}
    means, sizes, count = [], [], 0
    for g0 in range(a, b, size):
        g1 = min(b, g0 + size)
        t, v = t_all[g0 - a:g1 - a], v_all[g0 - a:g1 - a]
        nt, nv = _norms_named(src, t, g0, "text"), _norms_named(src, v, g0, "image")
        here = slice(g0 - a, g1 - a)
        out["text_norms"][here], out["image_norms"][here] = nt, nv
        out["cos"][here] = np.einsum("ij,ij->i", np.asarray(t, np.float64), np.asarray(v, np.float64)) / (nt * nv)
        j = np.sort(np.random.default_rng([int(seed), g0 // size]).integers(0, n, size=partners))
        tj, vj = (np.asarray(x, np.float32) for x in src.take(j))
        ntj = np.linalg.norm(tj, axis=1, keepdims=True)
        nvj = np.linalg.norm(vj, axis=1, keepdims=True)
        gt = (np.asarray(t, np.float32) / nt[:, None].astype(np.float32)) @ (tj / np.where(ntj > 0, ntj, 1)).T
        gv = (np.asarray(v, np.float32) / nv[:, None].astype(np.float32)) @ (vj / np.where(nvj > 0, nvj, 1)).T
        gap = np.abs(gv - gt).astype(np.float64)
        gap[np.arange(g0, g1)[:, None] == j[None, :]] = np.nan  # a pair is not its own partner
        used = np.sum(~np.isnan(gap), axis=1)
        mean_i = np.nanmean(gap, axis=1)
        out["row_sums"][here] = (n - 1) * mean_i
        out["row_se"][here] = (n - 1) * np.nanstd(gap, axis=1, ddof=1) / np.sqrt(used)
        means.append(float(mean_i.mean()))
        sizes.append(g1 - g0)
        count += int(used.sum())
    return StructureBlock(a, **out, group_means=np.asarray(means), group_sizes=np.asarray(sizes, dtype=np.int64),
                          n_terms=count)


def combine_structure(blocks: Sequence[StructureBlock], n: int) -> tuple[PairTerms, StructureSample]:
    r"""Join the blocks of :func:`structure_block` (any order; together covering rows 0..n−1 once) into the pair
    terms and the :class:`StructureSample`: :math:`\hat D_{stru} = \tfrac{n-1}{n}\sum_g w_g m_g` over the G
    partner groups (w_g = group size / n, m_g its mean term), with the 95% interval
    :math:`\pm 1.96\,\tfrac{n-1}{n}\sqrt{\tfrac{G}{G-1}\sum_g w_g^2 (m_g-\bar m)^2}` — groups as independent
    clusters (their partner draws are); conservative, since it also counts the real differences between groups of
    rows. Sums run in row order, so the result does not depend on the blocks' order or sizes."""
    blocks = sorted(blocks, key=lambda blk: blk.start)
    ends = [blk.start + len(blk.cos) for blk in blocks]
    if [blk.start for blk in blocks] != [0, *ends[:-1]] or (ends[-1] if ends else 0) != n:
        raise ValueError(f"blocks do not cover rows 0..{n - 1} exactly once")
    cat = {k: np.concatenate([getattr(blk, k) for blk in blocks]) for k in (
        "cos", "text_norms", "image_norms", "row_sums", "row_se", "group_means", "group_sizes")}
    m, w = cat["group_means"], cat["group_sizes"] / n
    scale = (n - 1) / n
    d_stru = scale * float(np.sum(w * m))
    g = len(m)
    half = _Z95 * scale * math.sqrt(g / (g - 1) * float(np.sum(w**2 * (m - np.sum(w * m)) ** 2))) if g > 1 else \
        float("nan")
    terms = PairTerms(cat["cos"], cat["text_norms"], cat["image_norms"])
    return terms, StructureSample(cat["row_sums"], cat["row_se"], d_stru, (d_stru - half, d_stru + half),
                                  sum(blk.n_terms for blk in blocks))


def structure_blocks(n: int, rows: int) -> list[tuple[int, int]]:
    """Row ranges of at most ``rows`` rows (at least one partner group) made of whole partner groups, covering
    0..n−1: the tasks of one pass of :func:`structure_sampled`."""
    size = partner_group(n)
    step = max(size, int(rows) // size * size)
    return [(a, min(n, a + step)) for a in range(0, n, step)]


def structure_sampled(src: RowSource, partners: int, *, seed: int | None = 0, rows: int = 8192
                      ) -> tuple[PairTerms, StructureSample]:
    r"""The pair terms and the structure term from one pass with random partners shared by groups of rows.

    Rows are read in blocks of at most ``rows``; each partner group of :func:`partner_group` rows (at least 32
    groups when n allows) draws ``partners`` rows j uniformly from all n (one random read each) and forms every
    term :math:`g_{ij} = |\cos(v_i,v_j)-\cos(t_i,t_j)|` of its rows i against them (:func:`structure_block`). For
    each pair, :math:`\hat r_i = (n-1)\,\bar g_i` is unbiased for :math:`r_i = \sum_{j\ne i} g_{ij}` (j is uniform
    whatever i), with standard error :math:`(n-1)\,s_i/\sqrt{\text{partners}}`; and
    :math:`\hat D_{stru} = \sum_i \hat r_i / n^2` is unbiased for :math:`D_{stru}`, with the interval of
    :func:`combine_structure`. Pairs of one group share partners, so their estimates are correlated (each is still
    unbiased). Memory :math:`O(\text{rows}\cdot d + G\cdot\text{partners})`; float32 arithmetic. ``seed`` None
    draws one from the operating system. Returns (:class:`PairTerms`, :class:`StructureSample`): the pass reads
    the cosines and norms on the way. :mod:`simulate.audit_passes` runs the same blocks in parallel and resumably."""
    check_scalar(partners, "partners", low=2, integer=True)
    if src.n < 3:
        raise InputError(f"need at least 3 pairs, got n={src.n}")
    seed = int(np.random.SeedSequence().entropy % 2**63) if seed is None else int(seed)
    blocks = [structure_block(src, a, b, int(partners), seed) for a, b in structure_blocks(src.n, rows)]
    return combine_structure(blocks, src.n)


# ----------------------------------------------------------------------------------------------------------------
# incremental accumulator


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


# ----------------------------------------------------------------------------------------------------------------
# command line


def score_rows(att: Attribution, names: dict[str, np.ndarray] | None = None) -> list[dict[str, Any]]:
    """One row per pair, in file order: index, the pair's labels (``file_name``, ``caption`` when given), its
    score s_i, its feature share α(1−s_i)/n, its structure share (1−α)r_i/n², its share of AD (their sum) and its
    rank by share (1 = largest; ties by index)."""
    names = names or {}
    rank = np.empty(att.contribution.size, dtype=np.int64)
    rank[ranking(att.contribution)] = np.arange(1, att.contribution.size + 1)
    return [{"index": i, **{k: str(v[i]) for k, v in names.items()}, "s_i": float(att.score[i]),
             "feature_share": float(att.feature[i]), "structure_share": float(att.structure[i]),
             "share_of_ad": float(att.contribution[i]), "rank": int(rank[i])} for i in range(att.contribution.size)]


#: The most random pairs ``--sample`` draws (about a minute on one core; more gives no useful precision).
MAX_SAMPLES = 10**9


def _parser() -> ArgumentParser:
    p = ArgumentParser(
        prog="python -m theory.ad",
        description="Alignment Difficulty of the text-image pairs in FILE (.npz or .safetensors with arrays "
        "'text' and 'image', n x d).",
    )
    p.add_argument("file", metavar="FILE", help=".npz or .safetensors file holding arrays 'text' and 'image'")
    p.add_argument("--alpha", type=float, default=DEFAULT_ALPHA, help="weight of D_fea in [0, 1] (default 0.8)")
    p.add_argument("--no-laion-scale", action="store_true", help="use raw pair cosines instead of clip(4(s-0.2),0,1)")
    p.add_argument("--sample", type=int, metavar="N", help="estimate D_stru from N random pairs (with a 95%% CI)")
    p.add_argument("--seed", type=int, default=0, help="seed of --sample (default 0)")
    p.add_argument("--block", type=int, default=DEFAULT_BLOCK, help="tile size of the exact computation")
    p.add_argument("--precision", choices=["auto", "float32", "float64"], default="auto")
    p.add_argument("--backend", choices=["numpy", "torch"], default="numpy")
    p.add_argument("--device", default=None, help="torch device, e.g. cuda:0 (backend torch)")
    p.add_argument("--top", type=int, default=0, metavar="K",
                   help="also report the K pairs with the largest share of AD (exact mode), with their file_name "
                        "and caption when FILE holds them")
    p.add_argument("--scores", type=path_arg, default=None, metavar="CSV",
                   help="write every pair (index, file_name, caption, s_i, feature and structure shares, share of "
                        "AD, rank) to CSV (exact mode)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m theory.ad FILE [--alpha A] [--no-laion-scale] [--sample N] [--seed S] [--json]``."""
    from implosion_base.pairs_file import PAIR_LABELS, load_pair_labels, load_pairs
    from implosion_base.files import atomic_write_text
    from implosion_base.records import csv_text

    args = _parser().parse_args(argv)
    check_alpha(args.alpha)
    if args.sample is not None:
        check_scalar(args.sample, "--sample", low=2, high=MAX_SAMPLES, integer=True)
    check_scalar(args.seed, "--seed", low=0, integer=True)
    check_scalar(args.top, "--top", low=0, integer=True)
    if (args.top or args.scores) and args.sample is not None:
        raise InputError("--top and --scores need the exact computation; drop --sample")
    if args.scores is not None and args.scores.suffix.lower() != ".csv":
        raise InputError(f"--scores {args.scores}: the table is written as CSV; name it *.csv")
    if args.scores is not None:
        from implosion_base.files import check_output_file

        check_output_file(args.scores, name="--scores")  # before any work: a folder there is never replaced
    if dry_run(args, "python -m theory.ad", {"input": args.file, "mode": "sampled" if args.sample else "exact",
                                             "alpha": args.alpha, "laion_scale": not args.no_laion_scale,
                                             "scores": args.scores, "top": args.top}):
        return 0
    text, image = load_pairs(args.file)
    names = load_pair_labels(args.file, len(text)) if (args.top or args.scores) else {}
    laion = not args.no_laion_scale
    top: list[dict[str, float]] = []
    if args.sample is not None:
        res = alignment_difficulty_sampled(text, image, args.sample, args.alpha, laion, seed=args.seed)
    else:
        att = pair_attribution(text, image, args.alpha, laion, block=args.block, precision=args.precision,
                               backend=args.backend, device=args.device)
        res = att.result
        top = [{"index": int(i), **{k: str(v[i]) for k, v in names.items()},
                "contribution": float(att.contribution[i])} for i in att.top(args.top)]
        if args.scores is not None:
            atomic_write_text(args.scores, csv_text(score_rows(att, names)))
    out = res.as_dict()
    if top:
        out["top"] = top
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"pairs      n = {res.n}")
    print(f"D_fea        = {res.d_fea:.8f}")
    line = f"D_stru       = {res.d_stru:.8f}"
    if res.d_stru_ci95 is not None:
        line += f"   95% CI [{res.d_stru_ci95[0]:.8f}, {res.d_stru_ci95[1]:.8f}] from {res.n_samples} pairs"
    print(line)
    line = f"AD           = {res.ad:.8f}   (alpha={res.alpha}, laion_scale={res.laion_scale})"
    if res.ci95 is not None:
        line += f"   95% CI [{res.ci95[0]:.8f}, {res.ci95[1]:.8f}]"
    print(line)
    for row in top:
        label = "  ".join(row[k] for k in PAIR_LABELS if k in row)
        print(f"  pair {row['index']:>8d}  share of AD {row['contribution']:.3e}" + (f"  {label}" if label else ""))
    if args.scores is not None:
        print(f"wrote {args.scores} ({res.n} pairs)")
    return 0


def cli() -> None:
    """The ``implosion-ad`` console script: :func:`main` behind the one-line error boundary."""
    run_main(main, prog="implosion-ad")


if __name__ == "__main__":
    run_main(main, prog="python -m theory.ad")
