r"""The same computations over pairs that do not fit in memory: a row store read block by block.

A :class:`RowSource` (shards on disk, memory maps) gives rows on request. :func:`pair_terms_streamed` reads each
pair's cosine and norms in one pass; :func:`pair_attribution_streamed` gives every pair's exact feature share and a
sampled structure share; :func:`structure_sampled` estimates :math:`D_{stru}` from a fixed number of partners per
row, in independent blocks (:func:`structure_block`, :func:`combine_structure`) that run anywhere.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np

from implosion_base.errors import InputError
from implosion_base.validate import check_alpha, check_scalar, row_norms
from theory.ad.kernel import (_Z95, DEFAULT_ALPHA, DEFAULT_BLOCK, Attribution, Precision, _attribution_from_terms, _check_block,
                              _compute_dtype, _gap_row_sums, _joint_rows, _Ops, pair_scores)

__all__ = ["PairTerms", "RowSource", "StructureBlock", "StructureSample", "combine_structure", "pair_attribution_streamed",
           "pair_terms_streamed", "partner_group", "structure_block", "structure_blocks", "structure_sampled"]

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


def _group_terms(src: RowSource, t: np.ndarray, v: np.ndarray, first: int
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A partner group's rows in float32 and their norms and pair cosines (float64 results). float16 and float32
    rows (what clip-retrieval and most releases write) are reduced in float32 — no float64 copy — when every norm
    lies where float32 squares neither overflow nor underflow (1e-15..1e18; float16 rows always do); any other
    dtype, or a row outside that range, NaN, inf or zero, goes through the scale-safe float64 norms
    (:func:`implosion_base.validate.row_norms`, which also names a bad row)."""
    t32, v32 = np.asarray(t, np.float32), np.asarray(v, np.float32)
    if t.dtype in (np.float16, np.float32) and v.dtype in (np.float16, np.float32):
        nt = np.sqrt(np.einsum("ij,ij->i", t32, t32, dtype=np.float32)).astype(np.float64)
        nv = np.sqrt(np.einsum("ij,ij->i", v32, v32, dtype=np.float32)).astype(np.float64)
        if all(np.all(np.isfinite(x) & (x > 1e-15) & (x < 1e18)) for x in (nt, nv)):
            return t32, v32, nt, nv, np.einsum("ij,ij->i", t32, v32, dtype=np.float32) / (nt * nv)
    nt, nv = _norms_named(src, t, first, "text"), _norms_named(src, v, first, "image")
    return t32, v32, nt, nv, np.einsum("ij,ij->i", np.asarray(t, np.float64), np.asarray(v, np.float64)) / (nt * nv)


def _row_moments(gap: np.ndarray, self_col: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row of ``gap`` (rows × partners): the mean term, its standard error s/√used and the terms used, leaving
    out the few cells where partner c is the row itself (row ``self_col[c]``: a pair is not its own partner).
    Sums in float64; the variance from the sum of squares (terms lie in [0, 2], so no cancellation to fear)."""
    total = gap.sum(axis=1, dtype=np.float64)
    squares = np.einsum("ij,ij->i", gap, gap, dtype=np.float64)
    used = np.full(len(gap), gap.shape[1], dtype=np.int64)
    for c in np.flatnonzero((self_col >= 0) & (self_col < len(gap))):
        r = self_col[c]
        total[r] -= gap[r, c]
        squares[r] -= float(gap[r, c]) ** 2
        used[r] -= 1
    mean = total / used
    var = np.maximum(squares - used * mean ** 2, 0.0) / (used - 1)
    return mean, np.sqrt(var / used), used


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
        t32, v32, nt, nv, cos = _group_terms(src, t, v, g0)
        here = slice(g0 - a, g1 - a)
        out["text_norms"][here], out["image_norms"][here], out["cos"][here] = nt, nv, cos
        j = np.sort(np.random.default_rng([int(seed), g0 // size]).integers(0, n, size=partners))
        tj, vj = (np.asarray(x, np.float32) for x in src.take(j))
        ntj = np.linalg.norm(tj, axis=1)
        nvj = np.linalg.norm(vj, axis=1)
        # the products of raw rows, then scaled: a row's norm divides its k products alike (cheaper than scaling rows)
        gt = (t32 @ tj.T) / nt[:, None].astype(np.float32) / np.where(ntj > 0, ntj, 1)[None, :]
        gv = (v32 @ vj.T) / nv[:, None].astype(np.float32) / np.where(nvj > 0, nvj, 1)[None, :]
        mean_i, se_i, used = _row_moments(np.abs(gv - gt), j - g0)
        out["row_sums"][here] = (n - 1) * mean_i
        out["row_se"][here] = (n - 1) * se_i
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
    the cosines and norms on the way. :mod:`dataset_audit.passes` runs the same blocks in parallel and resumably."""
    check_scalar(partners, "partners", low=2, integer=True)
    if src.n < 3:
        raise InputError(f"need at least 3 pairs, got n={src.n}")
    seed = int(np.random.SeedSequence().entropy % 2**63) if seed is None else int(seed)
    blocks = [structure_block(src, a, b, int(partners), seed) for a, b in structure_blocks(src.n, rows)]
    return combine_structure(blocks, src.n)
