r"""The meaningless rate of generated images, calibrated on what a competent generator draws and checked on
images of known truth; and the off-render rate, the same rule calibrated on clean renders.

An image x is **meaningless** when the judge can place it near no concept, by either of two readings, each with
a threshold set by reference images:

- *far*: its judge feature :math:`f(x)` is farther from every concept's mean clean-render feature :math:`\mu_c`
  (cosine distance :math:`d(x) = \min_c 1-\cos(f(x), \mu_c)`) than all but a share q of the references;
- *unsure*: the judge's top zero-shot probability :math:`\max_c P(c \mid x)` is lower than all but a share q of
  the references'.

With q = 0.01 for each, at most about 2 % of images distributed like the references are flagged. Which images are
the references decides what the rate means:

- :func:`calibrate_on_samples` — the harness's **meaningless rate** (``unpoisoned_meaningless``): the references
  are the clean base model's own samples of every concept, at seeds the evaluation never uses
  (:mod:`empirical.clean_samples`); the far reading takes their distance d to the nearest concept mean, the very
  statistic it tests. A model that draws like a competent generator of its architecture reads about 2 %;
  noise, blank canvases and concept averages read near 1 (``python -m empirical.known_truth --calibrate-on
  samples`` measures both, on held-out samples too).
- :func:`calibrate` — the **off-render rate** (``unpoisoned_off_render``): the references are held-out clean
  renders, the far reading their leave-one-out distance to their own concept's mean (a reference does not pull its
  own mean toward itself). It separates noise from renders (docs/empirical.md, "The meaningless rate on known
  truth"), but renders are read more surely and sit nearer the means than anything the generator draws: it
  flags a third to a half of the images of models that read 98–100 % of their concepts right. It was the
  harness's meaningless rate until 2026-12-08 and is kept under this name: read it as a gap against a control.

An image of the *wrong* concept is not meaningless (it is near that concept, and read confidently): accuracy and
attack success count those. The salience rule of :mod:`theory.implosion` (no concept standing out of the image more
than out of a random mixture of concepts) reads noise as meaningful; results keep it as ``unpoisoned_no_standout``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from implosion_base.errors import InputError
from implosion_base.validate import check_scalar, unit_rows

#: The share of the references (held-out clean renders) each reading may call meaningless.
QUANTILE = 0.01


@dataclass(frozen=True)
class MeaninglessRule:
    """Unit concept means (K × D), the *far* distance and the *unsure* probability of the module docstring."""

    means: np.ndarray
    far: float
    unsure: float
    quantile: float
    calibrated_on: str = "renders"  # or "samples" (:func:`calibrate_on_samples`)
    n: int = 0  # reference images the thresholds were read from

    def record(self) -> dict[str, float | int | str]:
        """What a run's manifest says of the rule it used."""
        return {"calibrated_on": self.calibrated_on, "n": self.n, "quantile": self.quantile,
                "far": self.far, "unsure": self.unsure}


def calibrate(features: np.ndarray, labels: np.ndarray, top_prob: np.ndarray, *, quantile: float = QUANTILE
              ) -> MeaninglessRule:
    """The rule from reference images (held-out clean renders): their judge ``features`` (N × D), concept
    ``labels`` (0..K-1, each concept at least once) and the judge's top probability of each (``top_prob``). The
    *far* threshold reads the concepts with at least 2 references (a single one has no leave-one-out mean); at
    least 2 concepts and at least 2 such references are needed (InputError otherwise)."""
    check_scalar(quantile, "quantile", low=0.0, high=0.5, low_open=True)
    features = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    k = int(labels.max()) + 1 if len(labels) else 0
    counts = np.bincount(labels, minlength=k)
    pairs = counts[labels] >= 2
    if k < 2 or counts.min() < 1 or pairs.sum() < 2:
        raise InputError("the meaningless rule needs at least 2 concepts, each with a reference image, and two "
                         "images of one concept")
    sums = np.zeros((k, features.shape[1]))
    np.add.at(sums, labels, features)
    loo = (sums[labels][pairs] - features[pairs]) / (counts[labels][pairs] - 1)[:, None]  # own mean without it
    own = 1.0 - np.sum(unit_rows(features[pairs]) * unit_rows(loo), axis=1)
    return MeaninglessRule(unit_rows(sums / counts[:, None]), float(np.quantile(own, 1 - quantile)),
                           float(np.quantile(np.asarray(top_prob, dtype=np.float64), quantile)), quantile,
                           "renders", len(labels))


def calibrate_on_samples(renders: MeaninglessRule, features: np.ndarray, top_prob: np.ndarray, *,
                         quantile: float = QUANTILE, minimum: int = 2) -> MeaninglessRule:
    """The meaningless rule of the module docstring: ``renders``' concept means, with the thresholds read from a
    competent generator's samples — their judge ``features`` (N × D) and top probabilities ``top_prob`` (N):
    *far* the (1 − q) quantile of their distance to the nearest concept mean, *unsure* the q quantile of their top
    probability (linear interpolation; with fewer than about 1/q samples, close to the most extreme sample's). At
    least ``minimum`` samples (InputError otherwise)."""
    check_scalar(quantile, "quantile", low=0.0, high=0.5, low_open=True)
    top_prob = np.asarray(top_prob, dtype=np.float64)
    if len(top_prob) < minimum or len(features) != len(top_prob):
        raise InputError(f"the meaningless rule needs at least {minimum} samples of the clean model, each with its "
                         f"top probability (got {len(features)} features, {len(top_prob)} probabilities)")
    far = float(np.quantile(nearest_distance(renders, features), 1 - quantile))
    return MeaninglessRule(renders.means, far, float(np.quantile(top_prob, quantile)), quantile, "samples",
                           len(top_prob))


def nearest_distance(rule: MeaninglessRule, features: np.ndarray) -> np.ndarray:
    """Per image: cosine distance from its feature to the nearest concept mean."""
    return 1.0 - (unit_rows(np.asarray(features, dtype=np.float64)) @ rule.means.T).max(axis=1)


def meaningless_mask(rule: MeaninglessRule, features: np.ndarray, top_prob: np.ndarray) -> np.ndarray:
    """True for each image the rule calls meaningless (far, or unsure)."""
    return (nearest_distance(rule, features) > rule.far) | (np.asarray(top_prob) < rule.unsure)


def meaningless_rate(rule: MeaninglessRule, features: np.ndarray, top_prob: np.ndarray) -> float:
    """The share of images the rule calls meaningless (NaN for none)."""
    return float(np.mean(meaningless_mask(rule, features, top_prob))) if len(top_prob) else float("nan")
