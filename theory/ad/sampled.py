r"""AD estimated from uniform random pairs i < j: unbiased for :math:`D_{stru}`, with a 95% interval.

:math:`D_{fea}` stays exact (it is O(nd)); :math:`D_{stru} = \frac{n-1}{n}\,\mathbb E_{i<j}|\cos(v_i,v_j) -
\cos(t_i,t_j)|` (the paper's :math:`n^2`) is estimated by the mean over sampled pairs, its interval from their
variance. For n where :math:`n^2` is out of reach.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from implosion_base.validate import check_alpha, check_pairs, check_scalar, row_norms
from theory.ad.kernel import DEFAULT_ALPHA, _Z95, ADResult, _compute_dtype, combine, pair_scores

__all__ = ["alignment_difficulty_sampled", "sampled_result"]

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
