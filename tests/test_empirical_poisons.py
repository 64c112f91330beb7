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
def test_plan_is_a_seeded_permutation_with_valid_targets(mode):
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
        make_plan(NAMES, seed=0, mode="nearest")
    with pytest.raises(InputError, match=">= 0"):
        poison_pairs(plan, 2, -1, LABELS, seed=0)
