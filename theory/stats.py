"""Small statistics shared by every package: the mean with a 95% Student-t interval over seeds, and Spearman's
rank correlation that says why it is undefined."""

from __future__ import annotations

import math
from typing import Iterable

import numpy as np

__all__ = ["ci95", "mean_ci95", "spearman"]


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


def spearman(a: Iterable[float], b: Iterable[float], *, names: tuple[str, str] = ("x", "y"),
             minimum: int = 3) -> tuple[float, int, str]:
    """Spearman's ρ over the pairs where both values are finite, the number of such pairs, and — when ρ is NaN —
    why ("" otherwise): fewer than ``minimum`` pairs, or one side constant (no ranks to correlate)."""
    from scipy import stats

    pairs = [(float(x), float(y)) for x, y in zip(a, b) if math.isfinite(float(x)) and math.isfinite(float(y))]
    if len(pairs) < minimum:
        return float("nan"), len(pairs), (f"only {len(pairs)} run(s) with finite {names[0]} and {names[1]} "
                                           f"({minimum} needed)")
    xs, ys = zip(*pairs)
    if len(set(xs)) < 2 or len(set(ys)) < 2:
        which = names[0] if len(set(xs)) < 2 else names[1]
        return float("nan"), len(pairs), f"{which} is the same in every run: no rank correlation"
    return float(stats.spearmanr(xs, ys).statistic), len(pairs), ""
