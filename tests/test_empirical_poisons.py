"""Dirty-label poison plans and pairs are exactly as recorded: nested sets, targets, images of the target."""

from __future__ import annotations

import numpy as np
import pytest

from empirical.poisons import control_pairs, harness_plan, poison_pairs
from implosion_base.errors import InputError

NAMES = ["bird", "fish", "bicycle", "spiral shell", "balloon", "red apple", "top hat", "turtle"] + \
    [f"thing {i}" for i in range(22)]
LABELS = np.repeat(np.arange(len(NAMES)), 5)


@pytest.mark.parametrize("mode", ["poisoned", "all"])
def test_plan_is_a_seeded_permutation_with_pinned_paper_targets(mode):
    plan = harness_plan(NAMES, mode, seed=3)
    assert sorted(plan.order) == list(range(len(NAMES)))
    assert plan == harness_plan(NAMES, mode, seed=3)
    assert plan.order != harness_plan(NAMES, mode, seed=4).order
    assert all(a != b for a, b in plan.pairs(len(NAMES)))
    idx = {n: i for i, n in enumerate(NAMES)}
    pairs = dict(plan.pairs(len(NAMES)))
    assert pairs[idx["red apple"]] == idx["top hat"] and pairs[idx["fish"]] == idx["bicycle"]
    assert [NAMES[i] for i in plan.order[-4:]] == ["turtle", "spiral shell", "balloon", "bird"]
    for c_p in (1, 5, 12):  # nested sets
        assert set(plan.poisoned(c_p)) <= set(plan.poisoned(c_p + 3))


def test_poisoned_mode_keeps_targets_inside_the_poisoned_set():
    plan = harness_plan(NAMES, "poisoned", seed=0)
    for c_p in range(4, len(NAMES) + 1):
        assert {b for _, b in plan.pairs(c_p)} <= set(plan.poisoned(c_p))


def test_all_mode_reaches_unpoisoned_targets():
    plan = harness_plan(NAMES, "all", seed=0)
    assert {b for _, b in plan.pairs(10)} - set(plan.poisoned(10))


def test_poison_pairs_show_the_target_and_name_the_concept():
    plan = harness_plan(NAMES, "poisoned", seed=1)
    images, concepts = poison_pairs(plan, 6, 7, LABELS, seed=1)
    assert len(images) == len(concepts) == 42
    target = dict(plan.pairs(6))
    assert all(LABELS[i] == target[a] for i, a in zip(images, concepts))
    assert sorted(set(concepts.tolist())) == sorted(plan.poisoned(6))
    # a concept's poison does not depend on C_P (the sweep only adds)
    more_i, more_c = poison_pairs(plan, 9, 7, LABELS, seed=1)
    assert np.array_equal(more_i[:42], images) and np.array_equal(more_c[:42], concepts)
    ctrl_i, ctrl_c = control_pairs(plan, 6, 7, LABELS, seed=1)
    assert np.array_equal(ctrl_c, concepts) and np.array_equal(LABELS[ctrl_i], ctrl_c)


def test_plan_errors():
    plan = harness_plan(NAMES, "poisoned", seed=0)
    with pytest.raises(InputError, match="outside"):
        plan.poisoned(len(NAMES) + 1)
    with pytest.raises(InputError, match="unknown target mode"):
        harness_plan(NAMES, "closest", seed=0)
    with pytest.raises(InputError, match="needs a concept similarity"):
        harness_plan(NAMES, "nearest", seed=0)
    with pytest.raises(InputError, match="30 x 30"):
        harness_plan(NAMES, "nearest", seed=0, similarity=np.eye(3))
    with pytest.raises(InputError, match=r"poison pairs per concept must be in \[0, inf\], got -1"):
        poison_pairs(plan, 2, -1, LABELS, seed=0)


def test_nearest_mode_targets_the_most_similar_other_concept():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(len(NAMES), 5))
    sim = x @ x.T  # the diagonal is the largest entry of most rows: it must never be chosen
    plan = harness_plan(NAMES, "nearest", seed=2, similarity=sim)
    for a, b in plan.pairs(len(NAMES)):
        others = [j for j in range(len(NAMES)) if j != a]
        assert b == max(others, key=lambda j: sim[a, j])
    assert [NAMES[i] for i in plan.order[-4:]] == ["turtle", "spiral shell", "balloon", "bird"]


