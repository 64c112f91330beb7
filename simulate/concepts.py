r"""Concept embeddings in a joint text/image space, shaped like CLIP's (docs/design.md §5).

Generative model (all directions unit vectors in :math:`\mathbb R^d`):

- modality means :math:`g_t` (text) and :math:`g_v = \cos\theta\, g_t + \sin\theta\, g_\perp` (image), with
  :math:`\theta = \text{modality\_gap}\cdot\pi/2` — CLIP's text and image embeddings sit in two separate cones;
- per concept c a semantic direction :math:`z_c` (shared by text and image) and an image-only direction
  :math:`z'_c`, all drawn at random;
- text centroid :math:`t_c = \sqrt{w}\, g_t + \sqrt{1-w}\, z_c` (w = ``template_weight``: every prompt
  "a photo of a …" shares the template, so different concepts' prompts have cosine ≈ w);
- image centroid :math:`v_c = \sqrt{w_v}\, g_v + \sqrt{1-w_v}\,(\rho z_c + \sqrt{1-\rho^2}\, z'_c)` with
  :math:`w_v` = 1 − ``separation`` and ρ = ``alignment`` (how much of an image's concept signal the text predicts);
- a sample (training pair) of concept c: :math:`t = \mathrm{unit}(t_c + \sigma_t\varepsilon)`,
  :math:`v = \mathrm{unit}(v_c + \sigma_v\varepsilon')` with :math:`\varepsilon \sim N(0, I_d/d)` so that
  :math:`\sigma` is the noise-to-signal norm ratio (``text_spread``, ``image_spread``).

Statistics of the defaults (K = 1000, d = 128, seed 0; measured by :func:`space_statistics`, a test pins the
ranges): text cosine between different concepts' prompts 0.750 (centroids) / 0.721 (samples), matched text–image
cosine of a pair 0.303 (centroids) / 0.276 (samples), image cosine between different concepts 0.250, between two
images of one concept 0.862 — CLIP-like, so the LAION rescaling of AD (clip(4(s − 0.2), 0, 1)) sees pair
scores ≈ 0.3.

Why d = 128 by default: the implosion regime is *capacity below the number of concepts*. A linear text→image map
in d = 512 with K = 1000 concepts separates every concept and absorbs any number of poisons without collateral
damage; at d = 128 (and in the capacity-limited solver) conflicting supervision must spill over onto other
concepts (see docs/simulation.md). Both are one flag away.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from implosion_base.validate import check_scalar, unit_rows  # rows here are never zero: a template component

__all__ = ["ConceptConfig", "ConceptSpace", "make_space", "space_statistics"]


@dataclass(frozen=True)
class ConceptConfig:
    """Knobs of the concept space (see the module docstring for the model)."""

    n_concepts: int = 1000
    dim: int = 128
    template_weight: float = 0.75
    separation: float = 0.75
    alignment: float = 0.7
    modality_gap: float = 1.0
    text_spread: float = 0.2
    image_spread: float = 0.4

    def __post_init__(self) -> None:
        check_scalar(self.n_concepts, "n_concepts", low=2, integer=True)
        check_scalar(self.dim, "dim", low=3, integer=True)
        for name in ("template_weight", "separation", "alignment", "modality_gap"):
            check_scalar(getattr(self, name), name, low=0.0, high=1.0)
        for name in ("text_spread", "image_spread"):
            check_scalar(getattr(self, name), name, low=0.0)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ConceptSpace:
    """Concept centroids (unit rows, K × d) and the noise model for samples."""

    config: ConceptConfig
    text_centroids: np.ndarray
    image_centroids: np.ndarray

    def sample(self, text_concepts: np.ndarray, image_concepts: np.ndarray,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """One training pair per entry: text drawn around ``text_centroids[text_concepts]``, image around
        ``image_centroids[image_concepts]`` (equal for benign pairs; different for dirty-label poisons)."""
        cfg = self.config
        n, d = len(text_concepts), cfg.dim
        scale = 1.0 / np.sqrt(d)
        t = self.text_centroids[text_concepts] + cfg.text_spread * scale * rng.standard_normal((n, d))
        v = self.image_centroids[image_concepts] + cfg.image_spread * scale * rng.standard_normal((n, d))
        return unit_rows(t), unit_rows(v)


def make_space(config: ConceptConfig, seed: int) -> ConceptSpace:
    """Draw a concept space (deterministic in ``seed``)."""
    rng = np.random.default_rng(seed)
    k, d = config.n_concepts, config.dim
    # orthonormal modality directions, then concept directions orthogonal to both
    basis, _ = np.linalg.qr(rng.standard_normal((d, 2)))
    g_t, g_perp = basis[:, 0], basis[:, 1]
    theta = config.modality_gap * np.pi / 2
    g_v = np.cos(theta) * g_t + np.sin(theta) * g_perp
    proj = np.eye(d) - basis @ basis.T

    def directions(count: int) -> np.ndarray:
        return unit_rows(rng.standard_normal((count, d)) @ proj)

    z, z_img = directions(k), directions(k)
    w, w_v, rho = config.template_weight, 1.0 - config.separation, config.alignment
    text = unit_rows(np.sqrt(w) * g_t + np.sqrt(1 - w) * z)
    concept_img = rho * z + np.sqrt(1 - rho**2) * z_img
    image = unit_rows(np.sqrt(w_v) * g_v + np.sqrt(1 - w_v) * unit_rows(concept_img))
    return ConceptSpace(config, text, image)


def space_statistics(space: ConceptSpace, seed: int = 0, per_concept: int = 2) -> dict[str, float]:
    """Mean cosines of the space: across concepts (text, image), matched text–image (centroids and samples),
    within a concept (image samples)."""
    k = space.config.n_concepts
    t, v = space.text_centroids, space.image_centroids
    off = ~np.eye(k, dtype=bool)
    labels = np.repeat(np.arange(k), per_concept)
    st, sv = space.sample(labels, labels, np.random.default_rng(seed))
    pairs = np.arange(0, labels.size, per_concept)
    same = np.einsum("ij,ij->i", sv[pairs], sv[pairs + 1]) if per_concept > 1 else np.array([np.nan])
    first = st[pairs]
    return {
        "text_across_centroids": float((t @ t.T)[off].mean()),
        "text_across_samples": float((first @ first.T)[off].mean()),
        "image_across_centroids": float((v @ v.T)[off].mean()),
        "matched_centroids": float(np.einsum("ij,ij->i", t, v).mean()),
        "matched_samples": float(np.einsum("ij,ij->i", st, sv).mean()),
        "image_within_samples": float(same.mean()),
    }
