r"""The phase diagram of implosion: where unpoisoned concepts break, as a function of the poison's volume and
dominance, the map's capacity and the number of concepts.

Coordinates (K concepts, m benign pairs each, C_P poisoned concepts with p poison pairs each):

- **poison volume ratio** :math:`V = C_P\,p / (K\,m)` — poison pairs per benign pair in the whole set;
- **per-concept dominance** :math:`p/m` — how many times a poisoned concept's own benign data its poison
  outweighs; since :math:`C_P \le K`, only :math:`V \le p/m` is reachable (other cells are empty, not zero);
- **capacity** — the map's dimension d for ``ridge`` (a linear map in d dimensions), the nuclear-norm budget
  (a fraction of the clean solution's) for ``capacity``;
- **K** — the number of concepts the map must keep apart.

For every cell and seed the simulator runs the sweep's own engine (:func:`simulate.engine.run_seed`, AD not
tracked: this experiment measures the model) at the C_P nearest each requested V, and records the measures of
:mod:`theory.implosion` over the never-poisoned concepts. :func:`thresholds` then reads, per curve (K, capacity,
p/m), the first V at which the mean unpoisoned accuracy falls below 0.5 and the first at which the meaningless
rate passes 0.5 (linear interpolation between measured V; ``inf`` = not reached within the reachable V).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np

from simulate.align import CapacitySolver, RidgeSolver
from simulate.concepts import ConceptConfig
from simulate.poison import PoisonConfig
from simulate.engine import SweepConfig, run_seed
from implosion_base.tasks import process_pool
from implosion_base.validate import check_scalar
from implosion_base.errors import InputError

__all__ = ["PhaseGrid", "Cell", "cells", "run_cell", "run_grid", "thresholds", "crossing", "threshold_law",
           "poison_volume", "points_for_volumes", "PHASE_COLUMNS"]

PHASE_COLUMNS = ("solver", "n_concepts", "dim", "capacity", "dominance", "benign_per_concept", "poison_per_concept",
                 "c_p", "target_volume", "volume", "seed", "unpoisoned_acc", "meaningless_rate", "own_sim", "margin", "salience",
                 "attack_success")


@dataclass(frozen=True)
class PhaseGrid:
    """The grid: ridge over ``dims`` × ``dominance`` × ``volumes`` × ``n_concepts``, plus the capacity solver
    over ``budgets`` at (``budget_concepts``, ``budget_dim``); ``seeds`` the seeds of every cell."""

    n_concepts: tuple[int, ...] = (250, 500, 1000)
    dims: tuple[int, ...] = (32, 64, 128, 256, 512)
    dominance: tuple[float, ...] = (1.0, 2.0, 5.0, 10.0, 20.0)
    volumes: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 12.0)
    benign_per_concept: int = 5
    budgets: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0)
    budget_concepts: int = 250
    budget_dim: int = 64
    seeds: tuple[int, ...] = (0, 1, 2)

    def __post_init__(self) -> None:
        for name in ("n_concepts", "dims", "dominance", "volumes"):
            values = getattr(self, name)
            if not values:
                raise InputError(f"phase grid {name} is empty")
            for v in values:
                check_scalar(v, f"phase grid {name}", low=0.0, low_open=True)
        check_scalar(self.benign_per_concept, "phase grid benign_per_concept", low=1, integer=True)
        if not self.seeds:
            raise InputError("phase grid seeds are empty")
        for s in self.seeds:
            check_scalar(s, "phase grid seed", low=0, integer=True)


@dataclass(frozen=True)
class Cell:
    """One curve of the diagram for one seed: a configuration and the C_P of each requested volume."""

    solver: str
    config: SweepConfig
    capacity: float
    dominance: float
    seed: int
    targets: dict[int, float]  # C_P -> the volume V it was chosen for

    @property
    def points(self) -> tuple[int, ...]:
        return tuple(self.targets)


def poison_volume(c_p: float, p: int, k: int, m: int) -> float:
    r"""The poison volume ratio :math:`V = C_P\,p / (K\,m)`: poison pairs per benign pair in the training set."""
    return c_p * p / (k * m)


def points_for_volumes(k: int, m: int, p: int, volumes: Iterable[float], *, clean: bool = True
                       ) -> dict[int, float]:
    """C_P = round(V K m / p) → requested V (the first V asked when two round alike), kept when 1 ≤ C_P < K (at
    C_P = K no concept is left unpoisoned); with ``clean`` also 0 → 0.0, the clean model."""
    pts = {0: 0.0} if clean else {}
    for v in volumes:
        c = int(round(v * k * m / p))
        if 1 <= c < k:
            pts.setdefault(c, float(v))
    return dict(sorted(pts.items()))


def cells(grid: PhaseGrid) -> list[Cell]:
    """Every (solver, K, capacity, p/m, seed) curve of ``grid``."""
    out = []
    m = grid.benign_per_concept
    specs: list[tuple[str, int, float, Any]] = [("ridge", k, float(d), RidgeSolver()) for k in grid.n_concepts
                                                for d in grid.dims]
    specs += [("capacity", grid.budget_concepts, b, CapacitySolver(budget=b, method="fista", tol=1e-5,
                                                                    max_iter=3000)) for b in grid.budgets]
    for solver, k, capacity, model in specs:
        dim = int(capacity) if solver == "ridge" else grid.budget_dim
        for dom in grid.dominance:
            p = max(1, int(round(dom * m)))
            config = SweepConfig(concepts=ConceptConfig(n_concepts=k, dim=dim),
                                 poison=PoisonConfig(poison_per_concept=p), solver=model, benign_per_concept=m)
            for seed in grid.seeds:
                out.append(Cell(solver, config, capacity, dom, seed, points_for_volumes(k, m, p, grid.volumes)))
    return out


def run_cell(cell: Cell) -> list[dict[str, Any]]:
    """The phase rows of one cell (one sweep of its seed through its C_P points)."""
    cfg = cell.config
    k, m, p = cfg.concepts.n_concepts, cfg.benign_per_concept, cfg.poison.poison_per_concept
    rows = []
    for r in run_seed(cfg, cell.seed, list(cell.points), track_ad=False):
        rows.append({"solver": cell.solver, "n_concepts": k, "dim": cfg.concepts.dim, "capacity": cell.capacity, "dominance": cell.dominance,
                     "benign_per_concept": m, "poison_per_concept": p, "c_p": r["c_p"],
                     "target_volume": cell.targets.get(r["c_p"], 0.0), "volume": poison_volume(r["c_p"], p, k, m),
                     "seed": cell.seed,
                     **{key: r[key] for key in PHASE_COLUMNS[11:]}})
    return rows


def run_grid(grid: PhaseGrid, workers: int = 1) -> list[dict[str, Any]]:
    """All rows of ``grid`` (cells on ``workers`` local processes; the numbers do not depend on it)."""
    todo = cells(grid)
    if workers <= 1:
        return [r for c in todo for r in run_cell(c)]
    with process_pool(workers) as pool:
        return [r for rows in pool.map(run_cell, todo, chunksize=1) for r in rows]


def crossing(x: Sequence[float], y: Sequence[float], level: float, below: bool) -> float:
    """First x at which y crosses ``level`` (downward if ``below``, else upward), linearly interpolated between
    neighbouring points; ``inf`` when it never does, the first x when it already has."""
    xs, ys = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    hit = ys < level if below else ys > level
    if not hit.any():
        return math.inf
    i = int(np.argmax(hit))
    if i == 0:
        return float(xs[0])
    x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
    return float(x0 + (level - y0) * (x1 - x0) / (y1 - y0))


def thresholds(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per curve (solver, K, capacity, p/m): the V at which mean unpoisoned accuracy falls below 0.5 and the V at
    which the mean meaningless rate passes 0.5 (over seeds), the largest V measured, and the accuracy there."""
    keys = sorted({(r["solver"], r["n_concepts"], r["capacity"], r["dominance"]) for r in rows})
    out = []
    for key in keys:
        sel = [r for r in rows if (r["solver"], r["n_concepts"], r["capacity"], r["dominance"]) == key]
        vols = sorted({round(float(r["volume"]), 9) for r in sel})
        acc = [np.mean([float(r["unpoisoned_acc"]) for r in sel if round(float(r["volume"]), 9) == v]) for v in vols]
        mless = [np.mean([float(r["meaningless_rate"]) for r in sel if round(float(r["volume"]), 9) == v])
                 for v in vols]
        out.append({"solver": key[0], "n_concepts": key[1], "dim": sel[0]["dim"], "capacity": key[2],
                    "dominance": key[3],
                    "v_acc_below_half": crossing(vols, acc, 0.5, True),
                    "v_meaningless_above_half": crossing(vols, mless, 0.5, False),
                    "v_max": vols[-1], "acc_at_v_max": float(acc[-1]), "clean_acc": float(acc[0]),
                    "seeds": len({r["seed"] for r in sel})})
    return out