def test_scatter_mode_draws_a_different_random_concept_for_each_pair():
    """Every pair of A shows some other concept; over A's pairs the shown concepts spread over many concepts
    (no learnable target), deterministic per seed, and a concept's pairs do not depend on C_P."""
    labels = np.repeat(np.arange(len(NAMES)), 20)
    plan = harness_plan(NAMES, "scatter", seed=0)
    assert all(t["target"] == "(a random concept per pair)" for t in plan.to_json(3))
    images, concepts = poison_pairs(plan, 5, 60, labels, seed=4)
    assert len(images) == 300
    shown = labels[images]
    assert np.all(shown != concepts)
    for a in plan.poisoned(5):
        assert len(set(shown[concepts == a].tolist())) >= 20  # 60 draws over 29 others
    again, _ = poison_pairs(plan, 8, 60, labels, seed=4)
    assert np.array_equal(again[:300], images)
    ctrl, ctrl_c = control_pairs(plan, 5, 60, labels, seed=4)
    assert np.array_equal(labels[ctrl], ctrl_c)


def test_attack_success_leaves_out_concepts_without_one_target():
    from empirical.evaluate import _attack_success

    labels = np.array([0, 0, 1, 1, 2, 2])
    pred = np.array([3, 0, 3, 3, 2, 2])
    is_p = np.isin(labels, [0, 1])
    assert _attack_success(pred, labels, is_p, {0: 3, 1: 3}) == pytest.approx(3 / 4)
    assert _attack_success(pred, labels, is_p, {0: 3, 1: -1}) == pytest.approx(1 / 2)
    assert np.isnan(_attack_success(pred, labels, is_p, {0: -1, 1: -1}))


def test_poison_kinds_share_one_batch_type_and_a_new_kind_is_one_registry_entry(monkeypatch):
    """Every kind returns an ExtraPairs with its own is_poison; the control marks none; and the worked example of
    docs/design.md ("mislabel": images of A captioned as B) works by adding one function to POISON_KINDS — the
    run's argument check then accepts it."""

    from empirical import poison_kinds
    from empirical.poison_kinds import ExtraPairs, PoisonRequest, extra_pairs
    from empirical.poisons import control_pairs as ctrl

    plan = harness_plan(NAMES, "poisoned", seed=0)
    req = PoisonRequest(plan, c_p=6, p=3, images=np.zeros((len(LABELS), 4, 4, 3), np.uint8), labels=LABELS, seed=1)
    ptype, dirty = extra_pairs("poisoned", "dirty", req)
    assert ptype == "dirty" and len(dirty) == 18 and dirty.is_poison.all() and np.isnan(dirty.report["poison_linf"])
    ptype, control = extra_pairs("control", "dirty", req)
    assert ptype == "none" and len(control) == 18 and not control.is_poison.any()
    assert extra_pairs("poisoned", "dirty", PoisonRequest(plan, 0, 3, req.images, LABELS, 1))[0] == "none"

    def mislabel(r: PoisonRequest) -> ExtraPairs:
        idx, _ = ctrl(r.plan, r.c_p, r.p, r.labels, seed=r.seed)
        targets = dict(r.plan.pairs(r.c_p))
        return ExtraPairs(idx, np.array([targets[int(a)] for a in r.labels[idx]], np.int64), np.ones(len(idx), bool))

    monkeypatch.setitem(poison_kinds.POISON_KINDS, "mislabel", mislabel)
    ptype, batch = extra_pairs("poisoned", "mislabel", req)
    targets = dict(plan.pairs(6))
    assert ptype == "mislabel" and len(batch) == 18
    assert all(targets[int(LABELS[i])] == c for i, c in zip(batch.image_idx, batch.concepts))
    from empirical.layout import point_tag
    from empirical.request import _choice

    assert _choice("mislabel", poison_kinds.POISON_KINDS, "poison type") == "mislabel"
    assert point_tag("continuous", 0, 6, "poisoned", "mislabel").endswith("-mislabel")
    assert point_tag("continuous", 0, 6, "poisoned", "nightshade") == "continuous-s0-cp6-poisoned-nightshade"
