r"""Theorem 4.2 in sympy: dAD/dC_P for the block model, its exact sign conditions, and a proof of growth.

The expressions come from :func:`theory.block_model.closed_form` evaluated on sympy symbols (the closed form is
written once). What this module establishes (``python -m theory.check`` prints each as a verdict):

1. **Derivative.** For every configuration (``mode`` add/replace × ``targets`` disjoint/shared),
   :math:`\frac{dAD}{dC_P} = N(C_P)/\text{den}` with a positive denominator (:math:`n^3` when adding,
   :math:`(Km)^2` when replacing) and a numerator :math:`N` that is *affine* in :math:`C_P`. Hence the exact sign
   condition on an interval :math:`[C_0, C_1]` is :math:`N(C_0) > 0 \wedge N(C_1) > 0`
   (:func:`growth_condition`).
2. **Proof under the theorem's assumptions** (:func:`prove_growth`). "Benign samples of different concepts are
   well separated in both spaces" is formalised as: within-concept similarities agree across the two spaces and
   exceed the across-concept ones, which also agree (:math:`a_t = a_v = b + g,\ b_t = b_v = b,\ g > 0`); poisons
   are dirty-label (:math:`\sigma(s_p) \le \sigma(s)`, i.e. :math:`f_p = f_b + \Delta,\ \Delta \ge 0`); each
   poisoned concept has its own target (``disjoint``); when poisons are *added* they are a minority of the data
   (:math:`Km = C_P p + q,\ q > 0`); when they *replace* benign pairs, :math:`m = p + r,\ r\ge 0`. After these
   substitutions :math:`dD_{fea}/dC_P` and :math:`dD_{stru}/dC_P` are rational functions whose numerators and
   denominators are polynomials with only nonnegative coefficients in nonnegative symbols, and
   :math:`dD_{stru}/dC_P` has a monomial in strictly positive symbols only — so
   :math:`dAD/dC_P = \alpha\,dD_{fea}/dC_P + (1-\alpha)\,dD_{stru}/dC_P > 0` for every :math:`\alpha < 1`
   (:func:`certify_positive` is that certificate).
3. **Boundary** (:func:`structure_turning_point`). In the idealised model, adding poisons raises
   :math:`D_{stru}` exactly while :math:`C_P p < Km` and lowers it after: when poison is the majority of the data
   AD falls (with :math:`f_p = f_b`). Other ways out of the assumptions — poisons better aligned than benign
   pairs, or concepts not separated — are shown numerically in :mod:`theory.check`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import sympy as sp

from theory.block_model import Gaps, Mode, Targets, closed_form

__all__ = [
    "Symbols",
    "SYM",
    "ad_expressions",
    "certify_positive",
    "derivative_parts",
    "growth_condition",
    "prove_growth",
    "readable_derivatives",
    "structure_turning_point",
]


@dataclass(frozen=True)
class Symbols:
    """The block model's symbols (immutable; shared by every expression here)."""

    K: sp.Symbol = sp.Symbol("K", positive=True)
    m: sp.Symbol = sp.Symbol("m", positive=True)
    p: sp.Symbol = sp.Symbol("p", positive=True)
    C: sp.Symbol = sp.Symbol("C_P", nonnegative=True)
    alpha: sp.Symbol = sp.Symbol("alpha", nonnegative=True)
    f_b: sp.Symbol = sp.Symbol("f_b", nonnegative=True)
    f_p: sp.Symbol = sp.Symbol("f_p", nonnegative=True)
    d_s: sp.Symbol = sp.Symbol("delta_s", nonnegative=True)
    d_T: sp.Symbol = sp.Symbol("delta_T", nonnegative=True)
    d_I: sp.Symbol = sp.Symbol("delta_I", nonnegative=True)
    d_c: sp.Symbol = sp.Symbol("delta_c", nonnegative=True)
    # reparametrisation used by the proof
    b: sp.Symbol = sp.Symbol("b", nonnegative=True)  # across-concept cosine (both spaces)
    g: sp.Symbol = sp.Symbol("g", positive=True)  # separation: within - across
    Delta: sp.Symbol = sp.Symbol("Delta", nonnegative=True)  # f_p - f_b
    q: sp.Symbol = sp.Symbol("q", positive=True)  # K m - C_P p (benign minus poison volume, add mode)
    r: sp.Symbol = sp.Symbol("r", nonnegative=True)  # m - p (replace mode)
    c: sp.Symbol = sp.Symbol("c", nonnegative=True)  # C_P - C_0 for a domain starting at C_0

    @property
    def gaps(self) -> Gaps:
        return Gaps(self.d_s, self.d_T, self.d_I, self.d_c)


