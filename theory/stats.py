"""Small statistics shared by every package: the mean with a 95% Student-t interval over seeds."""

from __future__ import annotations

import math
from typing import Iterable

import numpy as np

__all__ = ["ci95", "mean_ci95"]


def mean_ci95(values: Iterable[float]) -> tuple[float, float]:
    r"""Mean of the finite values and the half-width :math:`t_{0.975,n-1}\,s/\sqrt n` of its 95% interval
    (``(nan, nan)`` when none is finite, half-width 0 for a single value)."""
    from scipy import stats

    x = np.asarray([v for v in np.asarray(values, dtype=float).ravel() if math.isfinite(v)], dtype=float)
    if len(x) == 0:
        return float("nan"), float("nan")
    if len(x) == 1:
        return float(x[0]), 0.0
    return float(x.mean()), float(stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))


def ci95(values: Iterable[float]) -> float:
    """Half-width of the 95% t-interval of the mean of the finite values (0 for fewer than two)."""
    half = mean_ci95(values)[1]
    return 0.0 if math.isnan(half) else half
