"""Distances between two sets of image features (rows are samples): how far generated images are from clean ones.

- **Fréchet distance** (the FID formula in the judge's feature space): fits a Gaussian to each set. Biased at
  small samples — its expectation grows as the sample shrinks even between two samples of one distribution, so
  only differences at equal sample sizes mean anything.
- **Kernel distance** (KID, Bińkowski et al. 2018, "Demystifying MMD GANs"): the unbiased estimate of the squared
  maximum mean discrepancy with the cubic polynomial kernel k(x, y) = (x·y/d + 1)³,

      MMD²_u = 1/(m(m−1))·Σ_{i≠j} k(x_i, x_j) + 1/(n(n−1))·Σ_{i≠j} k(y_i, y_j) − 2/(mn)·Σ_{i,j} k(x_i, y_j),

  whose expectation is exactly 0 when both sets come from one distribution, at any sample size (so it can be
  negative). That is why it is reported beside the Fréchet distance at the harness's small evaluation sets.
"""

from __future__ import annotations

import warnings

import numpy as np

from implosion_base.errors import InputError


def _two_sets(a: np.ndarray, b: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise InputError(f"{name} needs two (n >= 2, d) feature arrays of the same width")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise InputError(f"{name}: the features contain NaN or infinite values")
    return a, b


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to feature sets ``a`` and ``b``:

    FD = ||μ_a − μ_b||² + Tr(Σ_a + Σ_b − 2 (Σ_a Σ_b)^{1/2}),

    (``scipy.linalg.sqrtm``; tiny imaginary parts from round-off are dropped; a singular product is offset on the
    diagonals by 1e-6, as FID does).
    """
    from scipy import linalg

    a, b = _two_sets(a, b, "frechet_distance")
    mu = a.mean(0) - b.mean(0)
    sa = np.cov(a, rowvar=False)
    sb = np.cov(b, rowvar=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(sa @ sb)
    if not np.all(np.isfinite(covmean)):
        eps = 1e-6 * np.eye(len(sa))
        covmean = linalg.sqrtm((sa + eps) @ (sb + eps))
    if np.iscomplexobj(covmean):
        covmean = covmean.real
    return float(mu @ mu + np.trace(sa) + np.trace(sb) - 2.0 * np.trace(covmean))


def kernel_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Unbiased MMD² between feature sets ``a`` (m × d) and ``b`` (n × d) with k(x, y) = (x·y/d + 1)³ (the
    module docstring's formula; the KID of Bińkowski et al. without its subset averaging)."""
    a, b = _two_sets(a, b, "kernel_distance")
    d = a.shape[1]
    kaa = (a @ a.T / d + 1.0) ** 3
    kbb = (b @ b.T / d + 1.0) ** 3
    kab = (a @ b.T / d + 1.0) ** 3
    m, n = len(a), len(b)
    return float((kaa.sum() - np.trace(kaa)) / (m * (m - 1)) + (kbb.sum() - np.trace(kbb)) / (n * (n - 1))
                 - 2.0 * kab.mean())