SYM = Symbols()


@lru_cache(maxsize=None)
def ad_expressions(mode: Mode, targets: Targets) -> tuple[sp.Expr, sp.Expr, sp.Expr]:
    """``(AD, D_fea, D_stru)`` of the block model as sympy expressions in :data:`SYM` (gaps as symbols)."""
    s = SYM
    return closed_form(s.K, s.m, s.p, s.C, s.gaps, s.f_b, s.f_p, s.alpha, mode, targets)


@lru_cache(maxsize=None)
def derivative_parts(mode: Mode, targets: Targets) -> tuple[sp.Expr, sp.Expr]:
    r"""``(N, den)`` with :math:`dAD/dC_P = N/\text{den}`, ``den`` the positive denominator, N expanded."""
    ad, _, _ = ad_expressions(mode, targets)
    num, den = sp.fraction(sp.together(sp.diff(ad, SYM.C)))
    return sp.expand(num), sp.factor(den)


def readable_derivatives(mode: Mode, targets: Targets) -> tuple[sp.Expr, sp.Expr, sp.Expr]:
    r"""``(dD_fea/dC_P, N_stru, den_stru)`` factored for reading: :math:`dD_{stru}/dC_P = N_{stru}/den_{stru}`
    with :math:`N_{stru}` collected by gap (:math:`\delta_s, \delta_T, \delta_I, \delta_c`)."""
    s = SYM
    _, d_fea, d_stru = ad_expressions(mode, targets)
    num, den = sp.fraction(sp.together(sp.diff(d_stru, s.C)))
    num = sp.collect(sp.expand(num), [s.d_s, s.d_T, s.d_I, s.d_c], sp.factor)
    return sp.factor(sp.diff(d_fea, s.C)), num, sp.factor(den)


def growth_condition(mode: Mode, targets: Targets, c0: sp.Expr | int = 0, c1: sp.Expr | int | None = None) -> sp.Boolean:
    r"""Exact condition for :math:`dAD/dC_P > 0` on all of :math:`[c_0, c_1]` (N is affine in :math:`C_P`).

    Raises ``ValueError`` if N is not affine (it always is for this model; the check guards the claim).
    """
    num, _ = derivative_parts(mode, targets)
    poly = sp.Poly(num, SYM.C)
    if poly.degree() > 1:
        raise ValueError(f"numerator of dAD/dC_P has degree {poly.degree()} in C_P, expected <= 1")
    ends = [num.subs(SYM.C, c0)] + ([] if c1 is None else [num.subs(SYM.C, c1)])
    return sp.And(*[sp.StrictGreaterThan(sp.expand(e), 0) for e in ends])


def certify_positive(expr: sp.Expr, strict: set[sp.Symbol]) -> bool:
    r"""True if ``expr`` > 0 whenever the symbols in ``strict`` are > 0 and all other symbols are ≥ 0.

    Certificate: write ``expr`` as a fraction of expanded polynomials; both must have only nonnegative
    coefficients, and each must contain a monomial (positive coefficient) built from ``strict`` symbols only,
    so it cannot vanish. Sufficient, not necessary: False means "not certified", not "negative".
    """
    num, den = sp.fraction(sp.together(expr))
    for part in (sp.expand(num), sp.expand(den)):
        if part == 0:
            return False
        gens = sorted(part.free_symbols, key=str)
        if not gens:
            if not part.is_positive:
                return False
            continue
        poly = sp.Poly(part, *gens)
        coeffs = poly.coeffs()
        if any(not (co.is_nonnegative) for co in coeffs):
            return False
        if not any(
            co.is_positive and all(g in strict for g, e in zip(gens, mon) if e)
            for mon, co in zip(poly.monoms(), coeffs)
        ):
            return False
    return True


