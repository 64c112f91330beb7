r"""Does AD carry information about implosion beyond the sheer amount of poison?

Across one sweep AD and the poison volume V = C_P·p/(K·m) rise together, so a correlation of AD with damage says
nothing about AD itself. Here V is held fixed and AD is varied by *how* the poison is made, at the same C_P and p:

- dirty-label with random / nearest / farthest targets, or ``scatter`` (a different random target for every poison
  pair: the same volume, nearly the same AD, but nothing a model can learn);
- feature-shift poisons (images moved a fraction λ toward the target: lower D_fea and D_stru than dirty-label);
- a different template weight (prompts more or less alike: shifts AD's baseline);
- whole-concept consistent relabelling (``replace`` with p = m: every pair of a poisoned concept shows the
  target, no benign pair contradicts it) — a remapping a model can learn exactly; only reachable at V ≤ 1.

For every configuration, volume and seed the sweep engine gives unpoisoned accuracy, the meaningless rate and AD
(D_fea, D_stru). :func:`given_volume` then asks, within each seed, whether AD explains damage once V is held
fixed: every measure is centred within its volume (fixed effects for V), and the statistics are the Pearson and
Spearman correlations of the centred accuracy with the centred AD, D_fea and D_stru, and the slope of the
least-squares fit — one value per seed, reported as mean ± 95% CI over seeds. A correlation near 0 means AD adds
nothing beyond V; a negative one that configurations with higher AD at the same volume damage more. Attack
success (did the model learn the remappings?) is tested the same way, as a rival explanation.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Sequence

import numpy as np

from simulate.concepts import ConceptConfig
from simulate.phase import points_for_volumes
from simulate.poison import PoisonConfig
from simulate.engine import SweepConfig, run_seed
from theory.stats import mean_ci95

__all__ = ["Configuration", "CONFIGURATIONS", "run_configurations", "given_volume", "AD_VOLUME_COLUMNS"]

AD_VOLUME_COLUMNS = ("configuration", "volume", "c_p", "seed", "unpoisoned_acc", "meaningless_rate", "salience",
                     "attack_success", "ad", "d_fea", "d_stru")


@dataclass(frozen=True)
class Configuration:
    """A named way of making the poison; ``max_volume`` is the largest V it can reach."""

    name: str
    config: SweepConfig
    max_volume: float = float("inf")


def _base(k: int, m: int, p: int, dim: int) -> SweepConfig:
    return SweepConfig(concepts=ConceptConfig(n_concepts=k, dim=dim), poison=PoisonConfig(poison_per_concept=p),
                       benign_per_concept=m)


def configurations(k: int = 1000, m: int = 5, p: int = 50, dim: int = 128) -> list[Configuration]:
    """The poison configurations compared at equal volume (see the module docstring)."""
    b = _base(k, m, p, dim)
    poison = b.poison
    return [
        Configuration("dirty, random targets", b),
        Configuration("dirty, nearest targets", replace(b, poison=replace(poison, targets="nearest"))),
        Configuration("dirty, farthest targets", replace(b, poison=replace(poison, targets="farthest"))),
        Configuration("dirty, scatter (unlearnable)", replace(b, poison=replace(poison, targets="scatter"))),
        Configuration("feature-shift 0.5", replace(b, poison=replace(poison, kind="shift", shift=0.5))),
        Configuration("feature-shift 0.8", replace(b, poison=replace(poison, kind="shift", shift=0.8))),
        Configuration("dirty, template weight 0.3",
                      replace(b, concepts=replace(b.concepts, template_weight=0.3))),
        Configuration("dirty, template weight 0.9",
                      replace(b, concepts=replace(b.concepts, template_weight=0.9))),
        Configuration("consistent relabelling (replace, p = m)",
                      replace(b, poison=replace(poison, poison_per_concept=m, placement="replace")), 1.0),
    ]


CONFIGURATIONS = configurations()


def run_configurations(configs: Sequence[Configuration], volumes: Sequence[float], seeds: Sequence[int]
                       ) -> list[dict[str, Any]]:
    """One row per (configuration, reachable volume, seed): C_P = round(V K m / p) < K."""
    rows = []
    for cfg in configs:
        c = cfg.config
        k, m, p = c.concepts.n_concepts, c.benign_per_concept, c.poison.poison_per_concept
        points = points_for_volumes(k, m, p, [v for v in volumes if v <= cfg.max_volume], clean=False)
        for seed in seeds:
            for r in run_seed(c, seed, sorted(points)):
                rows.append({"configuration": cfg.name, "volume": points[r["c_p"]], "c_p": r["c_p"], "seed": seed,
                             **{key: r[key] for key in AD_VOLUME_COLUMNS[4:]}})
    return rows


def _centred(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    out = values.astype(float).copy()
    for g in np.unique(groups):
        out[groups == g] -= out[groups == g].mean()
    return out


def _ranks_within(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Ranks scaled to [0, 1] within each group (average ranks for ties)."""
    from scipy.stats import rankdata

    out = np.zeros(len(values))
    for g in np.unique(groups):
        sel = groups == g
        r = rankdata(values[sel])
        out[sel] = (r - 1) / max(1, sel.sum() - 1)
    return out


def given_volume(rows: list[dict[str, Any]],
                 predictors: Sequence[str] = ("ad", "d_fea", "d_stru", "attack_success"),
                 outcome: str = "unpoisoned_acc", configurations_used: Sequence[str] | None = None
                 ) -> list[dict[str, Any]]:
    """Per predictor: within-volume Pearson r, Spearman ρ and slope of ``outcome`` on it, per seed, as mean ± 95%
    CI over seeds (see the module docstring). Only volumes with at least 3 configurations count."""
    sel = [r for r in rows if configurations_used is None or r["configuration"] in configurations_used]
    out = []
    for name in predictors:
        per_seed: dict[str, list[float]] = {"pearson": [], "spearman": [], "slope": []}
        for seed in sorted({r["seed"] for r in sel}):
            rs = [r for r in sel if r["seed"] == seed]
            counts = {v: sum(1 for r in rs if r["volume"] == v) for v in {r["volume"] for r in rs}}
            rs = [r for r in rs if counts[r["volume"]] >= 3]
            if len(rs) < 4:
                continue
            vol = np.array([r["volume"] for r in rs])
            y = np.array([float(r[outcome]) for r in rs])
            x = np.array([float(r[name]) for r in rs])
            yc, xc = _centred(y, vol), _centred(x, vol)
            if np.ptp(xc) == 0 or np.ptp(yc) == 0:
                continue
            per_seed["pearson"].append(float(np.corrcoef(xc, yc)[0, 1]))
            yr, xr = _centred(_ranks_within(y, vol), vol), _centred(_ranks_within(x, vol), vol)
            per_seed["spearman"].append(float(np.corrcoef(xr, yr)[0, 1]))
            per_seed["slope"].append(float(np.dot(xc, yc) / np.dot(xc, xc)))
        row: dict[str, Any] = {"predictor": name, "outcome": outcome, "seeds": len(per_seed["pearson"])}
        for stat, values in per_seed.items():
            row[stat], row[stat + "_ci95"] = mean_ci95(values)
        out.append(row)
    return out
