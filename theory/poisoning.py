r"""The paper's poisoning model, once for every package: which concepts are poisoned, in which order, toward which
targets, and which training items a poisoned concept's pairs are made of.

**A plan** (:class:`PoisonPlan`) fixes, for one seed, an order of the K concepts and a target for each; the
poisoned set at C_P is the first C_P concepts of the order, so the sets are nested (C_P = 10 ⊂ 50 ⊂ 100) and the
points of a sweep differ only in the added poison. ``target[c]`` is concept c's target (indexed by concept).

**Target rules** — one vocabulary for the simulator, the real-model harness and the dataset audit:

- ``poisoned``: targets among the poisoned concepts — ``order[i]`` targets ``order[i-1]`` (``order[0]`` targets
  ``order[1]``), so for C_P ≥ 2 every target is itself poisoned and the never-poisoned concepts are never shown as
  anyone's poison (the harness's default);
- ``random``: each concept targets a seeded uniform choice among the other concepts;
- ``nearest`` / ``farthest``: the other concept most / least similar to it under a K × K similarity the caller
  measures (image centroids' cosines, or mean judge features): the cheapest / dearest remapping to learn;
- ``scatter``: no target per concept — every poison pair shows its own uniformly drawn other concept (a mapping no
  model can learn: the caption carries no information about the image); ``target[c]`` is :data:`SCATTER`, except
  under the simulator's stream, where it is the first pair's target (drawn as for ``random``).

An older spelling is still read for one release (:func:`target_rule`; stored tables through
:data:`implosion_base.records.VALUE_ALIASES`): the harness's ``all`` is ``random``.

**The paper's pinned attacks** (``paper_order``): the order starts with red apple → top hat and fish → bicycle
where those concepts exist, and ends with the paper's never-poisoned sentinels (turtle, spiral shell, balloon,
bird), so they stay clean until C_P approaches K.

**Random streams.** A plan is drawn from the stream :class:`PlanStream` names. The simulator and the harness each
keep the stream their published results were drawn from (:data:`SIMULATOR_STREAM`: targets drawn for every concept
at once, a ``scatter`` concept's first pair included; :data:`HARNESS_STREAM`: targets drawn one by one in
poisoning order), so every earlier run reproduces bit for bit. Both draw the order as ``rng.permutation``.

**Dirty-label pairs by item** (:func:`dirty_label_items`): given each training item's concept, the items that
make poisoned concept A's p pairs — images of its target B (seeded per A, so a concept's poison does not depend
on C_P) captioned as A — and, with ``show_target=False``, the same number of A's own items (the same-volume
control, or the source images a feature-space poison perturbs).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from implosion_base.errors import InputError
from implosion_base.records import VALUE_ALIASES
from implosion_base.validate import check_scalar

__all__ = ["HARNESS_STREAM", "OLD_RULE_SPELLINGS", "PoisonPlan", "PlanStream", "SCATTER", "SIMULATOR_STREAM",
           "TARGET_RULES", "dirty_label_items", "make_plan", "target_rule"]

TARGET_RULES: tuple[str, ...] = ("poisoned", "random", "nearest", "farthest", "scatter")
#: Spellings of earlier releases, still read: old name -> rule (what stored tables are read with, too).
OLD_RULE_SPELLINGS: dict[str, str] = VALUE_ALIASES["targets"]
#: The target of a concept under ``scatter``: none (each of its pairs draws its own).
SCATTER = -1
_PAPER_FIRST: tuple[tuple[str, str], ...] = (("red apple", "top hat"), ("fish", "bicycle"))
_PAPER_LAST: tuple[str, ...] = ("turtle", "spiral shell", "balloon", "bird")


def target_rule(name: str, *, what: str = "--targets", note: bool = False) -> str:
    """``name`` as a rule of :data:`TARGET_RULES`: an old spelling (:data:`OLD_RULE_SPELLINGS`) is translated
    (with a one-line note on stderr when ``note``), anything else is an InputError naming ``what``."""
    if name in OLD_RULE_SPELLINGS:
        new = OLD_RULE_SPELLINGS[name]
        if note:
            sys.stderr.write(f"note: {what} {name} is now spelled {new} (the old name is read for one release)\n")
        return new
    if name not in TARGET_RULES:
        raise InputError(f"unknown target mode {name!r} for {what}; choose a target rule from "
                         f"{', '.join(TARGET_RULES)}")
    return name


@dataclass(frozen=True)
class PlanStream:
    """Where a plan's randomness comes from: the generator ``default_rng([seed, salt])``, and whether ``random``
    targets are drawn for all concepts at once (``by_concept``: concept c gets ``(c + U{1..K-1}) mod K``) or one
    by one in poisoning order (a uniform draw among the others, skipping the concept itself)."""

    salt: int
    by_concept: bool


#: The simulator's stream (``simulate``): every published sweep was drawn from it.
SIMULATOR_STREAM = PlanStream(salt=2, by_concept=True)
#: The real-model harness's stream (``empirical``): every published run's plans/ were drawn from it.
HARNESS_STREAM = PlanStream(salt=7919, by_concept=False)


@dataclass(frozen=True, eq=False)
class PoisonPlan:
    """Concept order and targets for one seed (see the module docstring). ``order[k]`` is the k-th concept to be
    poisoned; ``target[c]`` is concept c's target (:data:`SCATTER` under ``scatter``); ``names`` are the concepts'
    names when known."""

    order: tuple[int, ...]
    target: np.ndarray
    rule: str
    seed: int
    names: tuple[str, ...] | None = None

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, PoisonPlan) and (self.order, self.rule, self.seed, self.names)
                == (other.order, other.rule, other.seed, other.names) and np.array_equal(self.target, other.target))

    __hash__ = None  # type: ignore[assignment]  # a plan holds an array: equal plans need not hash alike

    def poisoned(self, c_p: int) -> list[int]:
        """The poisoned concepts at C_P = ``c_p`` (the first ``c_p`` of the order)."""
        if not 0 <= c_p <= len(self.order):
            raise InputError(f"C_P = {c_p} is outside 0..{len(self.order)} (the number of concepts)")
        return list(self.order[:c_p])

    def pairs(self, c_p: int) -> list[tuple[int, int]]:
        """(poisoned concept, its target) for C_P = ``c_p``, in poisoning order."""
        return [(a, int(self.target[a])) for a in self.poisoned(c_p)]

    def to_json(self, c_p: int) -> list[dict]:
        """The pairs of :meth:`pairs` by name (a ``scatter`` target reads "(a random concept per pair)")."""
        names = self.names or tuple(str(i) for i in range(len(self.order)))
        return [{"concept": names[a], "target": names[b] if b != SCATTER else "(a random concept per pair)"}
                for a, b in self.pairs(c_p)]


def make_plan(concepts: int | Sequence[str], rule: str = "poisoned", *, seed: int, stream: PlanStream = HARNESS_STREAM,
              similarity: np.ndarray | None = None, paper_order: bool = False) -> PoisonPlan:
    """The seeded :class:`PoisonPlan` over ``concepts`` (a number K, or K names) under target ``rule``;
    ``similarity`` (K × K, larger = more alike) is required by, and only used by, ``nearest`` and ``farthest``;
    ``paper_order`` pins the paper's attacks first and its sentinels last (needs names)."""
    rule = target_rule(rule, what="target rule")
    names = None if isinstance(concepts, (int, np.integer)) else tuple(str(c) for c in concepts)
    k = int(concepts) if names is None else len(names)
    if k < 2:
        raise InputError("poisoning needs at least 2 concepts")
    sim = _checked_similarity(similarity, k) if rule in ("nearest", "farthest") else None
    rng = np.random.default_rng([seed, stream.salt])
    first, pinned, last = _paper_order(names, rule) if paper_order and names else ([], {}, [])
    middle = [i for i in range(k) if i not in first and i not in last]
    order = first + [middle[j] for j in rng.permutation(len(middle))] + last
    target = np.empty(k, dtype=np.int64)
    if rule == "poisoned":
        for i, a in enumerate(order):
            target[a] = order[i - 1] if i > 0 else order[1]
    elif rule in ("random", "scatter") and stream.by_concept:  # the simulator's: a scatter's first pair's target
        target[:] = (np.arange(k) + rng.integers(1, k, size=k)) % k
    elif rule == "scatter":
        target[:] = SCATTER
    elif rule == "random":
        for a in order:
            if a in pinned:
                target[a] = pinned[a]
            else:
                t = int(rng.integers(k - 1))
                target[a] = t + (t >= a)
    else:
        np.fill_diagonal(sim, -np.inf if rule == "nearest" else np.inf)
        target[:] = sim.argmax(axis=1) if rule == "nearest" else sim.argmin(axis=1)
    for a, b in pinned.items():  # the paper's attacks keep their named targets
        target[a] = b
    return PoisonPlan(tuple(int(a) for a in order), target, rule, int(seed), names)


