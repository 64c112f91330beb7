"""Simulator parts: concept space, poisoning, training set, solvers, metrics."""

from __future__ import annotations

import numpy as np
import pytest

from simulate.align import AttentionSolver, CapacitySolver, RidgeSolver, project_nuclear_ball
from simulate.concepts import ConceptConfig, make_space, space_statistics, unit_rows
from simulate.metrics import evaluate
from simulate.poison import PoisonConfig, benign_pairs, plan_for_space, poison_pairs
from simulate.training_set import TrainingSet
from theory.ad import alignment_difficulty
from implosion_base.errors import InputError
from theory.implosion import make_reference

SMALL = ConceptConfig(n_concepts=40, dim=16)


# ------------------------------------------------------------------------------------------- concepts


def test_default_space_looks_like_clip():
    stats = space_statistics(make_space(ConceptConfig(), 0))
    assert 0.70 <= stats["text_across_samples"] <= 0.80
    assert 0.70 <= stats["text_across_centroids"] <= 0.80
    assert 0.25 <= stats["matched_samples"] <= 0.35
    assert 0.25 <= stats["matched_centroids"] <= 0.35
    assert stats["image_within_samples"] > stats["image_across_centroids"] + 0.3


def test_space_is_deterministic_and_unit():
    a, b = make_space(SMALL, 3), make_space(SMALL, 3)
    assert np.array_equal(a.text_centroids, b.text_centroids)
    assert not np.array_equal(a.text_centroids, make_space(SMALL, 4).text_centroids)
    assert np.allclose(np.linalg.norm(a.image_centroids, axis=1), 1)
    t, v = a.sample(np.arange(5), np.arange(5), np.random.default_rng(0))
    assert np.allclose(np.linalg.norm(t, axis=1), 1) and np.allclose(np.linalg.norm(v, axis=1), 1)


def test_template_weight_sets_text_cosine():
    for w in (0.3, 0.6, 0.9):
        stats = space_statistics(make_space(ConceptConfig(n_concepts=200, dim=256, template_weight=w), 0))
        assert abs(stats["text_across_centroids"] - w) < 0.03


@pytest.mark.parametrize("kwargs", [{"n_concepts": 1}, {"dim": 2}, {"template_weight": 1.5},
                                    {"separation": -0.1}, {"text_spread": -1.0}])
def test_bad_concept_config(kwargs):
    with pytest.raises(InputError):
        ConceptConfig(**kwargs)


# ------------------------------------------------------------------------------------------- poison


def test_plan_is_nested_and_targets_are_other_concepts():
    space = make_space(SMALL, 0)
    plan = plan_for_space(space, PoisonConfig(), seed=1)
    assert sorted(plan.order) == list(range(40))
    assert set(plan.poisoned(5)) <= set(plan.poisoned(20))
    assert np.all(plan.target != np.arange(40))


@pytest.mark.parametrize("rule", ["nearest", "farthest"])
def test_nearest_and_farthest_targets(rule):
    space = make_space(SMALL, 0)
    plan = plan_for_space(space, PoisonConfig(targets=rule), seed=0)
    sim = space.image_centroids @ space.image_centroids.T
    for c in range(40):
        others = np.delete(np.arange(40), c)
        best = others[np.argmax(sim[c, others])] if rule == "nearest" else others[np.argmin(sim[c, others])]
        assert plan.target[c] == best


def test_poison_pairs_do_not_depend_on_what_else_was_drawn():
    space = make_space(SMALL, 0)
    cfg = PoisonConfig(poison_per_concept=7)
    plan = plan_for_space(space, cfg, seed=2)
    a = poison_pairs(space, plan, cfg, 5, seed=2)
    poison_pairs(space, plan, cfg, 9, seed=2)
    b = poison_pairs(space, plan, cfg, 5, seed=2)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert a[0].shape == (7, 16)


def test_dirty_label_images_show_the_target_and_texts_the_concept():
    space = make_space(ConceptConfig(n_concepts=40, dim=64), 0)
    cfg = PoisonConfig(poison_per_concept=20)
    plan = plan_for_space(space, cfg, seed=0)
    t, v = poison_pairs(space, plan, cfg, 3, seed=0)
    assert np.all((v @ space.image_centroids.T).argmax(axis=1) == plan.target[3])
    assert np.all((t @ space.text_centroids.T).argmax(axis=1) == 3)


