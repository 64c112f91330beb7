r"""Which pairs look poisoned: the flag rule on the pair cosines — never silently blind.

A dirty-label pair's caption and image show different concepts, so its text–image cosine comes from another
population than the matched pairs'. :func:`flag_pairs` applies two rules in turn and says which one flagged, and why:

1. **the mixture** (:func:`mixture_flags`): a two-component Gaussian mixture (EM) fitted to the pair cosines and compared with one Gaussian by BIC; when two components win and Ashman's D > 2, a pair is flagged
   when its posterior probability of the low-cosine component exceeds 0.5;
2. **the robust outlier rule** (:func:`outlier_flags`), when the mixture finds no clean second population (a few
   poisons, poisons spread over many targets, matched pairs whose cosines differ by concept): a pair is flagged when
   the Iglewicz–Hoaglin modified z-score of its cosine, 0.6745 (cos − median)/MAD, is below −``flag_z`` (3.5 by
   default, their recommendation) — what lies plainly below the matched pairs.

:func:`modified_z` is also reported for each pair's score (its share of AD).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def _em(x: np.ndarray, sd0: float, iters: int) -> tuple[float, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """EM for a two-component 1-D Gaussian mixture, the means started at the lower and upper quartiles:
    (log-likelihood, weights, means, sds, the last E-step's responsibilities)."""
    n = len(x)
    mu = np.percentile(x, [25, 75]).astype(np.float64)
    sd = np.array([sd0, sd0]) / 2
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
    return ll, w, mu, sd, resp


#: Cosines the mixture is fitted on at most: beyond, a seeded sample (fit and BIC on it), every cosine then scored
#: in one pass with the fitted components.
MIXTURE_SAMPLE = 200_000


def mixture_flags(x: np.ndarray, *, iters: int = 200, seed: int = 0) -> tuple[np.ndarray, dict[str, Any]]:
    """Posterior probability of the low-mean component of a two-component 1-D Gaussian mixture fitted by EM to
    ``x`` (started at the lower and upper quartiles; on a seeded sample of :data:`MIXTURE_SAMPLE` when ``x`` is
    longer) — zero everywhere unless two populations are clearly there: two components have the lower BIC *and*
    Ashman's D = √2·|μ₁ − μ₂|/√(σ₁² + σ₂²) > 2 (the usual criterion for a clean separation; a merely skewed single
    population passes BIC but not D). Also the fit, with the matched population's expected false-flag rate (its
    responsibility-weighted share of flagged pairs)."""
    x = np.asarray(x, dtype=np.float64)
    fit_on = x if len(x) <= MIXTURE_SAMPLE else \
        x[np.sort(np.random.default_rng([seed, 5]).choice(len(x), MIXTURE_SAMPLE, replace=False))]
    n = len(fit_on)
    mu1, sd1 = float(fit_on.mean()), float(fit_on.std()) or 1e-12
    ll1 = float(np.sum(-0.5 * ((fit_on - mu1) / sd1) ** 2 - np.log(sd1 * math.sqrt(2 * math.pi))))
    bic1 = -2 * ll1 + 2 * math.log(n)
    ll, w, mu, sd, resp = _em(fit_on, sd1, iters)
    if fit_on is not x:  # every value scored with the fitted components
        dens = w / (sd * math.sqrt(2 * math.pi)) * np.exp(-0.5 * ((x[:, None] - mu) / sd) ** 2)
        resp = dens / (dens.sum(1, keepdims=True) + 1e-300)
    bic2 = -2 * ll + 5 * math.log(n)
    low = int(np.argmin(mu))
    ashman = float(math.sqrt(2) * abs(mu[1] - mu[0]) / math.sqrt(sd[0] ** 2 + sd[1] ** 2))
    two = bool(bic2 < bic1 and ashman > 2)
    post = resp[:, low] if two else np.zeros(len(x))
    high = resp[:, 1 - low]
    # the matched population's expected false-flag rate: its responsibility-weighted share of flagged pairs
    false_rate = float(np.sum(high * (post > 0.5)) / max(np.sum(high), 1e-12)) if two else 0.0
    fit = {"weights": w.tolist(), "means": mu.tolist(), "sds": sd.tolist(), "bic_one": bic1, "bic_two": bic2,
           "ashman_d": ashman, "two_populations": two, "false_flag_rate": false_rate, "fitted_on": n}
    return post, fit


def outlier_flags(x: np.ndarray, flag_z: float) -> tuple[np.ndarray, float]:
    """The robust outlier rule: ``x`` values whose modified z-score is below −``flag_z`` (low side only: a poison
    lowers a pair's cosine); and the cut on ``x`` it amounts to."""
    z = modified_z(x)
    flagged = z < -flag_z
    med = float(np.median(x))
    scale = _mad_scale(np.asarray(x, dtype=np.float64), med)
    return flagged, (med - flag_z * scale if scale > 0 else med)


def flag_pairs(cos: np.ndarray, flag_z: float, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """(flagged, posterior of the low-cosine component, the rule): the mixture when it finds two populations,
    else the robust outlier rule (module docstring). The rule's record says which rule flagged and why, the cosine
    cut it amounts to, the mixture's fit, and the expected false-flag rate among matched pairs (the mixture's
    estimate; for the outlier rule its nominal rate Φ(−flag_z) under a normal matched population)."""
    from scipy import stats

    posterior, fit = mixture_flags(cos, seed=seed)
    if fit["two_populations"]:
        flagged = posterior > 0.5
        cut = float(np.max(cos[flagged])) if flagged.any() else float("nan")
        rule = {"rule": "mixture", "why": f"two populations: BIC prefers two components to one (by "
                f"{fit['bic_one'] - fit['bic_two']:.1f}) and Ashman's D = {fit['ashman_d']:.2f} > 2; a pair is flagged "
                "when its posterior probability of the low-cosine component exceeds 0.5",
                "false_flag_rate": fit["false_flag_rate"]}
    else:
        flagged, cut = outlier_flags(cos, flag_z)
        no = (f"BIC prefers one component (by {fit['bic_two'] - fit['bic_one']:.1f})" if fit["bic_two"] >= fit["bic_one"]
              else f"Ashman's D = {fit['ashman_d']:.2f} <= 2")
        rule = {"rule": "robust outlier", "why": f"the mixture found no clean second population ({no}); fallback: a "
                f"pair is flagged when the modified z-score of its cosine is below -{flag_z:g}, i.e. cosine < "
                f"{cut:.4f}", "false_flag_rate": float(stats.norm.sf(flag_z))}
    return flagged, posterior, {**rule, "cosine_cut": cut, "mixture": fit}


def _mad_scale(x: np.ndarray, med: float) -> float:
    """The scale modified z divides by: MAD/0.6745, or (MAD = 0) the mean absolute deviation × 1.2533."""
    mad = float(np.median(np.abs(x - med)))
    if mad > 0:
        return mad / 0.6745
    return 1.2533 * float(np.mean(np.abs(x - med)))


def modified_z(x: np.ndarray) -> np.ndarray:
    """Iglewicz–Hoaglin modified z-scores 0.6745 (x − median)/MAD (MAD = 0: mean absolute deviation × 1.2533)."""
    x = np.asarray(x, dtype=np.float64)
    med = float(np.median(x))
    scale = _mad_scale(x, med)
    return (x - med) / scale if scale > 0 else np.zeros_like(x)
