"""simulate.calibrate and simulate.predict: geometry recovered from samples, capacity from clean accuracy, the
prediction equal to a direct sweep, thresholds ordered by poison, and bad input refused in one line."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from simulate.calibrate import capacity_for_accuracy, clean_accuracy, fit_geometry, geometry_of_space
from simulate.concepts import ConceptConfig
from simulate.phase import crossing
from simulate.poison import PoisonConfig
from simulate.predict import Setting, predict
from simulate.engine import SweepConfig, run_seed
from implosion_base.errors import InputError

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("truth", [
    ConceptConfig(n_concepts=200, dim=256),
    ConceptConfig(n_concepts=200, dim=256, template_weight=0.4, separation=0.5, alignment=0.9, modality_gap=0.6,
                  text_spread=0.5, image_spread=0.3),
])
def test_fit_geometry_recovers_the_parameters_of_a_simulated_space(truth):
    g = geometry_of_space(truth, per_concept=10)
    fit = fit_geometry(g, truth.n_concepts, truth.dim)
    for name, tol in (("template_weight", 0.03), ("separation", 0.05), ("alignment", 0.08),
                      ("modality_gap", 0.05), ("text_spread", 0.03), ("image_spread", 0.03)):
        assert getattr(fit, name) == pytest.approx(getattr(truth, name), abs=tol), name
    # and the fitted space shows the measured statistics again
    again = geometry_of_space(fit, per_concept=10, seed=1)
    for key, value in g.as_dict().items():
        assert again.as_dict()[key] == pytest.approx(value, abs=0.02), key


def test_capacity_for_accuracy_brackets_the_target():
    cfg = SweepConfig(concepts=ConceptConfig(n_concepts=120), benign_per_concept=5)
    d, curve = capacity_for_accuracy(cfg, 0.9, seeds=(0,))
    accs = [a for _, a in curve]
    assert accs[-1] >= 0.9 and all(a < 0.9 for a in accs[:-1])  # stopped at the first d reaching it
    assert curve[-2][0] <= d <= curve[-1][0]
    assert clean_accuracy(replace(cfg, concepts=replace(cfg.concepts, dim=curve[-1][0])), (0,)) == accs[-1]
    with pytest.raises(InputError, match="clean-acc"):
        capacity_for_accuracy(cfg, 1.5)


def test_prediction_equals_a_direct_sweep_and_orders_thresholds():
    concepts = ConceptConfig(n_concepts=60, dim=16)
    setting = Setting(60, 5, (10, 40), (10, 30), seeds=(0, 1), ad_samples=20_000)
    rows, marks = predict(setting, concepts)
    for p in (10, 40):
        cfg = SweepConfig(concepts=concepts, poison=PoisonConfig(poison_per_concept=p), benign_per_concept=5)
        for seed in (0, 1):
            direct = {r["c_p"]: r for r in run_seed(cfg, seed, [10, 30])}
            for r in (r for r in rows if r["p"] == p and r["seed"] == seed):
                assert r["unpoisoned_acc"] == direct[r["c_p"]]["unpoisoned_acc"]
                assert r["meaningless_rate"] == direct[r["c_p"]]["meaningless_rate"]
                assert r["ad"] == pytest.approx(direct[r["c_p"]]["ad"], abs=0.01)  # sampled D_stru vs exact
                assert r["volume"] == pytest.approx(r["c_p"] * p / (60 * 5))
    by_p = {m["p"]: m["threshold_c_p"] for m in marks}
    as_num = {p: (np.inf if t == "none" else t) for p, t in by_p.items()}
    assert as_num[40] <= as_num[10]  # more poison per concept breaks the model no later


def test_target_rule_reaches_the_sweep_and_scatter_is_not_learned():
    """--targets: the prediction uses the named rule (equal to a direct sweep with it); scatter's remappings are
    not learned (attack success near chance) while random targets at the same volume are."""
    concepts = ConceptConfig(n_concepts=40, dim=32)
    got = {}
    for rule in ("random", "scatter"):
        setting = Setting(40, 5, (25,), (20,), seeds=(0,), ad_samples=5_000, targets=rule)
        rows, _ = predict(setting, concepts)
        cfg = SweepConfig(concepts=concepts, poison=PoisonConfig(poison_per_concept=25, targets=rule),
                          benign_per_concept=5)
        (direct,) = run_seed(cfg, 0, [20])
        assert rows[0]["unpoisoned_acc"] == direct["unpoisoned_acc"]
        got[rule] = rows[0]["attack_success"]
    assert got["random"] > 0.5 > 0.2 > got["scatter"]
    with pytest.raises(InputError, match="--targets"):
        Setting(40, 5, (25,), (20,), targets="closest")


def test_feature_shift_poisons_reach_the_sweep_and_damage_less_than_dirty_label():
    """--poison-kind shift --shift λ: the prediction equals a direct sweep with those poisons; λ = 0 poisons show
    their own concept (clean extra pairs), λ = 0.5 lies between them, and at equal volume λ = 0.5 damages the
    unpoisoned concepts no more than dirty-label poisons; λ outside [0, 1] is refused."""
    concepts = ConceptConfig(n_concepts=40, dim=32)
    acc = {}
    for kind, lam in (("dirty", 0.5), ("shift", 0.5), ("shift", 0.0)):
        setting = Setting(40, 5, (25,), (0, 20), seeds=(0, 1, 2), ad_samples=2_000, poison_kind=kind, shift=lam)
        rows, _ = predict(setting, concepts)
        cfg = SweepConfig(concepts=concepts, poison=PoisonConfig(poison_per_concept=25, kind=kind, shift=lam),
                          benign_per_concept=5)
        direct = {r["c_p"]: r["unpoisoned_acc"] for r in run_seed(cfg, 2, [0, 20])}
        assert {r["c_p"]: r["unpoisoned_acc"] for r in rows if r["seed"] == 2} == direct
        acc[(kind, lam)] = {c: np.mean([r["unpoisoned_acc"] for r in rows if r["c_p"] == c]) for c in (0, 20)}
        assert setting.real_poison_type == ("nightshade" if kind == "shift" else "dirty")
    assert acc[("shift", 0.0)][20] >= acc[("shift", 0.5)][20] >= acc[("dirty", 0.5)][20]
    with pytest.raises(InputError, match="shift"):
        Setting(40, 5, (25,), (20,), poison_kind="shift", shift=1.5)


def test_crossing_interpolates():
    assert crossing([0, 10, 20], [1.0, 0.8, 0.2], 0.5, True) == pytest.approx(15.0)
    assert crossing([0, 10], [1.0, 0.9], 0.5, True) == np.inf
    assert crossing([0, 10], [0.0, 0.9], 0.5, False) == pytest.approx(10 * 0.5 / 0.9)


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "simulate.predict", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)


def test_cli_writes_the_prediction(tmp_path):
    out = tmp_path / "pred"
    proc = _run("--n-concepts", "40", "--benign-per-concept", "4", "--poison-per-concept", "20",
                "--poisoned-concepts", "10,30", "--dim", "8", "--seeds", "0,1", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "unpoisoned accuracy < 0.5 from C_P" in proc.stdout
    record = json.loads((out / "prediction.json").read_text())
    assert record["setting"]["poisoned_concepts"] == [10, 30] and record["calibration"]["concept_config"]["dim"] == 8
    assert len((out / "prediction.csv").read_text().splitlines()) == 1 + 2 * 2


@pytest.mark.parametrize("args, message", [
    (("--poisoned-concepts", "40"), "below --n-concepts"),
    (("--poisoned-concepts", "10", "--seeds", "x"), "--seeds"),
    (("--poisoned-concepts", "10", "--embeddings", "missing.npz"), "no such file"),
])
def test_cli_bad_input_one_line_exit_2(args, message, tmp_path):
    proc = _run("--n-concepts", "40", "--benign-per-concept", "4", "--poison-per-concept", "20", "--dim", "8",
                *args)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and message in proc.stderr
    assert proc.stdout == ""


def test_embeddings_without_labels_are_refused(tmp_path):
    f = tmp_path / "e.npz"
    np.savez(f, text=np.eye(4), image=np.eye(4))
    proc = _run("--n-concepts", "40", "--benign-per-concept", "4", "--poison-per-concept", "20", "--dim", "8",
                "--poisoned-concepts", "10", "--embeddings", str(f))
    assert proc.returncode == 2 and "'concept'" in proc.stderr
