r"""Calibrate the simulator to a real model: its concept geometry from measured similarities, its capacity from
the clean model's competence. Nothing here looks at a poisoned result.

**Geometry.** For unit text/image embeddings of labelled training pairs (concept index per pair) we measure six
mean cosines: text–text and image–image within a concept and across concepts, matched text–image (same pair)
and mismatched text–image (different concepts). For :mod:`simulate.concepts`' model with noise ratios
:math:`\sigma_t,\sigma_v` (a sample's squared norm before normalising is :math:`\approx 1+\sigma^2`), template
weight w, image template weight :math:`w_v = 1-\text{separation}`, modality angle θ and alignment ρ, in high
dimension (concept directions nearly orthogonal):

.. math::
    \text{text}_\text{within} = \tfrac{1}{1+\sigma_t^2},\quad \text{text}_\text{across} = \tfrac{w}{1+\sigma_t^2},
    \quad \text{image}_\text{within} = \tfrac{1}{1+\sigma_v^2},\quad
    \text{image}_\text{across} = \tfrac{w_v}{1+\sigma_v^2},

.. math::
    \text{mismatched} = \tfrac{\sqrt{w w_v}\cos\theta}{N},\quad
    \text{matched} = \text{mismatched} + \tfrac{\sqrt{(1-w)(1-w_v)}\,\rho}{N},\quad
    N = \sqrt{(1+\sigma_t^2)(1+\sigma_v^2)},

which :func:`fit_geometry` inverts in closed form (each parameter clipped to its range; the fit's residual is
reported by regenerating a space and measuring it again).

**Capacity.** A real cross-attention model has no "d". We map it by competence: the simulator's ridge map in d
dimensions reads its clean concepts right with accuracy acc(d), increasing in d; given the real clean model's
measured unpoisoned accuracy A, :func:`capacity_for_accuracy` returns the d at which acc(d) first reaches A
(log-linear interpolation between grid points). A LoRA adapter or a smaller UNet is calibrated the same way from
its own clean accuracy; no rank-to-d formula is assumed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np

from simulate.concepts import ConceptConfig, make_space
from simulate.engine import SweepConfig, run_seed
from implosion_base.validate import check_scalar, unit_rows
from implosion_base.errors import InputError

__all__ = ["Geometry", "measure_geometry", "fit_geometry", "geometry_of_space", "capacity_for_accuracy",
           "clean_accuracy", "DIM_GRID"]

DIM_GRID: tuple[int, ...] = (3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)


@dataclass(frozen=True)
class Geometry:
    """Mean cosines of a set of labelled pairs (see the module docstring)."""

    text_within: float
    text_across: float
    image_within: float
    image_across: float
    matched: float
    mismatched: float

    def as_dict(self) -> dict[str, float]:
        return {k: float(getattr(self, k)) for k in self.__dataclass_fields__}


def _mean_cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.sum(a * b, axis=1))) if len(a) else float("nan")


def measure_geometry(text: np.ndarray, image: np.ndarray, labels: np.ndarray, *, samples: int = 200_000,
                     seed: int = 0) -> Geometry:
    """The six mean cosines of unit ``text``/``image`` rows with concept ``labels``, from ``samples`` random index
    pairs of each kind (within: same label, different rows; across: different labels)."""
    text, image = np.asarray(text, dtype=np.float64), np.asarray(image, dtype=np.float64)
    labels = np.asarray(labels)
    n = len(labels)
    if text.shape != image.shape or text.ndim != 2 or n != text.shape[0]:
        raise InputError(f"text {text.shape}, image {image.shape} and labels ({n}) do not match")
    if len(np.unique(labels)) < 2:
        raise InputError("need pairs of at least 2 concepts to measure the geometry")
    text, image = unit_rows(text), unit_rows(image)
    rng = np.random.default_rng(seed)
    i, j = rng.integers(0, n, size=(2, samples))
    across = labels[i] != labels[j]
    # within: a random partner among the same concept's other rows
    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]
    start = np.searchsorted(sorted_labels, labels[i], side="left")
    count = np.searchsorted(sorted_labels, labels[i], side="right") - start
    has = count > 1
    k = start[has] + rng.integers(0, np.maximum(count[has] - 1, 1))
    partner = order[k]
    partner = np.where(partner == i[has], order[start[has] + count[has] - 1], partner)
    wi = i[has]
    if not len(wi):
        raise InputError("no concept has two pairs: within-concept similarity cannot be measured")
    return Geometry(
        text_within=_mean_cos(text[wi], text[partner]), text_across=_mean_cos(text[i[across]], text[j[across]]),
        image_within=_mean_cos(image[wi], image[partner]),
        image_across=_mean_cos(image[i[across]], image[j[across]]),
        matched=_mean_cos(text, image), mismatched=_mean_cos(text[i[across]], image[j[across]]),
    )


def fit_geometry(g: Geometry, n_concepts: int, dim: int) -> ConceptConfig:
    """The concept-space parameters whose statistics are ``g`` (closed-form inversion, clipped to valid ranges)."""
    check_scalar(g.text_within, "the mean within-concept text cosine", low=0.0, high=1.0, low_open=True)
    check_scalar(g.image_within, "the mean within-concept image cosine", low=0.0, high=1.0, low_open=True)
    clip = lambda x, lo=0.0, hi=1.0: float(min(max(x, lo), hi))  # noqa: E731
    s_t2, s_v2 = 1.0 / g.text_within - 1.0, 1.0 / g.image_within - 1.0
    w = clip(g.text_across / g.text_within, 0.0, 0.999)
    w_v = clip(g.image_across / g.image_within, 0.0, 0.999)
    norm = math.sqrt((1 + s_t2) * (1 + s_v2))
    cos_theta = clip(g.mismatched * norm / math.sqrt(w * w_v), -1.0, 1.0) if w * w_v > 0 else 0.0
    rho = clip((g.matched - g.mismatched) * norm / math.sqrt((1 - w) * (1 - w_v)))
    return ConceptConfig(n_concepts=n_concepts, dim=dim, template_weight=w, separation=1.0 - w_v, alignment=rho,
                         modality_gap=math.acos(cos_theta) / (math.pi / 2), text_spread=math.sqrt(s_t2),
                         image_spread=math.sqrt(s_v2))


def geometry_of_space(config: ConceptConfig, per_concept: int, seed: int = 0) -> Geometry:
    """The six cosines measured on ``per_concept`` benign samples of every concept of a simulated space."""
    from simulate.poison import benign_pairs

    space = make_space(config, seed)
    t, v, labels = benign_pairs(space, per_concept, seed)
    return measure_geometry(t, v, labels, seed=seed)


def clean_accuracy(config: SweepConfig, seeds: Sequence[int]) -> float:
    """Mean unpoisoned accuracy of the clean (C_P = 0) model over ``seeds``."""
    return float(np.mean([run_seed(config, s, [0], track_ad=False)[0]["unpoisoned_acc"] for s in seeds]))


def capacity_for_accuracy(config: SweepConfig, target: float, seeds: Sequence[int] = (0, 1, 2),
                          grid: Sequence[int] = DIM_GRID) -> tuple[int, list[tuple[int, float]]]:
    """The d at which the clean ridge model's accuracy first reaches ``target`` (log-linear interpolation on
    ``grid``; the largest grid d when never), and the measured (d, accuracy) curve."""
    check_scalar(target, "--clean-acc", low=0.0, high=1.0, low_open=True)
    curve: list[tuple[int, float]] = []
    for d in grid:
        acc = clean_accuracy(replace(config, concepts=replace(config.concepts, dim=d)), seeds)
        curve.append((d, acc))
        if acc >= target:
            break
    d_hi, a_hi = curve[-1]
    if a_hi < target or len(curve) == 1:
        return d_hi, curve
    d_lo, a_lo = curve[-2]
    frac = (target - a_lo) / (a_hi - a_lo) if a_hi > a_lo else 1.0
    d = math.exp(math.log(d_lo) + frac * (math.log(d_hi) - math.log(d_lo)))
    return max(d_lo, min(d_hi, int(round(d)))), curve
