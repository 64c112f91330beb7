"""Dirty-label poisons for the empirical harness: pairs whose caption names concept A while the image shows B.

A :class:`PoisonPlan` fixes, for one seed, an order of the concepts and a target for each; the poisoned set for
C_P concepts is the first C_P of that order, so the sets are nested (C_P = 25 ⊂ 50 ⊂ 100) and points of a sweep
differ only in the added poison. Two target modes:

- ``poisoned``: concept ``order[i]`` targets ``order[i−1]`` (``order[0]`` targets ``order[1]``), so for C_P ≥ 2
  every target is itself poisoned and the never-poisoned concepts are never touched (the paper's pinned attacks
  below keep their named targets);
- ``all``: each concept targets a seeded uniform choice among all other concepts.

With ``paper_order`` the order starts with the paper's attacks where the concepts exist — red apple → top hat,
fish → bicycle — and ends with the paper's unpoisoned sentinels (turtle, spiral shell, balloon, bird), so those
stay clean until C_P approaches the number of concepts. Every choice is written to the results folder.

The poison pairs of concept A are ``p`` images of its target B drawn (seeded, without replacement while B has
enough images) from B's clean renders, captioned with A's caption templates. The *control* of a poisoned mix adds
the same number of pairs correctly labelled (images of A captioned A), separating contradiction from volume.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from theory.cli import InputError

TARGET_MODES: tuple[str, ...] = ("poisoned", "all")
_PAPER_FIRST: tuple[tuple[str, str], ...] = (("red apple", "top hat"), ("fish", "bicycle"))
_PAPER_LAST: tuple[str, ...] = ("turtle", "spiral shell", "balloon", "bird")


@dataclass(frozen=True)
class PoisonPlan:
    """Concept order and targets (indices into ``names``) for one seed; see the module docstring."""

    names: tuple[str, ...]
    order: tuple[int, ...]
    targets: tuple[int, ...]  # targets[k] is the target of concept order[k]
    mode: str
    seed: int

    def poisoned(self, c_p: int) -> list[int]:
        """The poisoned concepts at C_P = ``c_p`` (the first ``c_p`` of the order)."""
        if not 0 <= c_p <= len(self.names):
            raise InputError(f"C_P = {c_p} is outside 0..{len(self.names)} (the number of concepts)")
        return list(self.order[:c_p])

    def pairs(self, c_p: int) -> list[tuple[int, int]]:
        """(poisoned concept, target concept) for C_P = ``c_p``."""
        return [(self.order[k], self.targets[k]) for k in range(c_p)]

    def to_json(self, c_p: int) -> list[dict]:
        return [{"concept": self.names[a], "target": self.names[b]} for a, b in self.pairs(c_p)]


def make_plan(names: list[str] | tuple[str, ...], *, seed: int, mode: str = "poisoned",
              paper_order: bool = True) -> PoisonPlan:
    """The seeded :class:`PoisonPlan` over ``names`` (see the module docstring)."""
    if mode not in TARGET_MODES:
        raise InputError(f"unknown target mode {mode!r}; choose from {', '.join(TARGET_MODES)}")
    n = len(names)
    if n < 2:
        raise InputError("poisoning needs at least 2 concepts")
    rng = np.random.default_rng([seed, 7919])
    index = {name: i for i, name in enumerate(names)}
    first: list[int] = []
    pinned: dict[int, int] = {}
    last: list[int] = []
    if paper_order:
        for a, b in _PAPER_FIRST:
            if a in index and b in index and index[a] not in first and index[b] not in first:
                if mode == "poisoned":
                    first += [index[a], index[b]]  # b is poisoned right after a (b -> a in this mode)
                else:
                    first.append(index[a])
                pinned[index[a]] = index[b]
        last = [index[s] for s in _PAPER_LAST if s in index and index[s] not in first]
    middle = [i for i in range(n) if i not in first and i not in last]
    middle = [middle[j] for j in rng.permutation(len(middle))]
    order = first + middle + last
    targets: list[int] = []
    for k, a in enumerate(order):
        if mode == "poisoned":
            t = order[k - 1] if k > 0 else order[1]
        elif a in pinned:
            t = pinned[a]
        else:
            t = int(rng.integers(n - 1))
            t += t >= a
        targets.append(t)
    if mode == "poisoned" and paper_order:  # the paper's attacks keep their named targets
        for k, a in enumerate(order):
            if a in pinned:
                targets[k] = pinned[a]
    return PoisonPlan(tuple(names), tuple(order), tuple(targets), mode, seed)


def poison_pairs(plan: PoisonPlan, c_p: int, per_concept: int, labels: np.ndarray, *, seed: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Dirty-label pairs for C_P = ``c_p``: (image indices into the clean set, caption concept per pair).

    For each (A, B) in ``plan.pairs(c_p)``, ``per_concept`` images of B (seeded per A, so a concept's poison does
    not depend on C_P) captioned as A.
    """
    return _extra_pairs(plan, c_p, per_concept, labels, seed=seed, salt=104729, show_target=True)


def control_pairs(plan: PoisonPlan, c_p: int, per_concept: int, labels: np.ndarray, *, seed: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """The control of :func:`poison_pairs`: as many extra pairs per poisoned concept A, images of A captioned A."""
    return _extra_pairs(plan, c_p, per_concept, labels, seed=seed, salt=130363, show_target=False)


def _extra_pairs(plan: PoisonPlan, c_p: int, per_concept: int, labels: np.ndarray, *, seed: int, salt: int,
                 show_target: bool) -> tuple[np.ndarray, np.ndarray]:
    """``per_concept`` pairs captioned as each poisoned concept A, showing its target (or A itself)."""
    if per_concept < 0:
        raise InputError(f"poison pairs per concept must be >= 0, got {per_concept}")
    images, concepts = [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.int64)]
    for a, b in plan.pairs(c_p):
        pool = np.flatnonzero(labels == (b if show_target else a))
        rng = np.random.default_rng([seed, salt, a])
        images.append(rng.choice(pool, size=per_concept, replace=per_concept > len(pool)))
        concepts.append(np.full(per_concept, a))
    return np.concatenate(images).astype(np.int64), np.concatenate(concepts).astype(np.int64)
