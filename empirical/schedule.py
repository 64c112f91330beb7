"""Learning-rate schedule shared by the VAE and judge training loops."""

from __future__ import annotations

import math


def warmup_cosine(step: int, total: int, warmup_fraction: float = 0.1) -> float:
    """LR factor at ``step`` of ``total``: linear warm-up over w = max(1, ⌊warmup_fraction·total⌋) steps,
    then cosine decay, f(s) = min(1, (s+1)/w) · ½(1 + cos(π·s/total))."""
    w = max(1, int(warmup_fraction * total))
    return min(1.0, (step + 1) / w) * 0.5 * (1.0 + math.cos(math.pi * step / max(1, total)))
