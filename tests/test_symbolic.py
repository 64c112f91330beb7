"""Symbolic Theorem 4.2: certificates, conditions and the turning point, cross-checked numerically."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

from theory.block_model import BlockModel
from theory.symbolic import (
    SYM,
    ad_expressions,
    certify_positive,
    derivative_parts,
    growth_condition,
    prove_growth,
    structure_turning_point,
)

x, y = sp.symbols("x y", nonnegative=True)


def test_certificate_accepts_positive_and_rejects_others():
    assert certify_positive(x * y + 1, strict=set())
    assert certify_positive((x + 2 * y) / (x + 1) ** 2, strict={y})
    assert not certify_positive(x * y, strict={x})  # vanishes when y = 0
    assert not certify_positive(x - y + 3, strict={x, y})  # negative coefficient: not certified
    assert not certify_positive(sp.Integer(0), strict=set())


@pytest.mark.parametrize(
    "mode, targets, c_min",
    [("add", "disjoint", 0), ("replace", "disjoint", 0), ("replace", "shared", 0), ("add", "shared", 1)],
)
def test_growth_is_proved_under_assumptions(mode, targets, c_min):
    assert prove_growth(mode, targets, c_min).proved


def test_shared_add_is_not_certified_from_zero():
    assert not prove_growth("add", "shared", 0).proved


def test_sympy_expression_matches_numeric_closed_form():
    bm = BlockModel(n_concepts=9, benign_per_concept=4, poison_per_concept=3, mode="add", targets="shared")
    ad, _, _ = ad_expressions("add", "shared")
    f_b, f_p = bm.feature_terms()
    g = bm.gaps()
    s = SYM
    vals = {s.K: 9, s.m: 4, s.p: 3, s.alpha: bm.alpha, s.f_b: f_b, s.f_p: f_p, s.d_s: g.same, s.d_T: g.text,
            s.d_I: g.image, s.d_c: g.cross}
    for c in range(bm.max_poisoned + 1):
        assert float(ad.subs(vals).subs(s.C, c)) == pytest.approx(bm.ad(c).ad, abs=1e-12)


def test_derivative_numerator_sign_matches_finite_difference():
    rng = np.random.default_rng(0)
    s = SYM
    num, den = derivative_parts("add", "disjoint")
    ad, _, _ = ad_expressions("add", "disjoint")
    for _ in range(20):
        vals = {s.K: int(rng.integers(4, 30)), s.m: int(rng.integers(1, 10)), s.p: int(rng.integers(1, 30)),
                s.alpha: rng.uniform(), s.f_b: rng.uniform(), s.f_p: rng.uniform(), s.d_s: rng.uniform(0, .3),
                s.d_T: rng.uniform(0, 1), s.d_I: rng.uniform(0, 1), s.d_c: rng.uniform(0, .3)}
        c = rng.uniform(0, 5)
        f = sp.lambdify(s.C, ad.subs(vals))
        h = 1e-6
        fd = (f(c + h) - f(c - h)) / (2 * h)
        exact = float((num / den).subs(vals).subs(s.C, c))
        assert fd == pytest.approx(exact, rel=1e-4, abs=1e-9)
        assert float(den.subs(vals).subs(s.C, c)) > 0


def test_growth_condition_is_two_endpoint_inequalities():
    cond = growth_condition("add", "disjoint", 0, 5)
    assert isinstance(cond, sp.And) and len(cond.args) == 2
    s = SYM
    # idealised, dirty-label: holds while C p < K m
    base = {s.d_s: 0, s.d_c: 0, s.d_T: 0.5, s.d_I: 0.5, s.f_b: 0.2, s.f_p: 0.2, s.alpha: 0.8, s.m: 2, s.p: 3}
    assert bool(cond.subs(base).subs(s.K, 10))  # 5*3 < 20
    assert not bool(cond.subs(base).subs(s.K, 5))  # 5*3 > 10


def test_turning_point_is_benign_volume_over_poison_per_concept():
    _, root = structure_turning_point()
    assert sp.simplify(root - SYM.K * SYM.m / SYM.p) == 0


@pytest.mark.parametrize("mode, targets", [("add", "disjoint"), ("add", "shared"), ("replace", "disjoint"),
                                           ("replace", "shared")])
def test_derivative_integrates_to_the_ad_of_explicit_embeddings(mode, targets):
    """The sympy dAD/dC_P, integrated over [C, C+1] by quadrature, equals AD(C+1) − AD(C) computed by theory.ad on
    explicit (rotated) embeddings of the block model — not a difference of the same closed-form expression."""
    from scipy.integrate import quad

    from theory.ad import alignment_difficulty

    s = SYM
    num, den = derivative_parts(mode, targets)
    rng = np.random.default_rng(7)
    for trial in range(3):
        m = int(rng.integers(3, 6))
        p = int(rng.integers(1, m + 1)) if mode == "replace" else int(rng.integers(1, 8))
        bm = BlockModel(n_concepts=int(rng.integers(6, 10)), benign_per_concept=m, poison_per_concept=p,
                        text_within=0.6, text_across=float(rng.uniform(0, .3)), image_within=0.5,
                        image_across=float(rng.uniform(0, .3)), benign_cos=0.4, poison_cos=0.1,
                        alpha=float(rng.uniform(0.2, 0.9)), mode=mode, targets=targets)
        f_b, f_p = bm.feature_terms()
        g = bm.gaps()
        vals = {s.K: bm.n_concepts, s.m: m, s.p: p, s.alpha: bm.alpha, s.f_b: f_b, s.f_p: f_p, s.d_s: g.same,
                s.d_T: g.text, s.d_I: g.image, s.d_c: g.cross}
        deriv = sp.lambdify(s.C, (num / den).subs(vals))
        for c in range(bm.max_poisoned):
            integral = quad(deriv, c, c + 1, epsabs=1e-13, epsrel=1e-12)[0]
            ad0 = alignment_difficulty(*bm.embed(c, rotate_seed=trial), alpha=bm.alpha).ad
            ad1 = alignment_difficulty(*bm.embed(c + 1, rotate_seed=trial + 1), alpha=bm.alpha).ad
            assert integral == pytest.approx(ad1 - ad0, abs=1e-9)
