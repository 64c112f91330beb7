r"""Implosion measures: what a generator's outputs say about its unpoisoned concepts (one definition each).

Both harnesses call this module: the simulator on its map's outputs in the joint space (concept references = the
image centroids), the empirical harness on the judge's embeddings of generated images (concept references = the
mean judge embedding of each concept's clean renders). For outputs :math:`o_i` (unit rows), concept references
:math:`r_c` (unit rows) and the concept :math:`y_i` each output was asked for, with :math:`S_{ic}=\cos(o_i, r_c)`:

- **accuracy** — :math:`\frac1n\sum_i [\arg\max_c S_{ic} = y_i]` (top-1; saturates, says nothing about *how*
  an output fails);
- **own similarity** — :math:`\frac1n\sum_i S_{iy_i}` (graded: how much of its concept an output keeps);
- **margin** — :math:`\frac1n\sum_i \big(S_{iy_i} - \max_{c\ne y_i} S_{ic}\big)` (graded; negative when an
  output is nearer another concept);
- **salience** — :math:`z_i = (\max_c S_{ic} - \bar S_{i\cdot}) / \operatorname{sd}_c S_{ic}`: by how many
  standard deviations of its own similarity profile the best concept stands out, whichever concept that is;
- **meaningless rate** — the share of outputs with :math:`z_i < z_\text{null}`, where :math:`z_\text{null}` is
  the 95th percentile of the salience of *images of nothing in particular*: normalised random mixtures
  :math:`\mathrm{unit}(\sum_c w_c r_c)`, :math:`w \sim \mathrm{Dirichlet}(\mathbf 1)` (the average image is one
  of them). An output is meaningless when no concept stands out of it more than out of such a mixture.

Why salience and not a fixed cosine threshold (this module replaces one: "top cosine below 0.7"). Poisoning a
linear or attention map first pulls *every* output toward the average image, :math:`o \to a\,r_{y} + b\,\bar r`;
cosines to every concept fall together, so any cosine threshold — fixed, or relative to the clean model's own
similarities — fires although every output is still nearest its own concept by a wide margin (the simulator at
p = 10, C_P = 500 keeps accuracy 1.000 while its top cosine falls below the clean model's 5th percentile
for 99 % of concepts). The salience is invariant to that shift (:math:`\bar r` has nearly the same cosine with every concept)
and to scale, and its null level is measured, not chosen: the clean simulator's outputs have :math:`z\approx 7.6`,
concept-less mixtures :math:`z\approx 3.2`. Accuracy and meaninglessness can disagree both ways: an output that
lands on a *wrong* concept is inaccurate but not meaningless (attack-like failure, blending into targets); an
output at the average image is both (implosion proper). Tests construct both cases.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from implosion_base.validate import check_scalar, unit_rows
from implosion_base.errors import InputError

__all__ = ["ImplosionReference", "implosion_measures", "make_reference", "salience", "MEASURE_NAMES"]

#: Names of :func:`implosion_measures`' keys, in table order.
MEASURE_NAMES: tuple[str, ...] = ("acc", "own_sim", "margin", "salience", "meaningless_rate")


def _unit(x: np.ndarray, what: str) -> np.ndarray:
    """float64 unit rows of a 2-D array of finite, non-zero rows (InputError naming ``what`` otherwise)."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise InputError(f"{what} must be a 2-D array (n, d), got shape {x.shape}")
    norm = np.linalg.norm(x, axis=1)
    if not np.all(np.isfinite(x)) or np.any(norm == 0):
        raise InputError(f"{what} holds a non-finite or zero row")
    return unit_rows(x, norm)


def salience(similarities: np.ndarray) -> np.ndarray:
    r"""Per row: :math:`(\max_c S_{ic} - \operatorname{mean}_c S_{ic}) / \operatorname{sd}_c S_{ic}` (0 where the
    profile is flat)."""
    s = np.asarray(similarities, dtype=np.float64)
    sd = s.std(axis=1)
    gap = s.max(axis=1) - s.mean(axis=1)
    return np.divide(gap, sd, out=np.zeros_like(gap), where=sd > 0)


@dataclass(frozen=True)
class ImplosionReference:
    """Unit concept references (K × d) and the null salience level :math:`z_\\text{null}`."""

    concepts: np.ndarray
    null_salience: float
    null_quantile: float


def make_reference(concepts: np.ndarray, *, n_null: int = 2000, null_quantile: float = 0.95,
                   seed: int = 0) -> ImplosionReference:
    r"""Reference of K concepts: their unit rows and :math:`z_\text{null}` = the ``null_quantile`` quantile of
    the salience of ``n_null`` Dirichlet(1) mixtures of the references (deterministic in ``seed``)."""
    refs = _unit(concepts, "concept references")
    if refs.shape[0] < 2:
        raise InputError(f"need at least 2 concept references, got {refs.shape[0]}")
    check_scalar(null_quantile, "null_quantile", low=0.0, high=1.0, low_open=True, high_open=True)
    rng = np.random.default_rng(seed)
    mixtures = _unit(rng.dirichlet(np.ones(refs.shape[0]), size=n_null) @ refs, "null mixtures")
    z = salience(mixtures @ refs.T)
    return ImplosionReference(refs, float(np.quantile(z, null_quantile)), null_quantile)


def implosion_measures(outputs: np.ndarray, labels: np.ndarray, reference: ImplosionReference) -> dict[str, float]:
    """The measures of the module docstring over outputs asked for concepts ``labels`` (NaN when empty)."""
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) == 0:
        return {name: float("nan") for name in MEASURE_NAMES}
    out = _unit(outputs, "outputs")
    k = reference.concepts.shape[0]
    if out.shape[0] != labels.shape[0] or out.shape[1] != reference.concepts.shape[1]:
        raise InputError(f"outputs {out.shape} do not match labels ({labels.shape[0]}) and references "
                         f"{reference.concepts.shape}")
    if labels.min() < 0 or labels.max() >= k:
        raise InputError(f"labels must be concept indices in [0, {k}), got {labels.min()}..{labels.max()}")
    sim = out @ reference.concepts.T
    rows = np.arange(len(labels))
    own = sim[rows, labels]
    other = sim.copy()
    other[rows, labels] = -np.inf
    z = salience(sim)
    return {
        "acc": float(np.mean(sim.argmax(axis=1) == labels)),
        "own_sim": float(np.mean(own)),
        "margin": float(np.mean(own - other.max(axis=1))),
        "salience": float(np.mean(z)),
        "meaningless_rate": float(np.mean(z < reference.null_salience)),
    }
