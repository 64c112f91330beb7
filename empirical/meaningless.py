r"""The meaningless rate of generated images, calibrated on clean renders *and* on what a competent generator
draws, and checked on images of known truth; and the off-render rate, calibrated on clean renders alone.

The rule on renders flags an image x when the judge can place it near no concept, by either of two readings,
each with a threshold set by reference images:

- *far*: its judge feature :math:`f(x)` is farther from every concept's mean clean-render feature :math:`\mu_c`
  (cosine distance :math:`d(x) = \min_c 1-\cos(f(x), \mu_c)`) than all but a share q of the references;
- *unsure*: the judge's top zero-shot probability :math:`\max_c P(c \mid x)` is lower than all but a share q of
  the references'.

With q = 0.01 for each, at most about 2 % of images distributed like the references (held-out clean renders) are
flagged: that is the **off-render rate** (``unpoisoned_off_render``, :func:`calibrate`; the far reading takes each
render's leave-one-out distance to its own concept's mean, so a reference does not pull its own mean toward
itself). But renders are one reference and a generator's images another: renders are read more surely and sit
nearer the means than anything the generator draws, and the off-render rate flags a fifth to a third of a
competent model's held-out samples (docs/empirical.md, "The meaningless rate on known truth").

The harness's **meaningless rate** (``unpoisoned_meaningless``, :func:`calibrate_on_samples`) asks for three
references: an image is meaningless when it is off-render (the rule above, at quantile Q), **off the
reconstructions** (the same rule with thresholds read off the held-out renders' VAE reconstructions, what the
decoder every generated image comes out of makes of the data, :func:`calibrate_decoded`) **and** far from what the
clean base model draws — the cosine distance from :math:`f(x)` to its nearest calibration sample (the clean base
model's own images of every concept, :mod:`empirical.clean_samples`) greater than the (1 − Q) quantile of the
calibration samples' own leave-one-out nearest distances. An image is meaningful when it looks like what the data
shows, like what the decoder makes of it, *or* like what a competent generator draws. Q = :data:`SAMPLE_QUANTILE`
= 0.05: an image distributed like the samples is flagged with probability at most about Q, one like the renders or
their reconstructions at most about 2Q (either reading), far less in practice since all three must agree. The
third reference was added after the rule without it (the *second rule*, ``off_decoded`` None) flagged a tenth of
the one-font data sets' reconstructions; it was chosen on the two-font data set's known truth and checked on data
sets of other concepts (docs/predictions/README.md).

An image of the *wrong* concept is not meaningless (it is near that concept, and read confidently): accuracy and
attack success count those. The salience rule of :mod:`theory.implosion` (no concept standing out of the image more
than out of a random mixture of concepts) reads noise as meaningful; results keep it as ``unpoisoned_no_standout``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from implosion_base.errors import InputError
from implosion_base.validate import check_scalar, unit_rows

#: The share of the references (held-out clean renders) each reading of the off-render rule may flag.
QUANTILE = 0.01
#: The share of each reference each reading of the meaningless rule may flag (both must agree).
SAMPLE_QUANTILE = 0.05


@dataclass(frozen=True)
class MeaninglessRule:
    """Unit concept means (K × D), the *far* distance and the *unsure* probability of the module docstring."""

    means: np.ndarray
    far: float
    unsure: float
    quantile: float
    calibrated_on: str = "renders"
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
    means, far = _far_threshold(features, labels, features, quantile)
    return MeaninglessRule(means, far, float(np.quantile(np.asarray(top_prob, dtype=np.float64), quantile)),
                           quantile, "renders", len(labels))


def _far_threshold(render_features: np.ndarray, labels: np.ndarray, probes: np.ndarray, quantile: float
                   ) -> tuple[np.ndarray, float]:
    """(the unit concept means of the renders, the (1 − q) quantile of each probe's cosine distance to its own
    concept's mean without render i): row i of ``probes`` is render i itself (:func:`calibrate`) or its
    reconstruction (:func:`calibrate_decoded`). Reads the concepts with at least 2 renders; InputError unless
    there are at least 2 concepts, each with a render, and 2 such renders."""
    features = np.asarray(render_features, dtype=np.float64)
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
    own = 1.0 - np.sum(unit_rows(np.asarray(probes, dtype=np.float64)[pairs]) * unit_rows(loo), axis=1)
    return unit_rows(sums / counts[:, None]), float(np.quantile(own, 1 - quantile))


@dataclass(frozen=True)
class SampledRule:
    """The meaningless rule of the module docstring: the rule on renders at quantile Q (``off_render``), the unit
    judge features of the clean base model's calibration samples (N × D), the *far from the samples* distance and,
    for the harness's rule, the rule on the renders' VAE reconstructions at Q (``off_decoded``; None: the second
    rule of docs/predictions/README.md, which had no such reference)."""

    off_render: MeaninglessRule
    samples: np.ndarray
    far: float
    quantile: float
    off_decoded: MeaninglessRule | None = None

    @property
    def n(self) -> int:
        return len(self.samples)

    @property
    def calibrated_on(self) -> str:
        """``samples`` (renders and samples) or ``recon+samples`` (renders, their reconstructions and samples)."""
        return "samples" if self.off_decoded is None else "recon+samples"

    def record(self) -> dict[str, float | int | str]:
        """What a run's manifest says of the rule it used."""
        out = {"calibrated_on": self.calibrated_on, "n": self.n, "quantile": self.quantile, "far": self.far,
               "off_render": self.off_render.record()}
        if self.off_decoded is not None:
            out["off_decoded"] = self.off_decoded.record()
        return out


def nearest_sample_distance(samples: np.ndarray, features: np.ndarray, *, leave_one_out: bool = False,
                            block: int = 1024) -> np.ndarray:
    """Per image: cosine distance from its feature to the nearest of the unit ``samples`` (with ``leave_one_out``
    the features are the samples themselves, each distance to the nearest *other* sample). Blocks of ``block``
    rows keep the similarity matrix small."""
    feats = unit_rows(np.asarray(features, dtype=np.float64))
    out = np.empty(len(feats))
    for i in range(0, len(feats), block):
        sim = feats[i:i + block] @ samples.T
        if leave_one_out:
            sim[np.arange(len(sim)), np.arange(i, i + len(sim))] = -np.inf
        out[i:i + block] = 1.0 - sim.max(axis=1)
    return out


def calibrate_decoded(render_features: np.ndarray, recon_features: np.ndarray, labels: np.ndarray,
                      recon_top: np.ndarray, *, quantile: float = SAMPLE_QUANTILE) -> MeaninglessRule:
    """The rule on renders read off their VAE reconstructions (what the decoder makes of the data): the concept
    means are the renders' (as :func:`calibrate`); the *far* threshold is the (1 − q) quantile of each
    reconstruction's distance to its own concept's mean *without its source render* (so a reference does not pull
    the mean toward itself), the *unsure* one the q quantile of the reconstructions' top probabilities. Row i of
    ``recon_features`` / ``recon_top`` is the reconstruction of render i (``render_features``, ``labels``)."""
    check_scalar(quantile, "quantile", low=0.0, high=0.5, low_open=True)
    recon = np.asarray(recon_features, dtype=np.float64)
    if recon.shape != np.shape(render_features):
        raise InputError(f"{len(recon)} reconstructions for {len(render_features)} renders: one per render")
    top = np.asarray(recon_top, dtype=np.float64)
    if top.shape != (len(recon),):
        raise InputError(f"{top.size} top probabilities for {len(recon)} reconstructions: one per reconstruction")
    means, far = _far_threshold(render_features, labels, recon, quantile)
    return MeaninglessRule(means, far, float(np.quantile(top, quantile)), quantile, "reconstructions", len(labels))


def calibrate_on_samples(render_features: np.ndarray, render_labels: np.ndarray, render_top: np.ndarray,
                         sample_features: np.ndarray, *, quantile: float = SAMPLE_QUANTILE,
                         decoded: tuple[np.ndarray, np.ndarray] | None = None) -> SampledRule:
    """The meaningless rule from its references: the held-out renders (their judge features, concept labels and
    top probabilities, as :func:`calibrate` takes them), the clean base model's calibration samples (their
    judge features, N × D; at least 2, InputError otherwise) and, with ``decoded`` = (features, top
    probabilities) of the renders' VAE reconstructions in the renders' order, those (:func:`calibrate_decoded`);
    every reading at ``quantile``."""
    check_scalar(quantile, "quantile", low=0.0, high=0.5, low_open=True)
    samples = unit_rows(np.asarray(sample_features, dtype=np.float64))
    if len(samples) < 2:
        raise InputError(f"the meaningless rule needs at least 2 samples of the clean model (got {len(samples)})")
    renders = calibrate(render_features, render_labels, render_top, quantile=quantile)
    off_decoded = None if decoded is None else calibrate_decoded(render_features, decoded[0], render_labels,
                                                                 decoded[1], quantile=quantile)
    own = nearest_sample_distance(samples, samples, leave_one_out=True)
    return SampledRule(renders, samples, float(np.quantile(own, 1 - quantile)), quantile, off_decoded)


def nearest_distance(rule: MeaninglessRule, features: np.ndarray) -> np.ndarray:
    """Per image: cosine distance from its feature to the nearest concept mean."""
    return 1.0 - (unit_rows(np.asarray(features, dtype=np.float64)) @ rule.means.T).max(axis=1)


def meaningless_mask(rule: MeaninglessRule | SampledRule, features: np.ndarray, top_prob: np.ndarray) -> np.ndarray:
    """True for each image the rule calls meaningless: far from every concept's renders or unsure (the rule on
    renders); that, off the reconstructions too (when the rule has them) *and* far from every clean sample (the
    rule on samples)."""
    if isinstance(rule, SampledRule):
        far, off = readings(rule, features, top_prob)
        return far & off
    return (nearest_distance(rule, features) > rule.far) | (np.asarray(top_prob) < rule.unsure)


def readings(rule: MeaninglessRule | SampledRule, features: np.ndarray, top_prob: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray]:
    """The rule's two readings per image: (far from every concept mean, unsure) for the rule on renders; (far from
    every clean sample, off the data: off-render and, when the rule has them, off the reconstructions) for the
    rule on samples. The first rule flags either, the second both."""
    if isinstance(rule, SampledRule):
        off = meaningless_mask(rule.off_render, features, top_prob)
        if rule.off_decoded is not None:
            off &= meaningless_mask(rule.off_decoded, features, top_prob)
        return nearest_sample_distance(rule.samples, features) > rule.far, off
    return nearest_distance(rule, features) > rule.far, np.asarray(top_prob) < rule.unsure


def meaningless_rate(rule: MeaninglessRule | SampledRule, features: np.ndarray, top_prob: np.ndarray) -> float:
    """The share of images the rule calls meaningless (NaN for none)."""
    return float(np.mean(meaningless_mask(rule, features, top_prob))) if len(top_prob) else float("nan")
