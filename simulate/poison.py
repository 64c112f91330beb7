r"""The simulator's poison pairs: synthetic dirty-label and feature-shift pairs in a concept space.

Which concepts are poisoned, in which order and toward which targets is the toolkit's one plan
(:class:`theory.poisoning.PoisonPlan`), drawn here from the simulator's stream with the concept space's image
centroids as the similarity (:func:`plan_for_space`). Sets are nested (the concepts poisoned at C_P = 10 are among
those at C_P = 50) so a sweep over C_P only ever adds poison, and every concept's poison pairs are drawn from their
own random stream (seeded by the sweep seed and the concept), so the training set at a given C_P does not depend
on which other points were computed — resumed, parallel and Dask sweeps give identical numbers.

Poison kinds (for poisoned concept A with target B):

- ``dirty``: the pair's text is a sample of A, its image a sample of B (dirty-label);
- ``shift``: the image is a sample of A moved a fraction λ (``shift``) of the way toward a sample of B,
  :math:`v = \mathrm{unit}((1-\lambda) v_A + \lambda v_B)` — the feature-space picture of a Nightshade-style
  perturbation: the image still nominally shows A but its features look like B.

Placement: ``add`` appends p poison pairs to A's m benign pairs; ``replace`` substitutes them for p of A's m
benign pairs (needs p ≤ m), keeping the data volume fixed.

Targets (:data:`theory.poisoning.TARGET_RULES`): ``poisoned`` (among the poisoned concepts), ``random`` (uniform
over the other concepts), ``nearest`` / ``farthest`` (the concept whose image centroid is most / least similar to
A's), ``scatter`` (a different random concept for *every* poison pair: a mapping no model can learn, with the same
volume and nearly the same AD as ``random``; the plan's ``target`` is then only the first pair's).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from implosion_base.errors import InputError
from implosion_base.validate import check_scalar, unit_rows
from simulate.concepts import ConceptSpace
from theory.poisoning import SIMULATOR_STREAM, TARGET_RULES, PoisonPlan, make_plan, target_rule

__all__ = ["PoisonConfig", "TARGET_RULES", "plan_for_space", "poison_pairs", "benign_pairs"]

Kind = Literal["dirty", "shift"]
Placement = Literal["add", "replace"]

_BENIGN, _POISON = 0, 1  # stream tags (the plan's is SIMULATOR_STREAM.salt = 2): the random streams never overlap


@dataclass(frozen=True)
class PoisonConfig:
    """How each poisoned concept is attacked."""

    poison_per_concept: int = 50
    kind: Kind = "dirty"
    shift: float = 0.5
    placement: Placement = "add"
    targets: str = "random"

    def __post_init__(self) -> None:
        check_scalar(self.poison_per_concept, "poison_per_concept", low=0, integer=True)
        if self.kind not in ("dirty", "shift"):
            raise InputError(f"kind must be 'dirty' or 'shift', got {self.kind!r}")
        check_scalar(self.shift, "shift", low=0.0, high=1.0)
        if self.placement not in ("add", "replace"):
            raise InputError(f"placement must be 'add' or 'replace', got {self.placement!r}")
        object.__setattr__(self, "targets", target_rule(self.targets, what="targets"))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def plan_for_space(space: ConceptSpace, config: PoisonConfig, seed: int) -> PoisonPlan:
    """The poisoning order and every concept's target (deterministic in ``seed``): the simulator's stream, the
    image centroids' cosines as the similarity of ``nearest`` / ``farthest``."""
    sim = space.image_centroids @ space.image_centroids.T if config.targets in ("nearest", "farthest") else None
    return make_plan(space.config.n_concepts, config.targets, seed=seed, stream=SIMULATOR_STREAM, similarity=sim)


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
