"""The audit's flag rule on small synthetic folders (docs/audit.md, "The rules, stated"): how many clean folders get
a flag, and how many dirty-label pairs are missed, when matched pairs' cosines are one population and when they
differ by concept. ``python bench/audit_flag_rule.py [--folders 300]``; seconds on one core.

Each folder: 60 matched pairs (12 each of 5 concepts) and 1-8 dirty-label pairs with cosines spread over
[-0.4, 0.2]; its clean version leaves the dirty-label pairs out. Concepts' matched cosines are N(0.8, 0.04)
("one population"), or N(mu_c, sd_c) with mu_c ~ U(0.72, 0.88), sd_c ~ U(0.03, 0.06) ("by concept"), or
mu_c ~ U(0.3, 0.9), sd_c ~ U(0.02, 0.15) ("by concept, harsh"). The rule is read on the cosines as they are
("pooled") and relative to each concept's median ("relative", a candidate).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from dataset_audit.flags import flag_pairs  # noqa: E402

SETTINGS = {"one population": ((0.8, 0.8), (0.04, 0.04)), "by concept": ((0.72, 0.88), (0.03, 0.06)),
            "by concept, harsh": ((0.3, 0.9), (0.02, 0.15))}


def folder(seed: int, means: tuple[float, float], sds: tuple[float, float]) -> tuple[np.ndarray, np.ndarray,
                                                                                     np.ndarray]:
    """(clean cosines, poison cosines, concept of every pair)."""
    rng = np.random.default_rng(seed)
    n_poison = int(rng.integers(1, 9))
    clean = np.concatenate([rng.normal(mu, sd, 12) for mu, sd in zip(rng.uniform(*means, 5), rng.uniform(*sds, 5))])
    poison = rng.uniform(-0.4, 0.2, n_poison)
    return np.clip(clean, -0.99, 0.99), poison, np.r_[np.repeat(np.arange(5), 12), np.arange(n_poison) % 5]


def relative(cos: np.ndarray, concept: np.ndarray) -> np.ndarray:
    """Each cosine minus its concept's median."""
    out = cos.astype(np.float64).copy()
    for c in np.unique(concept):
        out[concept == c] -= np.median(cos[concept == c])
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--folders", type=int, default=300)
    args = ap.parse_args()
    print("| matched cosines | read | clean folders with a flag | clean pairs flagged | poisons missed |")
    print("|---|---|---|---|---|")
    for name, (means, sds) in SETTINGS.items():
        for read in ("pooled", "relative"):
            folders = pairs = missed = total = 0
            for seed in range(args.folders):
                clean, poison, concept = folder(seed, means, sds)
                view = (lambda c, k: c) if read == "pooled" else relative
                flagged = flag_pairs(view(clean, concept[:60]), 3.5)[0]
                folders += bool(flagged.any())
                pairs += int(flagged.sum())
                mixed = flag_pairs(view(np.r_[clean, poison], concept), 3.5)[0]
                missed += int((~mixed[60:]).sum())
                total += len(poison)
            print(f"| {name} | {read} | {folders} of {args.folders} | {pairs} of {60 * args.folders} | "
                  f"{missed} of {total} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
