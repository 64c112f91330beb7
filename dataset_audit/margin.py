"""How close to implosion: the simulator's prediction at the estimated K, m̂, p̂, Ĉ_P with the geometry measured on
the unflagged pairs (:mod:`simulate.predict`, :mod:`simulate.calibrate`) — a model's prediction, never a
measurement, and the report says so (:data:`WARNING`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from dataset_audit.concept_view import unit64
from dataset_audit.config import AuditConfig
from implosion_base.shards import PairShards

WARNING = ("The margin is the simulator's prediction for a model of the stated capacity trained on data of this "
           "geometry — a model, not a measurement of any real model trained on this data.")


def margin(src: PairShards, labels: np.ndarray, flagged: np.ndarray, k: int, m: int, p: int, c_p: int,
           cfg: AuditConfig) -> dict[str, Any]:
    """The simulator's prediction at the estimated K, m, p, C_P with this data's measured geometry — measured on
    the unflagged pairs, the clean geometry the simulator adds its poisons to (see the module docstring) — or why
    there is none."""
    from dataclasses import replace

    from simulate.calibrate import capacity_for_accuracy, fit_geometry, measure_geometry
    from simulate.concepts import ConceptConfig
    from simulate.engine import SweepConfig
    from simulate.predict import Setting, predict, summarise

    if m < 1:
        return {"prediction": None, "why": "no concept has unflagged pairs"}
    rate = p if c_p else max(1, m)
    rng = np.random.default_rng([cfg.seed, 2])
    usable = np.flatnonzero((labels >= 0) & ~flagged)
    idx = np.sort(rng.choice(usable, size=min(len(usable), 20_000), replace=False))
    t, v = src.take(idx)
    geometry = measure_geometry(unit64(t), unit64(v), labels[idx], seed=cfg.seed)
    base = fit_geometry(geometry, k, ConceptConfig(n_concepts=k).dim)
    if cfg.clean_acc is not None:
        dim, _ = capacity_for_accuracy(SweepConfig(concepts=base, benign_per_concept=m), cfg.clean_acc)
        capacity = f"d = {dim}, calibrated to clean accuracy {cfg.clean_acc}"
    else:
        dim = cfg.dim
        capacity = f"d = {dim} (given; the real model's capacity is not known to the audit)"
    concepts = replace(base, dim=dim)
    asked = tuple(sorted({0, min(c_p, k - 1)}))
    setting = Setting(k, m, (rate,), asked, seeds=(0, 1, 2), ad_samples=20_000)
    rows, marks = predict(setting, concepts)
    summary = {r["c_p"]: r for r in summarise(rows)}
    now = summary[asked[-1]]
    threshold = marks[0]["threshold_c_p"]
    more = None if threshold == "none" else max(0.0, float(threshold) - c_p)
    return {"geometry": geometry.as_dict(), "capacity": capacity, "p_used": rate,
            "p_source": "estimated p" if c_p else "no poisoned concept found: the rate of a concept's own data (p = m)",
            "predicted_unpoisoned_acc_now": now["unpoisoned_acc"], "predicted_unpoisoned_acc_now_ci95":
            now["unpoisoned_acc_ci95"], "predicted_clean_acc": summary[0]["unpoisoned_acc"],
            "threshold_c_p": threshold, "more_concepts_before_threshold": more, "warning": WARNING}