def test_feature_shift_moves_images_toward_the_target():
    space = make_space(ConceptConfig(n_concepts=40, dim=64), 0)
    closeness = []
    for shift in (0.0, 0.3, 0.7, 1.0):
        cfg = PoisonConfig(poison_per_concept=30, kind="shift", shift=shift)
        plan = plan_for_space(space, cfg, seed=0)
        _, v = poison_pairs(space, plan, cfg, 3, seed=0)
        closeness.append(float((v @ space.image_centroids[plan.target[3]]).mean()))
    assert closeness == sorted(closeness) and closeness[-1] - closeness[0] > 0.3


# ------------------------------------------------------------------------------------------- training set


def test_training_set_statistics_follow_adds_and_removes():
    rng = np.random.default_rng(0)
    data = TrainingSet(6)
    t1, v1 = unit_rows(rng.normal(size=(30, 6))), unit_rows(rng.normal(size=(30, 6)))
    t2, v2 = unit_rows(rng.normal(size=(10, 6))), unit_rows(rng.normal(size=(10, 6)))
    data.add(t1, v1)
    ids = data.add(t2, v2)
    data.remove([0, 5, int(ids[3])])
    keep = np.ones(40, bool)
    keep[[0, 5, 33]] = False
    t, v = np.r_[t1, t2][keep], np.r_[v1, v2][keep]
    at, av = data.arrays()
    assert np.array_equal(at, t) and np.array_equal(av, v) and data.n == 37
    assert np.allclose(data.gram, t.T @ t) and np.allclose(data.cross, t.T @ v)
    assert data.ad().ad == pytest.approx(alignment_difficulty(t, v).ad, abs=1e-6)
    with pytest.raises(InputError):
        data.remove([0])


# ------------------------------------------------------------------------------------------- solvers


def _data(n=200, d=8, seed=0):
    rng = np.random.default_rng(seed)
    t = unit_rows(rng.normal(size=(n, d)))
    w = rng.normal(size=(d, d))
    v = unit_rows(t @ w + 0.1 * rng.normal(size=(n, d)))
    data = TrainingSet(d, track_ad=False)
    data.add(t, v)
    return data, t, v


def test_ridge_matches_the_normal_equations():
    data, t, v = _data()
    model = RidgeSolver(reg=1e-2).prepare(data, 0).fit(data)
    lam = 1e-2 * np.trace(t.T @ t) / 8
    w = np.linalg.solve(t.T @ t + lam * np.eye(8), t.T @ v)
    assert np.allclose(model.weight, w)
    assert model.train_loss == pytest.approx(np.mean(np.sum((t @ w - v) ** 2, axis=1)), rel=1e-9)


def test_nuclear_projection():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(6, 6))
    p = project_nuclear_ball(w, 2.0)
    assert np.linalg.svd(p, compute_uv=False).sum() == pytest.approx(2.0)
    assert np.array_equal(project_nuclear_ball(p, 5.0), p)  # inside the ball: unchanged
    # projection property: <w - p, q - p> <= 0 for q in the ball
    for _ in range(20):
        q = project_nuclear_ball(rng.normal(size=(6, 6)), 2.0)
        assert np.sum((w - p) * (q - p)) <= 1e-9


def test_capacity_cvxpy_and_fista_agree_and_respect_the_budget():
    data, _, _ = _data(d=6)
    fits = {m: CapacitySolver(budget=0.4, method=m, tol=1e-9, max_iter=20000).prepare(data, 0).fit(data)
            for m in ("cvxpy", "fista")}
    tau = 0.4 * np.linalg.svd(RidgeSolver().fit(data).weight, compute_uv=False).sum()
    for model in fits.values():
        assert np.linalg.svd(model.weight, compute_uv=False).sum() <= tau * (1 + 1e-4)
    assert fits["cvxpy"].train_loss == pytest.approx(fits["fista"].train_loss, rel=1e-4)
    assert fits["fista"].train_loss > RidgeSolver().fit(data).train_loss  # the budget binds


def test_capacity_with_ample_budget_is_least_squares():
    data, _, _ = _data(d=6)
    model = CapacitySolver(budget=10.0, method="fista").prepare(data, 0).fit(data)
    assert model.train_loss == pytest.approx(RidgeSolver(reg=1e-9).fit(data).train_loss, rel=1e-5)


