"""simulate.ad_volume: equal volumes across configurations, the within-volume statistics against an independent
least-squares fit with volume dummies, and the cases where AD must / must not explain the damage."""

from __future__ import annotations

import numpy as np
import pytest

from simulate.ad_volume import configurations, given_volume, run_configurations


def _rows(beta: float, seed_count: int = 3, noise: float = 0.0) -> list[dict]:
    rng = np.random.default_rng(0)
    rows = []
    for seed in range(seed_count):
        for v in (1.0, 2.0, 4.0):
            for c in range(6):
                ad = 0.5 + 0.05 * v + rng.uniform(-0.05, 0.05)
                acc = 1.0 - 0.1 * v + beta * (ad - 0.5 - 0.05 * v) + noise * rng.normal()
                rows.append({"configuration": f"c{c}", "volume": v, "seed": seed, "unpoisoned_acc": acc, "ad": ad,
                             "d_fea": ad, "d_stru": rng.uniform(), "attack_success": rng.uniform()})
    return rows


def test_slope_equals_a_least_squares_fit_with_volume_dummies():
    rows = _rows(beta=-2.0, noise=0.01)
    st = {s["predictor"]: s for s in given_volume(rows)}
    slopes = []
    for seed in range(3):
        rs = [r for r in rows if r["seed"] == seed]
        vols = sorted({r["volume"] for r in rs})
        x = np.array([[r["ad"]] + [float(r["volume"] == v) for v in vols] for r in rs])
        y = np.array([r["unpoisoned_acc"] for r in rs])
        slopes.append(np.linalg.lstsq(x, y, rcond=None)[0][0])
    assert st["ad"]["slope"] == pytest.approx(np.mean(slopes), abs=1e-9)
    assert st["ad"]["pearson"] < -0.9 and st["ad"]["spearman"] < -0.8


def test_ad_explains_nothing_when_damage_depends_on_volume_alone():
    rows = _rows(beta=0.0, noise=0.02)
    st = {s["predictor"]: s for s in given_volume(rows)}
    lo, hi = st["ad"]["pearson"] - st["ad"]["pearson_ci95"], st["ad"]["pearson"] + st["ad"]["pearson_ci95"]
    assert lo < 0 < hi  # the CI covers zero
    # while a raw correlation across volumes would be strong: AD and damage both rise with V
    ad = np.array([r["ad"] for r in rows])
    acc = np.array([r["unpoisoned_acc"] for r in rows])
    assert np.corrcoef(ad, acc)[0, 1] < -0.5


def test_configurations_share_volumes_and_scatter_cannot_be_learned():
    configs = [c for c in configurations(k=120, m=4, p=20, dim=24)
               if c.name.startswith(("dirty, random", "dirty, scatter", "consistent"))]
    rows = run_configurations(configs, (0.5, 1.0, 3.0), seeds=(0,))
    by = {(r["configuration"], r["volume"]): r for r in rows}
    assert by[("dirty, random targets", 3.0)]["c_p"] == by[("dirty, scatter (unlearnable)", 3.0)]["c_p"] == 72
    assert not any(r["volume"] > 1 for r in rows if r["configuration"].startswith("consistent"))
    # same volume, same kind of pairs: random targets are learned, a new target per pair is not
    assert by[("dirty, random targets", 1.0)]["attack_success"] > 0.5
    assert by[("dirty, scatter (unlearnable)", 1.0)]["attack_success"] < 0.2
    for r in rows:
        assert r["volume"] == pytest.approx(r["c_p"] * (4 if "consistent" in r["configuration"] else 20) / (120 * 4),
                                            rel=0.05)
