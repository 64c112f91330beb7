r"""Which concepts are poisoned, toward which targets, and their poison pairs.

A poisoning *plan* fixes, once per seed, the order in which concepts get poisoned and each concept's target; the
first C_P concepts of the order are the poisoned set at C_P. Sets are nested (the concepts poisoned at C_P = 10
are among those at C_P = 50) so a sweep over C_P only ever adds poison, and every concept's poison pairs are
drawn from their own random stream (seeded by the sweep seed and the concept), so the training set at a given
C_P does not depend on which other points were computed — resumed, parallel and Dask sweeps give identical
numbers.

Poison kinds (for poisoned concept A with target B):

- ``dirty``: the pair's text is a sample of A, its image a sample of B (dirty-label);
- ``shift``: the image is a sample of A moved a fraction λ (``shift``) of the way toward a sample of B,
  :math:`v = \mathrm{unit}((1-\lambda) v_A + \lambda v_B)` — the feature-space picture of a Nightshade-style
  perturbation: the image still nominally shows A but its features look like B.

Placement: ``add`` appends p poison pairs to A's m benign pairs; ``replace`` substitutes them for p of A's m
benign pairs (needs p ≤ m), keeping the data volume fixed.

Targets: ``random`` (uniform over the other concepts), ``nearest`` / ``farthest`` (the concept whose image
centroid is most / least similar to A's), ``scatter`` (a different random concept for *every* poison pair: a
mapping no model can learn, with the same volume and nearly the same AD as ``random``; the plan's ``target`` is
then only the first pair's).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from simulate.concepts import ConceptSpace, unit_rows
from implosion_base.errors import InputError
from implosion_base.validate import check_scalar

__all__ = ["PoisonConfig", "PoisonPlan", "make_plan", "poison_pairs", "benign_pairs"]

Kind = Literal["dirty", "shift"]
Placement = Literal["add", "replace"]
TargetRule = Literal["random", "nearest", "farthest", "scatter"]
TARGET_RULES: tuple[str, ...] = ("random", "nearest", "farthest", "scatter")

_BENIGN, _POISON, _ORDER = 0, 1, 2  # stream tags: the random streams never overlap


@dataclass(frozen=True)
class PoisonConfig:
    """How each poisoned concept is attacked."""

    poison_per_concept: int = 50
    kind: Kind = "dirty"
    shift: float = 0.5
    placement: Placement = "add"
    targets: TargetRule = "random"

    def __post_init__(self) -> None:
        check_scalar(self.poison_per_concept, "poison_per_concept", low=0, integer=True)
        if self.kind not in ("dirty", "shift"):
            raise InputError(f"kind must be 'dirty' or 'shift', got {self.kind!r}")
        check_scalar(self.shift, "shift", low=0.0, high=1.0)
        if self.placement not in ("add", "replace"):
            raise InputError(f"placement must be 'add' or 'replace', got {self.placement!r}")
        if self.targets not in TARGET_RULES:
            raise InputError(f"targets must be one of {', '.join(TARGET_RULES)}, got {self.targets!r}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PoisonPlan:
    """``order[k]`` is the k-th concept to be poisoned; ``target[c]`` is concept c's target if poisoned."""

    order: np.ndarray
    target: np.ndarray

    def poisoned(self, c_p: int) -> np.ndarray:
        """The poisoned concepts at C_P = ``c_p`` (a prefix of ``order``)."""
        return self.order[:c_p]


def make_plan(space: ConceptSpace, config: PoisonConfig, seed: int) -> PoisonPlan:
    """Draw the poisoning order and every concept's target (deterministic in ``seed``)."""
    k = space.config.n_concepts
    rng = np.random.default_rng([seed, _ORDER])
    order = rng.permutation(k)
    if config.targets in ("random", "scatter"):
        target = (np.arange(k) + rng.integers(1, k, size=k)) % k  # uniform over the other concepts
    else:
        sim = space.image_centroids @ space.image_centroids.T
        np.fill_diagonal(sim, -np.inf if config.targets == "nearest" else np.inf)
        target = sim.argmax(axis=1) if config.targets == "nearest" else sim.argmin(axis=1)
    return PoisonPlan(order, target.astype(np.int64))


def benign_pairs(space: ConceptSpace, per_concept: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``per_concept`` correctly labelled pairs of every concept, grouped by concept: (text, image, concept)."""
    labels = np.repeat(np.arange(space.config.n_concepts), per_concept)
    t, v = space.sample(labels, labels, np.random.default_rng([seed, _BENIGN]))
    return t, v, labels


def poison_pairs(
    space: ConceptSpace, plan: PoisonPlan, config: PoisonConfig, concept: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """The p poison pairs of ``concept`` (text of the concept, image of / shifted toward its target)."""
    p = config.poison_per_concept
    rng = np.random.default_rng([seed, _POISON, int(concept)])
    a = np.full(p, concept)
    b = np.full(p, plan.target[concept])
    if config.targets == "scatter" and p > 1:
        k = space.config.n_concepts
        b[1:] = (concept + rng.integers(1, k, size=p - 1)) % k  # every other pair: its own random target
    if config.kind == "dirty":
        return space.sample(a, b, rng)
    t, v_a = space.sample(a, a, rng)
    _, v_b = space.sample(b, b, rng)
    return t, unit_rows((1.0 - config.shift) * v_a + config.shift * v_b)
