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
