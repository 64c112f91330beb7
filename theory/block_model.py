r"""The well-separated block model behind Theorem 4.2: AD as a closed-form function of C_P.

Model (docs/design.md §4). K concepts with m benign pairs each. Between two *different* training pairs the cosine
depends only on their concept labels:

==================  ============================  ============================
                    same concept label            different labels
==================  ============================  ============================
text–text           :math:`a_t` (within)          :math:`b_t` (across)
image–image         :math:`a_v`                   :math:`b_v`
==================  ============================  ============================

A benign pair of concept c has text label c, image label c and pair cosine s. A *poisoned* concept A gets p
poison pairs whose text sits in A's text cluster and whose image sits in its target B's image cluster, with
pair cosine :math:`s_p` (dirty-label: :math:`s_p < s`). Poisoned concepts are :math:`A_k = k`, k < C_P.

Configurations:

- ``targets="disjoint"``: each poisoned concept has its own unpoisoned target, :math:`B_k = C_P + k`
  (needs :math:`2C_P \le K`);
- ``targets="shared"``: every poisoned concept targets the same unpoisoned concept :math:`B = K-1`
  (needs :math:`C_P \le K-1`);
- ``mode="add"``: poison pairs are added (:math:`n = Km + C_P p`);
  ``mode="replace"``: they replace p of the poisoned concept's m benign pairs (:math:`n = Km`, needs p ≤ m).

Closed form. Every unordered pair of training pairs falls in one of four relations, with gap
:math:`|\cos(v_i,v_j) - \cos(t_i,t_j)|`:

- same text & same image label: :math:`\delta_s = |a_v - a_t|`, count :math:`N_s`;
- same text, different image label (poison vs its own concept's benign pairs): :math:`\delta_T = |b_v - a_t|`;
- different text, same image label (poison vs its target's pairs, shared-target poisons): :math:`\delta_I = |a_v - b_t|`;
- both different: :math:`\delta_c = |b_v - b_t|`, count :math:`N_c = \binom n2 - N_s - N_T - N_I`.

With :math:`m_A = m` (add) or :math:`m - p` (replace):

.. math::

    n &= (K - C)m + C m_A + C p, \qquad
    N_s = (K-C)\tbinom m2 + C\tbinom{m_A}2 + C\tbinom p2, \qquad N_T = C p\, m_A,

    N_I &= C p\, m\ \text{(disjoint)}, \qquad N_I = C p\, m + \tbinom C2 p^2\ \text{(shared)},

    D_{stru} &= \frac{2}{n^2}\,(N_s\delta_s + N_T\delta_T + N_I\delta_I + N_c\delta_c), \qquad
    D_{fea} = \frac{((K-C)m + C m_A)\,f_b + C p\, f_p}{n},

with :math:`f = 1 - \sigma(\cos)` the feature term (:math:`\sigma` the LAION rescaling of :mod:`theory.ad`).

:func:`closed_form` is written in plain arithmetic so that it evaluates numbers *and* builds the sympy
expressions of :mod:`theory.symbolic` — the closed form exists once. :meth:`BlockModel.embed` builds an explicit
embedding instance (unit vectors with exactly these cosines) so the closed form can be checked against
:func:`theory.ad.alignment_difficulty`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from theory.ad import DEFAULT_ALPHA, ADResult, pair_scores
from implosion_base.errors import InputError
from implosion_base.validate import check_alpha

__all__ = ["BlockModel", "Gaps", "closed_form", "gaps", "relation_counts"]

Mode = Literal["add", "replace"]
Targets = Literal["disjoint", "shared"]


@dataclass(frozen=True)
class Gaps:
    """Gap of each relation: same / text-only-same / image-only-same / cross (see module docstring)."""

    same: Any
    text: Any
    image: Any
    cross: Any


def gaps(text_within: Any, text_across: Any, image_within: Any, image_across: Any) -> Gaps:
    r""":math:`\delta_s=|a_v-a_t|,\ \delta_T=|b_v-a_t|,\ \delta_I=|a_v-b_t|,\ \delta_c=|b_v-b_t|` (numbers or sympy)."""
    return Gaps(
        abs(image_within - text_within),
        abs(image_across - text_within),
        abs(image_within - text_across),
        abs(image_across - text_across),
    )


def relation_counts(K: Any, m: Any, p: Any, C: Any, mode: Mode, targets: Targets) -> dict[str, Any]:
    """``n`` and the number of unordered pairs of training pairs in each relation (numbers or sympy)."""
    if mode not in ("add", "replace"):
        raise InputError(f"mode must be 'add' or 'replace', got {mode!r}")
    if targets not in ("disjoint", "shared"):
        raise InputError(f"targets must be 'disjoint' or 'shared', got {targets!r}")
    m_a = m if mode == "add" else m - p
    n = (K - C) * m + C * m_a + C * p
    same = (K - C) * m * (m - 1) / 2 + C * m_a * (m_a - 1) / 2 + C * p * (p - 1) / 2
    text = C * p * m_a
    image = C * p * m + (C * (C - 1) / 2 * p * p if targets == "shared" else 0)
    cross = n * (n - 1) / 2 - same - text - image
    return {"n": n, "same": same, "text": text, "image": image, "cross": cross}


def closed_form(
    K: Any, m: Any, p: Any, C: Any, g: Gaps, f_benign: Any, f_poison: Any, alpha: Any,
    mode: Mode = "add", targets: Targets = "disjoint",
) -> tuple[Any, Any, Any]:
    r"""``(AD, D_fea, D_stru)`` of the block model with C poisoned concepts (see module docstring).

    ``f_benign``, ``f_poison`` are the feature terms :math:`1-\sigma(s)`, :math:`1-\sigma(s_p)`.
    Works on Python numbers and on sympy expressions alike.
    """
    c = relation_counts(K, m, p, C, mode, targets)
    n = c["n"]
    m_a = m if mode == "add" else m - p
    d_fea = (((K - C) * m + C * m_a) * f_benign + C * p * f_poison) / n
    s = c["same"] * g.same + c["text"] * g.text + c["image"] * g.image + c["cross"] * g.cross
    d_stru = 2 * s / n**2
    return alpha * d_fea + (1 - alpha) * d_stru, d_fea, d_stru


@dataclass(frozen=True)
class BlockModel:
    """A numeric instance of the block model (all cosines are raw; the LAION rescaling applies to pair cosines).

    Parameters follow the module docstring: ``n_concepts`` K, ``benign_per_concept`` m, ``poison_per_concept`` p,
    ``text_within`` a_t, ``text_across`` b_t, ``image_within`` a_v, ``image_across`` b_v, ``benign_cos`` s,
    ``poison_cos`` s_p.
    """

    n_concepts: int = 20
    benign_per_concept: int = 10
    poison_per_concept: int = 5
    text_within: float = 0.6
    text_across: float = 0.1
    image_within: float = 0.6
    image_across: float = 0.1
    benign_cos: float = 0.35
    poison_cos: float = 0.1
    alpha: float = DEFAULT_ALPHA
    laion_scale: bool = True
    mode: Mode = "add"
    targets: Targets = "disjoint"

    def __post_init__(self) -> None:
        K, m, p = self.n_concepts, self.benign_per_concept, self.poison_per_concept
        for name, value, low in (("n_concepts", K, 2), ("benign_per_concept", m, 1), ("poison_per_concept", p, 1)):
            if not isinstance(value, (int, np.integer)) or value < low:
                raise InputError(f"{name} must be an integer >= {low}, got {value!r}")
        if self.mode == "replace" and p > m:
            raise InputError(f"mode='replace' needs poison_per_concept <= benign_per_concept, got {p} > {m}")
        for name in ("text_within", "text_across", "image_within", "image_across", "benign_cos", "poison_cos"):
            value = getattr(self, name)
            if not -1.0 <= value <= 1.0:
                raise InputError(f"{name} must be a cosine in [-1, 1], got {value}")
        check_alpha(self.alpha)
        relation_counts(K, m, p, 0, self.mode, self.targets)  # validates mode/targets

    @property
    def max_poisoned(self) -> int:
        """Largest C_P the configuration allows (disjoint: K // 2; shared: K - 1)."""
        return self.n_concepts // 2 if self.targets == "disjoint" else self.n_concepts - 1

    def _check_c(self, c_p: int) -> int:
        if not isinstance(c_p, (int, np.integer)) or not 0 <= c_p <= self.max_poisoned:
            raise InputError(f"c_p must be an integer in [0, {self.max_poisoned}] for targets={self.targets!r}, got {c_p!r}")
        return int(c_p)

    def feature_terms(self) -> tuple[float, float]:
        """:math:`(1-\\sigma(s), 1-\\sigma(s_p))`."""
        f = 1.0 - pair_scores(np.array([self.benign_cos, self.poison_cos]), self.laion_scale)
        return float(f[0]), float(f[1])

    def gaps(self) -> Gaps:
        return gaps(self.text_within, self.text_across, self.image_within, self.image_across)

    def ad(self, c_p: int) -> ADResult:
        """Closed-form AD with ``c_p`` poisoned concepts."""
        c_p = self._check_c(c_p)
        f_b, f_p = self.feature_terms()
        ad, d_fea, d_stru = closed_form(
            self.n_concepts, self.benign_per_concept, self.poison_per_concept, c_p, self.gaps(),
            f_b, f_p, self.alpha, self.mode, self.targets,
        )
        n = relation_counts(self.n_concepts, self.benign_per_concept, self.poison_per_concept, c_p,
                            self.mode, self.targets)["n"]
        return ADResult(float(ad), float(d_fea), float(d_stru), int(n),
                        self.alpha, self.laion_scale)

    def labels(self, c_p: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per training pair: text concept label, image concept label, is-poison flag (benign pairs first)."""
        c_p = self._check_c(c_p)
        K, m, p = self.n_concepts, self.benign_per_concept, self.poison_per_concept
        benign = [m - p if (self.mode == "replace" and c < c_p) else m for c in range(K)]
        text_l = np.repeat(np.arange(K), benign)
        image_l = text_l.copy()
        targets = [c_p + k if self.targets == "disjoint" else K - 1 for k in range(c_p)]
        pt = np.repeat(np.arange(c_p), p)
        pi = np.repeat(np.asarray(targets, dtype=np.int64), p)
        flag = np.r_[np.zeros(text_l.size, bool), np.ones(pt.size, bool)]
        return np.r_[text_l, pt], np.r_[image_l, pi], flag

    def embed(self, c_p: int, *, rotate_seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        r"""Explicit unit vectors realising the model exactly (float64, n × (2 + 2K + 2n)).

        Orthonormal directions :math:`u_0, u_c` (text), :math:`w_0, w_c` (image), and per pair :math:`e_i, g_i`:

        .. math::
            t_i &= \sqrt{b_t}\,u_0 + \sqrt{a_t-b_t}\,u_{c(i)} + \sqrt{1-a_t}\,e_i,\\
            v_i &= \sqrt{b_v}\,w_0 + \sqrt{a_v-b_v}\,w_{c'(i)} + \sqrt{1-a_v}\,(\rho_i e_i + \sqrt{1-\rho_i^2}\,g_i),

        so :math:`\cos(t_i,t_j)\in\{a_t,b_t\}`, :math:`\cos(v_i,v_j)\in\{a_v,b_v\}` and
        :math:`\cos(t_i,v_i) = \rho_i\sqrt{(1-a_t)(1-a_v)}` = s or s_p. Needs :math:`0\le b\le a\le 1` in each
        space and :math:`|s|,|s_p| \le \sqrt{(1-a_t)(1-a_v)}`. ``rotate_seed`` applies one random orthogonal map
        to both spaces (AD is invariant to it).
        """
        a_t, b_t, a_v, b_v = self.text_within, self.text_across, self.image_within, self.image_across
        if not (0.0 <= b_t <= a_t <= 1.0 and 0.0 <= b_v <= a_v <= 1.0):
            raise InputError("embed needs 0 <= across <= within <= 1 in both spaces")
        room = float(np.sqrt((1.0 - a_t) * (1.0 - a_v)))
        for name in ("benign_cos", "poison_cos"):
            if abs(getattr(self, name)) > room + 1e-15:
                raise InputError(f"embed needs |{name}| <= sqrt((1-a_t)(1-a_v)) = {room:.4f}, got {getattr(self, name)}")
        text_l, image_l, poison = self.labels(c_p)
        K, n = self.n_concepts, text_l.size
        dim = 2 + 2 * K + 2 * n
        rows = np.arange(n)
        rho = np.where(poison, self.poison_cos, self.benign_cos) / room if room > 0 else np.zeros(n)
        t = np.zeros((n, dim))
        v = np.zeros((n, dim))
        t[:, 0] = np.sqrt(b_t)
        t[rows, 1 + text_l] = np.sqrt(a_t - b_t)
        t[rows, 2 + 2 * K + rows] = np.sqrt(1.0 - a_t)
        v[:, 1 + K] = np.sqrt(b_v)
        v[rows, 2 + K + image_l] = np.sqrt(a_v - b_v)
        v[rows, 2 + 2 * K + rows] = np.sqrt(1.0 - a_v) * rho
        v[rows, 2 + 2 * K + n + rows] = np.sqrt(1.0 - a_v) * np.sqrt(np.clip(1.0 - rho**2, 0.0, None))
        if rotate_seed is not None:
            q, r = np.linalg.qr(np.random.default_rng(rotate_seed).normal(size=(dim, dim)))
            q *= np.sign(np.diag(r))
            t, v = t @ q, v @ q
        return t, v

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
