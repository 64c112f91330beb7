"""Dirty-label poison plans and pairs are exactly as recorded: nested sets, targets, images of the target."""

from __future__ import annotations

import numpy as np
import pytest

from empirical.poisons import control_pairs, make_plan, poison_pairs
from theory.cli import InputError

NAMES = ["bird", "fish", "bicycle", "spiral shell", "balloon", "red apple", "top hat", "turtle"] + \
    [f"thing {i}" for i in range(22)]
LABELS = np.repeat(np.arange(len(NAMES)), 5)


@pytest.mark.parametrize("mode", ["poisoned", "all"])
def test_plan_is_a_seeded_permutation_with_pinned_paper_targets(mode):
    plan = make_plan(NAMES, seed=3, mode=mode)
    assert sorted(plan.order) == list(range(len(NAMES)))
    assert plan == make_plan(NAMES, seed=3, mode=mode)
    assert plan.order != make_plan(NAMES, seed=4, mode=mode).order
    assert all(a != b for a, b in plan.pairs(len(NAMES)))
    idx = {n: i for i, n in enumerate(NAMES)}
    pairs = dict(plan.pairs(len(NAMES)))
    assert pairs[idx["red apple"]] == idx["top hat"] and pairs[idx["fish"]] == idx["bicycle"]
    assert [NAMES[i] for i in plan.order[-4:]] == ["turtle", "spiral shell", "balloon", "bird"]
    for c_p in (1, 5, 12):  # nested sets
        assert set(plan.poisoned(c_p)) <= set(plan.poisoned(c_p + 3))


def test_poisoned_mode_keeps_targets_inside_the_poisoned_set():
    plan = make_plan(NAMES, seed=0, mode="poisoned")
    for c_p in range(4, len(NAMES) + 1):
        assert {b for _, b in plan.pairs(c_p)} <= set(plan.poisoned(c_p))


def test_all_mode_reaches_unpoisoned_targets():
    plan = make_plan(NAMES, seed=0, mode="all")
    assert {b for _, b in plan.pairs(10)} - set(plan.poisoned(10))


def test_poison_pairs_show_the_target_and_name_the_concept():
    plan = make_plan(NAMES, seed=1)
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
    plan = make_plan(NAMES, seed=0)
    with pytest.raises(InputError, match="outside"):
        plan.poisoned(len(NAMES) + 1)
    with pytest.raises(InputError, match="unknown target mode"):
        make_plan(NAMES, seed=0, mode="closest")
    with pytest.raises(InputError, match="needs a concept similarity"):
        make_plan(NAMES, seed=0, mode="nearest")
    with pytest.raises(InputError, match="30 x 30"):
        make_plan(NAMES, seed=0, mode="nearest", similarity=np.eye(3))
    with pytest.raises(InputError, match=">= 0"):
        poison_pairs(plan, 2, -1, LABELS, seed=0)


def test_nearest_mode_targets_the_most_similar_other_concept():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(len(NAMES), 5))
    sim = x @ x.T  # the diagonal is the largest entry of most rows: it must never be chosen
    plan = make_plan(NAMES, seed=2, mode="nearest", similarity=sim)
    for a, b in plan.pairs(len(NAMES)):
        others = [j for j in range(len(NAMES)) if j != a]
        assert b == max(others, key=lambda j: sim[a, j])
    assert [NAMES[i] for i in plan.order[-4:]] == ["turtle", "spiral shell", "balloon", "bird"]


def test_scatter_mode_draws_a_different_random_concept_for_each_pair():
    """Every pair of A shows some other concept; over A's pairs the shown concepts spread over many concepts
    (no learnable target), deterministic per seed, and a concept's pairs do not depend on C_P."""
    labels = np.repeat(np.arange(len(NAMES)), 20)
    plan = make_plan(NAMES, seed=0, mode="scatter")
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
