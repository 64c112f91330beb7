r"""What a sweep point measures. Prompts are the concepts' text centroids ("a photo of a c"); outputs are
compared with the image centroids by cosine, through the shared definitions of :mod:`theory.implosion`.

- ``unpoisoned_acc`` — unpoisoned concepts whose output is nearest to their own image centroid (top-1);
- ``attack_success`` — poisoned concepts whose output is nearest to their target's image centroid (NaN at C_P=0);
- ``poisoned_acc`` — poisoned concepts still nearest to their own centroid;
- ``meaningless_rate`` — unpoisoned concepts whose output's best concept stands out no more than it does for an
  image of no concept (salience below the null level; :mod:`theory.implosion` says why this and not a cosine
  threshold);
- ``own_sim``, ``margin``, ``salience`` — the graded measures of :mod:`theory.implosion` over unpoisoned
  concepts (cosine to the own centroid; its lead over the best other concept; how far the best concept stands
  out);
- ``top_cos`` — mean best cosine to any centroid over unpoisoned concepts;
- ``distortion`` — mean cosine distance between an unpoisoned concept's output now and under the clean model
  (how far poisoning moved prompts it never touched);
- ``align_loss`` — the solver's training loss (mean squared residual per pair);
- ``concept_attention`` — attention solver only: mean attention mass on the concept token, unpoisoned prompts.

AD, D_fea and D_stru of the training set come from :mod:`theory.ad` (through the sweep's training set).
"""

from __future__ import annotations

import numpy as np

from implosion_base.validate import unit_rows
from simulate.concepts import ConceptSpace
from simulate.poison import PoisonPlan
from theory.implosion import ImplosionReference, implosion_measures

__all__ = ["evaluate", "METRIC_NAMES"]

METRIC_NAMES = ("unpoisoned_acc", "attack_success", "poisoned_acc", "meaningless_rate", "own_sim", "margin",
                "salience", "top_cos", "distortion", "align_loss", "concept_attention")


def _mean(x: np.ndarray) -> float:
    return float(np.mean(x)) if x.size else float("nan")


def evaluate(model, space: ConceptSpace, plan: PoisonPlan, c_p: int, clean_outputs: np.ndarray,
             reference: ImplosionReference) -> dict[str, float]:
    """All metrics of one fitted model at C_P = ``c_p`` (see module docstring); ``reference`` is built from the
    space's image centroids (:func:`theory.implosion.make_reference`)."""
    k = space.config.n_concepts
    prompts = space.text_centroids
    out = unit_rows(model.predict(prompts))
    sim = out @ space.image_centroids.T
    nearest = sim.argmax(axis=1)
    poisoned = np.zeros(k, dtype=bool)
    poisoned[plan.poisoned(c_p)] = True
    benign = ~poisoned
    own = np.arange(k)
    unpoisoned = implosion_measures(out[benign], own[benign], reference)
    attention = model.concept_attention(prompts)
    return {
        "unpoisoned_acc": unpoisoned["acc"],
        "attack_success": _mean(nearest[poisoned] == plan.target[poisoned]),
        "poisoned_acc": _mean(nearest[poisoned] == own[poisoned]),
        "meaningless_rate": unpoisoned["meaningless_rate"],
        "own_sim": unpoisoned["own_sim"],
        "margin": unpoisoned["margin"],
        "salience": unpoisoned["salience"],
        "top_cos": _mean(sim.max(axis=1)[benign]),
        "distortion": _mean(1.0 - np.sum(out[benign] * unit_rows(clean_outputs[benign]), axis=1)),
        "align_loss": float(model.train_loss),
        "concept_attention": float("nan") if attention is None else _mean(attention[benign]),
    }
