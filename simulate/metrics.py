r"""What a sweep point measures (DESIGN.md §4). Prompts are the concepts' text centroids ("a photo of a c");
outputs are compared with the image centroids by cosine.

- ``benign_acc`` — unpoisoned concepts whose output is nearest to their own image centroid;
- ``attack_success`` — poisoned concepts whose output is nearest to their target's image centroid (NaN at C_P=0);
- ``poisoned_acc`` — poisoned concepts still nearest to their own centroid;
- ``meaningless_rate`` — unpoisoned concepts whose output has cosine below ``meaningless_cos`` to *every* image
  centroid: an "undefined visual representation". Default 0.7: an image sample of a concept has cosine ≈ 0.93
  with its centroid (1/sqrt(1 + 0.4²), image_spread 0.4), the mean of all images ≈ 0.5 with every centroid (separation 0.75), so
  0.7 is clearly neither a concept nor nothing;
- ``top_cos`` — mean of that best cosine over unpoisoned concepts (the graded version);
- ``distortion`` — mean cosine distance between an unpoisoned concept's output now and under the clean model
  (how far poisoning moved prompts it never touched);
- ``align_loss`` — the solver's training loss (mean squared residual per pair);
- ``concept_attention`` — attention solver only: mean attention mass on the concept token, unpoisoned prompts.

AD, D_fea and D_stru of the training set come from :mod:`theory.ad` (through the sweep's training set).
"""

from __future__ import annotations

import numpy as np

from simulate.concepts import ConceptSpace, unit_rows
from simulate.poison import PoisonPlan

__all__ = ["evaluate", "METRIC_NAMES"]

METRIC_NAMES = ("benign_acc", "attack_success", "poisoned_acc", "meaningless_rate", "top_cos", "distortion",
                "align_loss", "concept_attention")


def _mean(x: np.ndarray) -> float:
    return float(np.mean(x)) if x.size else float("nan")


def evaluate(model, space: ConceptSpace, plan: PoisonPlan, c_p: int, clean_outputs: np.ndarray,
             meaningless_cos: float = 0.7) -> dict[str, float]:
    """All metrics of one fitted model at C_P = ``c_p`` (see module docstring)."""
    k = space.config.n_concepts
    prompts = space.text_centroids
    out = unit_rows(model.predict(prompts))
    sim = out @ space.image_centroids.T
    nearest = sim.argmax(axis=1)
    poisoned = np.zeros(k, dtype=bool)
    poisoned[plan.poisoned(c_p)] = True
    benign = ~poisoned
    own = np.arange(k)
    top = sim.max(axis=1)
    attention = model.concept_attention(prompts)
    return {
        "benign_acc": _mean(nearest[benign] == own[benign]),
        "attack_success": _mean(nearest[poisoned] == plan.target[poisoned]),
        "poisoned_acc": _mean(nearest[poisoned] == own[poisoned]),
        "meaningless_rate": _mean(top[benign] < meaningless_cos),
        "top_cos": _mean(top[benign]),
        "distortion": _mean(1.0 - np.sum(out[benign] * unit_rows(clean_outputs[benign]), axis=1)),
        "align_loss": float(model.train_loss),
        "concept_attention": float("nan") if attention is None else _mean(attention[benign]),
    }