def threshold_law(marks: list[dict[str, Any]], solver: str = "ridge", min_dominance: float = 10.0
                  ) -> dict[str, float]:
    r"""Least-squares fit of :math:`\log V^* = a + b\log d + c\log K + e\log(p/m)` over the curves of ``solver``
    with p/m ≥ ``min_dominance`` whose threshold was reached (and whose clean model reads ≥ 0.5): the
    coefficients, R², the number of curves and the largest factor by which the fit misses a measured V*."""
    sel = [m for m in marks if m["solver"] == solver and float(m["dominance"]) >= min_dominance
           and math.isfinite(float(m["v_acc_below_half"])) and float(m["clean_acc"]) >= 0.5]
    if len(sel) < 5:
        return {"n": len(sel)}
    x = np.array([[1.0, math.log(float(m["capacity"])), math.log(float(m["n_concepts"])),
                   math.log(float(m["dominance"]))] for m in sel])
    y = np.log([float(m["v_acc_below_half"]) for m in sel])
    coef = np.linalg.lstsq(x, y, rcond=None)[0]
    fit = x @ coef
    return {"n": len(sel), "scale": float(math.exp(coef[0])), "exp_capacity": float(coef[1]),
            "exp_concepts": float(coef[2]), "exp_dominance": float(coef[3]),
            "r2": float(1 - np.sum((y - fit) ** 2) / np.sum((y - y.mean()) ** 2)),
            "max_miss_factor": float(math.exp(np.max(np.abs(y - fit))))}
