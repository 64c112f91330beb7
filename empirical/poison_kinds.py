"""The registry of poison kinds: what a point adds to the clean training pairs (docs/design.md, "Extending").

Every kind is a function ``(PoisonRequest) -> ExtraPairs`` registered in :data:`POISON_KINDS` under the name that
``--poison-type`` takes; :func:`control` is the same-volume control of every kind (images of A captioned A).

- ``dirty`` (:func:`dirty_label`): for each (A, B) of the plan, p images of B captioned as A;
- ``nightshade``: p clean images of A, each perturbed (L∞ ≤ ε) so that its VAE latent approaches an image of B,
  captioned as A (:func:`empirical.poisons.nightshade_pairs`).

An :class:`ExtraPairs` batch carries its pairs' images (indices into the clean images, then its own new pixels),
caption concepts, which pairs are poisons, and its size report (the ``poison_*`` columns of results.csv: NaN when
the kind does not change pixels). Adding a kind is one function here plus its row in :data:`POISON_KINDS`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from empirical.poisons import control_pairs, nightshade_pairs, poison_pairs
from theory.poisoning import PoisonPlan
from implosion_base.progress import Progress

#: The size-report columns of a batch (results.csv), NaN unless the kind measures them.
SIZE_REPORT: tuple[str, ...] = ("poison_latent_ratio", "poison_linf", "poison_psnr")


@dataclass(frozen=True)
class PoisonRequest:
    """What a kind needs to make the extra pairs of one point: the plan, C_P, p pairs per poisoned concept, the
    clean images and labels, the seed; ``vae``, ``nightshade`` (config), ``cache_dir`` and ``progress`` for kinds
    that optimise pixels."""

    plan: PoisonPlan
    c_p: int
    p: int
    images: np.ndarray
    labels: np.ndarray
    seed: int
    vae: Any = None
    nightshade: Any = None
    cache_dir: Path | None = None
    progress: Progress | bool = False
    control: str = "own"  # which control a control point draws (empirical.poisons.control_pairs)


@dataclass
class ExtraPairs:
    """Pairs added to the clean set. ``image_idx`` < number of clean images index the clean images, the rest
    index ``new_pixels`` (images made for this batch); ``concepts`` is each pair's caption concept."""

    image_idx: np.ndarray
    concepts: np.ndarray
    is_poison: np.ndarray
    new_pixels: np.ndarray | None = None
    report: dict[str, float] = field(default_factory=lambda: {k: float("nan") for k in SIZE_REPORT})

    def __len__(self) -> int:
        return int(self.concepts.shape[0])

    def pixels(self, clean: np.ndarray) -> np.ndarray:
        """The images that ``image_idx`` indexes: the clean images, then this batch's new pixels."""
        return clean if self.new_pixels is None or not len(self.new_pixels) else np.concatenate([clean,
                                                                                                 self.new_pixels])


def dirty_label(req: PoisonRequest) -> ExtraPairs:
    """Dirty-label poisons: images of the target B captioned as the poisoned concept A."""
    idx, concepts = poison_pairs(req.plan, req.c_p, req.p, req.labels, seed=req.seed)
    return ExtraPairs(idx, concepts, np.ones(len(concepts), bool))


def nightshade(req: PoisonRequest) -> ExtraPairs:
    """Nightshade-style poisons: images of A perturbed toward B in the VAE's latent space, captioned as A."""
    shaded, concepts, _, rep = nightshade_pairs(req.plan, req.c_p, req.p, req.images, req.labels, req.vae,
                                                req.nightshade, seed=req.seed, cache_dir=req.cache_dir,
                                                progress=req.progress)
    batch = ExtraPairs(len(req.images) + np.arange(len(shaded)), concepts, np.ones(len(concepts), bool), shaded)
    if len(shaded):
        s = rep.summary()
        batch.report = {"poison_latent_ratio": s["latent_ratio"], "poison_linf": s["linf"], "poison_psnr": s["psnr"]}
    return batch


def control(req: PoisonRequest) -> ExtraPairs:
    """The same-volume control of every kind: as many extra pairs per poisoned concept A, images of A captioned A
    (no poison)."""
    idx, concepts = control_pairs(req.plan, req.c_p, req.p, req.labels, seed=req.seed, images=req.control)
    return ExtraPairs(idx, concepts, np.zeros(len(concepts), bool))


POISON_KINDS: dict[str, Callable[[PoisonRequest], ExtraPairs]] = {"dirty": dirty_label, "nightshade": nightshade}


def recorded_poison_type(kind: str, poison_type: str, c_p: int) -> str:
    """The poison type a point of ``kind`` records: a control, and the clean point (C_P = 0), are the same for
    every poison type and record ``none``."""
    return "none" if kind == "control" or c_p == 0 else poison_type


def extra_pairs(kind: str, poison_type: str, req: PoisonRequest) -> tuple[str, ExtraPairs]:
    """The extra pairs of a point of ``kind`` (poisoned or control) and the poison type it records
    (:func:`recorded_poison_type`)."""
    recorded = recorded_poison_type(kind, poison_type, req.c_p)
    if kind == "control":
        return recorded, control(req)
    if recorded == "none":
        return recorded, dirty_label(req)  # no poisoned concept: no pairs
    return recorded, POISON_KINDS[poison_type](req)