def _checked_similarity(similarity: np.ndarray | None, k: int) -> np.ndarray:
    """A finite K × K similarity with its diagonal ruled out of both argmax and argmin: InputError otherwise."""
    if similarity is None:
        raise InputError("target rules nearest and farthest: each needs a concept similarity matrix")
    sim = np.array(similarity, dtype=np.float64)
    if sim.shape != (k, k) or not np.all(np.isfinite(sim)):
        raise InputError(f"the concept similarity must be a finite {k} x {k} matrix, got shape {sim.shape}")
    return sim


def _paper_order(names: tuple[str, ...], rule: str) -> tuple[list[int], dict[int, int], list[int]]:
    """The paper's pinned attacks (concepts first in the order, with their targets) and its sentinels (last)."""
    index = {name: i for i, name in enumerate(names)}
    first: list[int] = []
    pinned: dict[int, int] = {}
    for a, b in _PAPER_FIRST if rule in ("poisoned", "random") else ():
        if a in index and b in index and index[a] not in first and index[b] not in first:
            # under poisoned, b is poisoned right after a (and would target a): a keeps its named target
            first += [index[a], index[b]] if rule == "poisoned" else [index[a]]
            pinned[index[a]] = index[b]
    last = [index[s] for s in _PAPER_LAST if s in index and index[s] not in first]
    return first, pinned, last