def _nonneg(expr: sp.Expr) -> bool:
    """Nonnegative-coefficient certificate that allows the expression to vanish."""
    num, den = sp.fraction(sp.together(expr))
    num, den = sp.expand(num), sp.expand(den)
    if num == 0:
        return True
    for part in (num, den):
        gens = sorted(part.free_symbols, key=str)
        coeffs = sp.Poly(part, *gens).coeffs() if gens else [part]
        if any(not co.is_nonnegative for co in coeffs):
            return False
    return True


@dataclass(frozen=True)
class GrowthProof:
    """Outcome of :func:`prove_growth`: the substituted derivatives and whether each sign is certified."""

    mode: Mode
    targets: Targets
    c_min: int
    d_fea: sp.Expr
    d_stru: sp.Expr
    fea_nonnegative: bool
    stru_positive: bool

    @property
    def proved(self) -> bool:
        """dAD/dC_P > 0 for every alpha < 1 under the assumptions."""
        return self.fea_nonnegative and self.stru_positive


def theorem_assumptions(mode: Mode, c_min: int = 0) -> dict[sp.Symbol, sp.Expr]:
    """The substitutions that encode Theorem 4.2's assumptions (see module docstring)."""
    s = SYM
    within, across = s.b + s.g, s.b
    gp = Gaps(abs(within - within), abs(across - within), abs(within - across), abs(across - across))
    subs: dict[sp.Symbol, sp.Expr] = {
        s.d_s: gp.same, s.d_T: gp.text, s.d_I: gp.image, s.d_c: gp.cross, s.f_p: s.f_b + s.Delta,
    }
    if mode == "add":
        subs[s.K] = (s.C * s.p + s.q) / s.m
    else:
        subs[s.m] = s.p + s.r
    return subs


def prove_growth(mode: Mode, targets: Targets, c_min: int = 0) -> GrowthProof:
    r"""Certify :math:`dD_{fea}/dC_P \ge 0` and :math:`dD_{stru}/dC_P > 0` under the theorem's assumptions for
    :math:`C_P \ge c_{min}` (the derivative is taken first, then :math:`C_P = c_{min} + c`)."""
    s = SYM
    _, d_fea, d_stru = ad_expressions(mode, targets)
    subs = theorem_assumptions(mode, c_min)
    out = []
    for expr in (d_fea, d_stru):
        der = sp.diff(expr, s.C).subs(subs)
        der = sp.simplify(der.subs(s.C, s.c + c_min))
        out.append(sp.factor(der))
    strict = {s.p, s.m, s.g, s.q, s.K}
    return GrowthProof(mode, targets, c_min, out[0], out[1], _nonneg(out[0]), certify_positive(out[1], strict))


def structure_turning_point() -> tuple[sp.Expr, sp.Expr]:
    r"""Idealised add/disjoint model with :math:`f_p = f_b`: returns ``(N, C*)`` where
    :math:`dAD/dC_P = (1-\alpha) N / n^3` and :math:`C^* = Km/p` is the unique root: AD grows while
    :math:`C_P p < Km` and falls after."""
    s = SYM
    _, _, d_stru = ad_expressions("add", "disjoint")
    ideal = {s.d_s: 0, s.d_c: 0, s.d_T: s.g, s.d_I: s.g}
    num, _ = sp.fraction(sp.together(sp.diff(d_stru.subs(ideal), s.C)))
    roots = sp.solve(sp.Eq(num, 0), s.C)
    if len(roots) != 1:
        raise ValueError(f"expected one root of dD_stru/dC_P, got {roots}")
    return sp.factor(num), sp.simplify(roots[0])
