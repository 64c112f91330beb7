r"""The meaningless rate of generated images: calibrated on clean renders, checked on images of known truth.

An image x is **meaningless** when the judge can place it near no concept, by either of two readings, each with
its threshold set by held-out clean renders (what a competent generator draws):

- *far*: its judge feature :math:`f(x)` is farther from every concept's mean reference feature :math:`\mu_c`
  (cosine distance :math:`1-\cos(f(x), \mu_c)`, minimised over c) than all but a share q of the references are
  from their own concept's mean (leave-one-out: a reference does not pull its own mean toward itself);
- *unsure*: the judge's top zero-shot probability :math:`\max_c P(c \mid x)` is lower than all but a share q of
  the references' own top probability.

With q = 0.01 for each, at most about 2 % of images distributed like the references are called meaningless. The
rule was fixed before its first check on the two-font and one-font data sets; calibrating on the renders' VAE
reconstructions instead was tried after seeing that check and not kept (docs/empirical.md, "The meaningless rate
on known truth", gives both, and the check on a third data set, Noto alone, that the kept rule had not seen).
An image of the *wrong* concept is not meaningless (it is near that concept, and read confidently): accuracy and
attack success count those. ``python -m empirical.known_truth`` measures the rule on images meaningless by
construction (noise, blank and single-colour canvases, pixel averages of concepts, shuffled tiles) and on images
that are not (held-out renders the rule was not calibrated on, and their VAE reconstructions): docs/empirical.md,
"The meaningless rate on known truth".

It replaces, as the harness's meaningless rate, the salience rule of :mod:`theory.implosion` (no concept standing
out of the image more than out of a random mixture of concepts), which that check showed to read noise and blank
canvases as meaningful (rate 0.00 on Gaussian noise at the cpu preset): results tables keep that rule's value under
its own name, ``unpoisoned_no_standout``.
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
                           float(np.quantile(np.asarray(top_prob, dtype=np.float64), quantile)), quantile)


def nearest_distance(rule: MeaninglessRule, features: np.ndarray) -> np.ndarray:
    """Per image: cosine distance from its feature to the nearest concept mean."""
    return 1.0 - (unit_rows(np.asarray(features, dtype=np.float64)) @ rule.means.T).max(axis=1)


def meaningless_mask(rule: MeaninglessRule, features: np.ndarray, top_prob: np.ndarray) -> np.ndarray:
    """True for each image the rule calls meaningless (far, or unsure)."""
    return (nearest_distance(rule, features) > rule.far) | (np.asarray(top_prob) < rule.unsure)


def meaningless_rate(rule: MeaninglessRule, features: np.ndarray, top_prob: np.ndarray) -> float:
    """The share of images the rule calls meaningless (NaN for none)."""
    return float(np.mean(meaningless_mask(rule, features, top_prob))) if len(top_prob) else float("nan")