def dirty_label_items(plan: PoisonPlan, c_p: int, per_concept: int, labels: np.ndarray, *, seed: int, salt: int,
                      show_target: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The items of C_P = ``c_p``'s extra pairs: (item index per pair, caption concept per pair), ``per_concept``
    pairs captioned as each poisoned concept A in plan order. With ``show_target`` each pair's item is one of the
    target B's (under ``scatter``, of its own uniformly drawn other concept), otherwise one of A's own. Items are
    drawn from ``default_rng([seed, salt, A])`` — independent of C_P — without replacement while the pool lasts.
    ``labels[i]`` is item i's concept."""
    check_scalar(per_concept, "poison pairs per concept", low=0, integer=True)
    items, concepts = [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.int64)]
    pools: dict[int, np.ndarray] = {}

    def pool(c: int) -> np.ndarray:
        if c not in pools:
            pools[c] = np.flatnonzero(labels == c)
        return pools[c]

    k = len(plan.order)
    for a, b in plan.pairs(c_p):
        rng = np.random.default_rng([seed, salt, a])
        if show_target and plan.rule == "scatter":
            drawn = rng.integers(k - 1, size=per_concept)
            drawn += drawn >= a
            items.append(np.array([rng.choice(pool(int(t))) for t in drawn], dtype=np.int64))
        else:
            src = pool(b if show_target else a)
            items.append(rng.choice(src, size=per_concept, replace=per_concept > len(src)))
        concepts.append(np.full(per_concept, a))
    return np.concatenate(items).astype(np.int64), np.concatenate(concepts).astype(np.int64)

