"""A poison detector from Alignment Difficulty: flag the training pairs that carry the most AD.

:func:`theory.ad.pair_attribution` splits the AD of a training mix into per-pair shares,
c_i = α(1 − s_i)/n + (1 − α)/n² · Σ_{j≠i} |cos(v_i, v_j) − cos(t_i, t_j)|, Σ_i c_i = AD: a pair whose image and
caption disagree (low s_i) or whose neighbourhood in the image graph differs from its neighbourhood in the text
graph carries a large share. Ranking pairs by c_i and flagging the top ones is the defence the paper's analysis
suggests; how well it works is measured against the known poisons of an experiment:

- precision@k and recall@k with k the true number of poison pairs (they coincide at that k),
- average precision AP = Σ_k P(k)·[pair k is a poison] / #poisons over the ranking (area under the
  precision–recall curve; a random ranking scores the poison fraction),
- the precision–recall curve itself, at every rank where a poison is found.

Shared by the empirical harness (``empirical.evaluate``, ``python -m empirical.defence``) and the dataset audit
(``dataset_audit --validate``). The embeddings come from the judge (clean data only) or any CLIP-like model: a Nightshade-style poison looks like
its captioned concept to such a model, so it is expected to hide from this detector while dirty-label pairs do not.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from theory.ad import pair_attribution, ranking
from implosion_base.errors import InputError


@dataclass(frozen=True)
class Detection:
    """Ranking quality of per-pair scores against the true poison mask (see the module docstring)."""

    n_pairs: int
    n_poison: int
    precision_at_k: float
    recall_at_k: float
    average_precision: float
    precision: np.ndarray  # at each rank where a poison is found
    recall: np.ndarray

    def summary(self) -> dict[str, float]:
        return {"detect_ap": self.average_precision, "detect_p_at_k": self.precision_at_k,
                "detect_base_rate": self.n_poison / self.n_pairs if self.n_pairs else float("nan")}


def rank_quality(scores: np.ndarray, is_poison: np.ndarray) -> Detection:
    """Precision/recall of flagging pairs in decreasing ``scores`` (ties by index) against ``is_poison``."""
    scores = np.asarray(scores, dtype=np.float64)
    truth = np.asarray(is_poison, dtype=bool)
    if scores.shape != truth.shape or scores.ndim != 1:
        raise InputError("scores and the poison mask must be 1-D arrays of the same length")
    n, m = len(scores), int(truth.sum())
    if m == 0:
        nan = float("nan")
        return Detection(n, 0, nan, nan, nan, np.zeros(0), np.zeros(0))
    order = ranking(scores)
    hits = truth[order]
    found = np.cumsum(hits)
    ranks = np.flatnonzero(hits) + 1
    precision = found[hits] / ranks
    recall = found[hits] / m
    at_k = float(found[m - 1] / m)
    return Detection(n, m, at_k, at_k, float(precision.sum() / m), precision, recall)


def detect_poisons(text: np.ndarray, image: np.ndarray, is_poison: np.ndarray, **ad_options) -> Detection:
    """:func:`rank_quality` of the AD attribution of the pairs (unit text/image embeddings, n × d)."""
    return rank_quality(pair_attribution(text, image, **ad_options).contribution, is_poison)


def concept_disagreement(image: np.ndarray, concept: np.ndarray) -> np.ndarray:
    r"""Each pair's concept disagreement: how much nearer its image lies to another concept's images than to the
    images of the concept its caption names,

    .. math::

        g_i = \max_k \cos(v_i, \bar v_k) - \cos(v_i, \bar v_{c_i}) \;\ge 0, \qquad
        \bar v_k = \mathrm{unit}\Big(\sum_{j: c_j = k} v_j\Big),

    with :math:`c_i` the concept of pair i's caption (0..K−1). A dirty-label pair (caption of A, image of B) scores
    about :math:`\cos(v, \bar v_B) - \cos(v, \bar v_A) > 0`; a clean pair of a well-separated concept scores 0. It
    uses the captions' concepts, which the pair cosine and the AD share do not; its centroids include the poisons, so
    it weakens as they become a large share of a concept's pairs."""
    v = np.asarray(image, dtype=np.float64)
    c = np.asarray(concept)
    if v.ndim != 2 or c.shape != (len(v),):
        raise InputError(f"concept_disagreement needs n x d images and n concepts, got {v.shape} and {c.shape}")
    if c.size and (c.min() < 0 or not np.issubdtype(c.dtype, np.integer)):
        raise InputError("concepts must be integers 0..K-1")
    k = int(c.max()) + 1 if c.size else 0
    centres = np.zeros((k, v.shape[1]))
    np.add.at(centres, c, v)
    norms = np.linalg.norm(centres, axis=1, keepdims=True)
    centres = np.divide(centres, norms, out=np.zeros_like(centres), where=norms > 0)
    sims = v @ centres.T
    return sims.max(axis=1) - sims[np.arange(len(v)), c]
