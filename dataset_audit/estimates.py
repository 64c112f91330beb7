"""From flagged pairs to poisoned concepts: a concept counts as poisoned when its flag count is improbably high for
the background flag rate (one-sided binomial, Bonferroni over K), hence the estimates Ĉ_P, p̂ and m̂."""

from __future__ import annotations

from typing import Any

import numpy as np


def poisoned_concepts(labels: np.ndarray, flagged: np.ndarray, k: int, false_rate: float
                      ) -> tuple[list[dict[str, Any]], float]:
    """Per concept: pairs, flagged pairs, flagged fraction, the binomial p-value of its flag count against the
    background rate q — the matched population's false-flag rate from the mixture (floored at 1/n), which does not
    depend on how many concepts are poisoned — and whether it counts as poisoned (p < 0.01/K); and q."""
    from scipy import stats

    rows = []
    counts = np.bincount(labels[labels >= 0], minlength=k)
    hits = np.bincount(labels[(labels >= 0) & flagged], minlength=k)
    frac = np.divide(hits, counts, out=np.zeros(k), where=counts > 0)
    q = float(max(false_rate, 1.0 / max(1, len(labels))))
    for c in range(k):
        p = float(stats.binom.sf(hits[c] - 1, counts[c], q)) if counts[c] else 1.0
        rows.append({"concept": c, "pairs": int(counts[c]), "flagged": int(hits[c]), "flagged_fraction": float(frac[c]),
                     "p_value": p, "poisoned": bool(counts[c] and p < 0.01 / k)})
    return rows, q
