"""Brute-force Alignment Difficulty, written straight from the definition (docs/design.md §3), for the tests only.

Deliberately naive and independent of theory.ad: Python loops over pairs i<j, float64, no blocking, no tricks.
"""

from __future__ import annotations

import numpy as np


def brute_force_ad(text, image, alpha: float = 0.8, laion_scale: bool = True) -> tuple[float, float, float]:
    """Return (AD, D_fea, D_stru)."""
    t = np.asarray(text, dtype=np.float64)
    v = np.asarray(image, dtype=np.float64)
    t = t / np.linalg.norm(t, axis=1, keepdims=True)
    v = v / np.linalg.norm(v, axis=1, keepdims=True)
    n = t.shape[0]
    total_fea = 0.0
    for i in range(n):
        s = float(np.dot(t[i], v[i]))
        if laion_scale:
            s = min(1.0, max(0.0, 4.0 * (s - 0.2)))
        total_fea += 1.0 - s
    total_stru = 0.0
    for i in range(n):
        for j in range(i + 1, n):
            total_stru += abs(float(np.dot(v[i], v[j])) - float(np.dot(t[i], t[j])))
    d_fea = total_fea / n
    d_stru = 2.0 * total_stru / n**2
    return alpha * d_fea + (1 - alpha) * d_stru, d_fea, d_stru
