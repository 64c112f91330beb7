r"""Which pairs look poisoned: the flag rule on the pair cosines, and the score's robust z.

A dirty-label pair's caption and image show different concepts, so its text–image cosine comes from another
population than the matched pairs'. :func:`mixture_flags` fits a two-component Gaussian mixture (EM) to the pair
cosines and compares it with one Gaussian by BIC; when two components win and Ashman's D > 2, a pair is flagged when
its posterior probability of the low-cosine component exceeds 0.5. :func:`modified_z` is the Iglewicz–Hoaglin
z-score of the score, reported beside it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def mixture_flags(x: np.ndarray, *, iters: int = 200) -> tuple[np.ndarray, dict[str, Any]]:
    """Posterior probability of the low-mean component of a two-component 1-D Gaussian mixture fitted by EM to
    ``x`` (started at the lower and upper quartiles) — zero everywhere unless two populations are clearly there:
    two components have the lower BIC *and* Ashman's D = √2·|μ₁ − μ₂|/√(σ₁² + σ₂²) > 2 (the usual criterion for
    a clean separation; a merely skewed single population passes BIC but not D). Also the fit, with the matched
    population's expected false-flag rate (its responsibility-weighted share of flagged pairs)."""
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    mu1, sd1 = float(x.mean()), float(x.std()) or 1e-12
    ll1 = float(np.sum(-0.5 * ((x - mu1) / sd1) ** 2 - np.log(sd1 * math.sqrt(2 * math.pi))))
    bic1 = -2 * ll1 + 2 * math.log(n)
    mu = np.percentile(x, [25, 75]).astype(np.float64)
    sd = np.array([sd1, sd1]) / 2
    w = np.array([0.5, 0.5])
    ll = -np.inf
    for _ in range(iters):
        dens = w / (sd * math.sqrt(2 * math.pi)) * np.exp(-0.5 * ((x[:, None] - mu) / sd) ** 2)
        total = dens.sum(1, keepdims=True) + 1e-300
        resp = dens / total
        new_ll = float(np.log(total).sum())
        nk = resp.sum(0) + 1e-12
        w, mu = nk / n, (resp * x[:, None]).sum(0) / nk
        sd = np.sqrt((resp * (x[:, None] - mu) ** 2).sum(0) / nk) + 1e-6
        if new_ll - ll < 1e-9 * abs(new_ll):
            break
        ll = new_ll
    bic2 = -2 * ll + 5 * math.log(n)
    low = int(np.argmin(mu))
    ashman = float(math.sqrt(2) * abs(mu[1] - mu[0]) / math.sqrt(sd[0] ** 2 + sd[1] ** 2))
    two = bool(bic2 < bic1 and ashman > 2)
    post = resp[:, low] if two else np.zeros(n)
    high = resp[:, 1 - low]
    # the matched population's expected false-flag rate: its responsibility-weighted share of flagged pairs
    false_rate = float(np.sum(high * (post > 0.5)) / max(np.sum(high), 1e-12)) if two else 0.0
    fit = {"weights": w.tolist(), "means": mu.tolist(), "sds": sd.tolist(), "bic_one": bic1, "bic_two": bic2,
           "ashman_d": ashman, "two_populations": two, "false_flag_rate": false_rate}
    return post, fit


def modified_z(x: np.ndarray) -> np.ndarray:
    """Iglewicz–Hoaglin modified z-scores 0.6745 (x − median)/MAD (MAD = 0: mean absolute deviation × 1.2533)."""
    x = np.asarray(x, dtype=np.float64)
    med = float(np.median(x))
    mad = float(np.median(np.abs(x - med)))
    if mad > 0:
        return 0.6745 * (x - med) / mad
    mean_ad = float(np.mean(np.abs(x - med)))
    return (x - med) / (1.2533 * mean_ad) if mean_ad > 0 else np.zeros_like(x)