def test_attention_solver_learns_the_clean_map():
    pytest.importorskip("torch")
    space = make_space(ConceptConfig(n_concepts=30, dim=16), 0)
    t, v, _ = benign_pairs(space, 8, seed=0)
    data = TrainingSet(16, track_ad=False)
    data.add(t, v)
    model = AttentionSolver(pretrain_steps=300, steps=5).prepare(data, 0).fit(data)
    plan = plan_for_space(space, PoisonConfig(), 0)
    clean = model.predict(space.text_centroids)
    metrics = evaluate(model, space, plan, 0, clean, make_reference(space.image_centroids))
    assert metrics["unpoisoned_acc"] >= 0.9
    assert 0.0 <= metrics["concept_attention"] <= 1.0


@pytest.mark.parametrize("bad", [lambda: RidgeSolver(reg=0), lambda: CapacitySolver(budget=0),
                                 lambda: CapacitySolver(method="mosek"), lambda: AttentionSolver(steps=0)])
def test_bad_solver_options(bad):
    with pytest.raises(InputError):
        bad()


# ------------------------------------------------------------------------------------------- metrics


class _Lookup:
    """A model that maps concept c's prompt to a chosen image centroid (or a fixed vector)."""

    def __init__(self, outputs, train_loss=0.0):
        self.outputs, self.train_loss = outputs, train_loss

    def predict(self, text):
        return self.outputs

    def concept_attention(self, text):
        return None


def test_metrics_on_handmade_models():
    space = make_space(SMALL, 0)
    plan = plan_for_space(space, PoisonConfig(), 0)
    perfect = _Lookup(space.image_centroids)
    ref = make_reference(space.image_centroids)
    m = evaluate(perfect, space, plan, 10, space.image_centroids, ref)
    assert m["unpoisoned_acc"] == 1.0 and m["attack_success"] == 0.0 and m["poisoned_acc"] == 1.0
    assert m["meaningless_rate"] == 0.0 and m["distortion"] == pytest.approx(0.0, abs=1e-12)
    attacked = space.image_centroids.copy()
    attacked[plan.poisoned(10)] = space.image_centroids[plan.target[plan.poisoned(10)]]
    m = evaluate(_Lookup(attacked), space, plan, 10, space.image_centroids, ref)
    assert m["attack_success"] == 1.0 and m["unpoisoned_acc"] == 1.0
    mean_image = np.tile(space.image_centroids.mean(axis=0), (40, 1))
    m = evaluate(_Lookup(mean_image), space, plan, 10, space.image_centroids, ref)
    assert m["meaningless_rate"] == 1.0 and m["distortion"] > 0.1
    assert np.isnan(evaluate(perfect, space, plan, 0, space.image_centroids, ref)["attack_success"])


# ------------------------------------------------------------------------------------------- experiments


def test_block_model_fitted_to_a_separated_space_predicts_ad():
    """Where the block model's assumptions hold (separated concepts, little noise, disjoint-ish targets), the
    closed form with parameters measured at one C_P predicts the simulated AD at the others."""
    from simulate.experiments import block_prediction, fitted_block_parameters
    from simulate.engine import SweepConfig, run_seed

    cfg = SweepConfig(concepts=ConceptConfig(n_concepts=60, dim=64, template_weight=0.1, separation=0.95,
                                             text_spread=0.1, image_spread=0.1),
                      poison=PoisonConfig(poison_per_concept=4), benign_per_concept=3)
    points = [0, 5, 10, 20, 30]
    sim = np.array([r["ad"] for r in run_seed(cfg, 0, points)])
    pred = block_prediction(cfg, fitted_block_parameters(cfg, 0, c_p=10), points)
    assert np.max(np.abs(sim - pred)) < 0.01
    assert np.all(np.diff(pred) > 0) and np.all(np.diff(sim) > 0)


def test_experiments_cli_rejects_bad_usage():
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    for args in (["bogus"], ["ad", "--seeds", "x"]):
        proc = subprocess.run([sys.executable, "-m", "simulate.experiments", *args], capture_output=True, text=True,
                              cwd=root, timeout=60)
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
