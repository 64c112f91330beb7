"""Alignment Difficulty: exact, sampled, incremental, attribution, backends — against a brute-force reference."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from reference import brute_force_ad

from theory.ad import (
    IncrementalAD,
    alignment_difficulty,
    alignment_difficulty_sampled,
    pair_attribution,
    pair_scores,
)
from implosion_base.errors import InputError


def _pairs(n: int, d: int, seed: int = 0, coupling: float = 1.0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    t = rng.normal(size=(n, d))
    v = coupling * t + rng.normal(size=(n, d))
    return t.astype(dtype), v.astype(dtype)


@st.composite
def pair_sets(draw, max_n: int = 24, max_d: int = 7):
    n = draw(st.integers(2, max_n))
    d = draw(st.integers(1, max_d))
    elems = st.floats(-10, 10, allow_nan=False, allow_infinity=False, width=64)
    t = draw(arrays(np.float64, (n, d), elements=elems))
    v = draw(arrays(np.float64, (n, d), elements=elems))
    # rows must be normalisable: nudge (near-)zero rows away from zero deterministically
    for x in (t, v):
        small = np.linalg.norm(x, axis=1) < 1e-3
        x[small, 0] = 1.0
    return t, v


@given(pair_sets(), st.floats(0, 1), st.booleans(), st.integers(1, 9))
def test_exact_equals_brute_force(pairs, alpha, laion, block):
    t, v = pairs
    ref_ad, ref_fea, ref_stru = brute_force_ad(t, v, alpha, laion)
    r = alignment_difficulty(t, v, alpha=alpha, laion_scale=laion, block=block)
    assert r.n == t.shape[0]
    assert r.ad == pytest.approx(ref_ad, abs=1e-9)
    assert r.d_fea == pytest.approx(ref_fea, abs=1e-9)
    assert r.d_stru == pytest.approx(ref_stru, abs=1e-9)


@given(pair_sets(), st.integers(0, 2**32 - 1))
def test_permutation_invariant(pairs, seed):
    t, v = pairs
    perm = np.random.default_rng(seed).permutation(t.shape[0])
    a = alignment_difficulty(t, v)
    b = alignment_difficulty(t[perm], v[perm])
    assert b.ad == pytest.approx(a.ad, abs=1e-12)
    assert b.d_stru == pytest.approx(a.d_stru, abs=1e-12)


@given(pair_sets(), st.booleans())
def test_terms_within_bounds(pairs, laion):
    t, v = pairs
    r = alignment_difficulty(t, v, laion_scale=laion)
    lo_fea = 0.0 if laion else -1e-12  # raw cosines: 1 - s lies in [0, 2]
    hi_fea = 1.0 if laion else 2.0
    assert lo_fea - 1e-12 <= r.d_fea <= hi_fea + 1e-12
    assert -1e-12 <= r.d_stru <= 2.0


def test_alpha_limits_pick_one_term():
    t, v = _pairs(50, 6, seed=1)
    r = alignment_difficulty(t, v)
    assert alignment_difficulty(t, v, alpha=1.0).ad == pytest.approx(r.d_fea, abs=1e-15)
    assert alignment_difficulty(t, v, alpha=0.0).ad == pytest.approx(r.d_stru, abs=1e-15)
    assert r.ad == pytest.approx(0.8 * r.d_fea + 0.2 * r.d_stru, abs=1e-15)


def test_scale_invariance_and_rotation_invariance():
    t, v = _pairs(40, 8, seed=2)
    rng = np.random.default_rng(3)
    q, _ = np.linalg.qr(rng.normal(size=(8, 8)))
    scales = rng.uniform(0.1, 10, size=(40, 1))
    a = alignment_difficulty(t, v)
    b = alignment_difficulty(t * scales, (v @ q.T @ q) * scales[::-1])
    c = alignment_difficulty(t @ q, v @ q)  # one orthogonal map on the joint space
    assert b.ad == pytest.approx(a.ad, abs=1e-12)
    assert c.ad == pytest.approx(a.ad, abs=1e-12)


def test_zero_when_graphs_agree_and_pairs_aligned():
    t, _ = _pairs(30, 5, seed=4)
    r = alignment_difficulty(t, 2.5 * t)
    assert r.ad == pytest.approx(0.0, abs=1e-12)
    assert r.d_stru == pytest.approx(0.0, abs=1e-12)


def test_laion_scale_switch():
    cos = np.array([-0.5, 0.1, 0.2, 0.3, 0.45, 0.9])
    assert np.allclose(pair_scores(cos, True), [0, 0, 0, 0.4, 1.0, 1.0])
    assert np.allclose(pair_scores(cos, False), cos)
    t, v = _pairs(20, 4, seed=5)
    on, off = alignment_difficulty(t, v), alignment_difficulty(t, v, laion_scale=False)
    assert on.d_stru == off.d_stru  # only the feature term changes
    assert on.d_fea != off.d_fea


def test_float32_inputs_match_float64_to_authors_tolerance():
    t, v = _pairs(3000, 64, seed=6, coupling=0.3)
    exact64 = alignment_difficulty(t, v)
    r32 = alignment_difficulty(t.astype(np.float32), v.astype(np.float32), block=512)
    assert abs(r32.ad - exact64.ad) < 1e-6
    forced = alignment_difficulty(t.astype(np.float32), v.astype(np.float32), precision="float64")
    assert forced.ad == pytest.approx(exact64.ad, abs=1e-7)  # only the input rounding differs


def test_block_size_does_not_change_result():
    t, v = _pairs(300, 10, seed=7)
    values = [alignment_difficulty(t, v, block=b).ad for b in (1, 7, 64, 299, 300, 4096)]
    assert max(values) - min(values) < 1e-12


def test_torch_backend_matches_numpy():
    pytest.importorskip("torch")
    t, v = _pairs(257, 12, seed=8)
    a = alignment_difficulty(t, v, block=50)
    b = alignment_difficulty(t, v, block=50, backend="torch", device="cpu")
    assert b.ad == pytest.approx(a.ad, abs=1e-12)
    att = pair_attribution(t, v, block=64, backend="torch", device="cpu")
    assert np.allclose(att.contribution, pair_attribution(t, v).contribution, atol=1e-14)


# ------------------------------------------------------------------------------------------- attribution


@given(pair_sets(), st.floats(0, 1))
def test_attribution_sums_to_ad(pairs, alpha):
    t, v = pairs
    att = pair_attribution(t, v, alpha=alpha, block=5)
    assert att.contribution.sum() == pytest.approx(att.result.ad, abs=1e-12)
    assert np.all(att.feature >= -1e-15) and np.all(att.structure >= -1e-15)


def test_attribution_rows_match_brute_force_rows():
    t, v = _pairs(25, 4, seed=9)
    att = pair_attribution(t, v, alpha=0.3, laion_scale=False)
    tn = t / np.linalg.norm(t, axis=1, keepdims=True)
    vn = v / np.linalg.norm(v, axis=1, keepdims=True)
    n = 25
    for i in range(n):
        row = sum(abs(vn[i] @ vn[j] - tn[i] @ tn[j]) for j in range(n) if j != i)
        assert att.structure[i] == pytest.approx(0.7 * row / n**2, abs=1e-14)
        assert att.feature[i] == pytest.approx(0.3 * (1 - tn[i] @ vn[i]) / n, abs=1e-14)


def test_attribution_ranks_dirty_label_poisons_first():
    # clustered concepts; poisons: text of concept 0 with an image of concept 1
    rng = np.random.default_rng(10)
    centres_t, centres_v = rng.normal(size=(5, 32)), rng.normal(size=(5, 32))
    labels = np.repeat(np.arange(5), 20)
    t = centres_t[labels] + 0.3 * rng.normal(size=(100, 32))
    v = centres_v[labels] + 0.3 * rng.normal(size=(100, 32))
    v[:5] = centres_v[1] + 0.3 * rng.normal(size=(5, 32))
    att = pair_attribution(t, v, alpha=0.0)
    assert set(att.top(5)) == set(range(5))


# ------------------------------------------------------------------------------------------- incremental


@given(pair_sets(max_n=30), st.lists(st.integers(1, 9), min_size=1, max_size=6), st.integers(1, 8))
def test_incremental_equals_exact(pairs, sizes, block):
    t, v = pairs
    acc = IncrementalAD(block=block)
    start = 0
    for size in sizes:
        stop = min(t.shape[0], start + size)
        if stop > start:
            acc.add(t[start:stop], v[start:stop])
        start = stop
    if start < t.shape[0]:
        acc.add(t[start:], v[start:])
    r = acc.result()
    ref = alignment_difficulty(t, v)
    assert r.n == ref.n
    assert r.ad == pytest.approx(ref.ad, abs=1e-12)
    assert r.d_stru == pytest.approx(ref.d_stru, abs=1e-12)
    assert np.allclose(acc.attribution().contribution, pair_attribution(t, v).contribution, atol=1e-14)


def test_incremental_remove_equals_exact_on_remaining():
    t, v = _pairs(80, 6, seed=11)
    acc = IncrementalAD(block=16)
    acc.add(t, v)
    removed = [0, 3, 4, 40, 79]
    acc.remove(removed)
    keep = np.setdiff1d(np.arange(80), removed)
    assert acc.result().ad == pytest.approx(alignment_difficulty(t[keep], v[keep]).ad, abs=1e-12)
    acc.add(t[removed], v[removed])  # back to all 80, in a different order
    assert acc.result().ad == pytest.approx(alignment_difficulty(t, v).ad, abs=1e-12)


def test_incremental_sweep_is_one_pass():
    """A C_P sweep: benign set, then poison batches added one by one — every point equals a recomputation."""
    t, v = _pairs(60, 5, seed=12)
    pt, pv = _pairs(30, 5, seed=13, coupling=-1.0)
    acc = IncrementalAD()
    acc.add(t, v)
    for k in range(1, 7):
        got = acc.add(pt[(k - 1) * 5 : k * 5], pv[(k - 1) * 5 : k * 5])
        want = alignment_difficulty(np.r_[t, pt[: k * 5]], np.r_[v, pv[: k * 5]])
        assert got.ad == pytest.approx(want.ad, abs=1e-12)


def test_incremental_guards():
    acc = IncrementalAD()
    assert acc.add(np.ones((1, 3)), np.ones((1, 3))) is None  # one pair: no AD yet
    with pytest.raises(InputError, match="at least 2 pairs"):
        acc.result()
    with pytest.raises(InputError, match="dimension d=3"):
        acc.add(np.ones((2, 4)), np.ones((2, 4)))
    with pytest.raises(InputError, match="indices must lie"):
        acc.remove([5])
    with pytest.raises(InputError, match="precision"):
        IncrementalAD(precision="auto")


# ------------------------------------------------------------------------------------------- sampled


def test_sampled_ci_covers_exact_value_at_least_90_of_100():
    t, v = _pairs(400, 16, seed=14, coupling=0.5)
    exact = alignment_difficulty(t, v)
    covered = 0
    for seed in range(100):
        r = alignment_difficulty_sampled(t, v, n_samples=3000, seed=seed)
        assert r.d_fea == pytest.approx(exact.d_fea, abs=1e-12)  # the feature term is exact
        lo, hi = r.ci95
        covered += lo <= exact.ad <= hi
    assert covered >= 90


def test_sampled_is_unbiased_and_tightens():
    t, v = _pairs(200, 8, seed=15)
    exact = alignment_difficulty(t, v)
    est = [alignment_difficulty_sampled(t, v, n_samples=2000, seed=s).d_stru for s in range(200)]
    # mean of 200 independent estimates: standard error ~ sd/sqrt(200)
    assert abs(np.mean(est) - exact.d_stru) < 4 * np.std(est) / np.sqrt(200)
    wide = alignment_difficulty_sampled(t, v, n_samples=1000, seed=0)
    narrow = alignment_difficulty_sampled(t, v, n_samples=100_000, seed=0)
    assert (narrow.ci95[1] - narrow.ci95[0]) < (wide.ci95[1] - wide.ci95[0]) / 5
    assert alignment_difficulty_sampled(t, v, 5000, seed=3).ad == alignment_difficulty_sampled(t, v, 5000, seed=3).ad


def test_sampled_never_pairs_a_row_with_itself():
    # with n=2 the only pair is (0, 1): every draw must hit it, so the estimate is exact and the CI has width 0
    t, v = _pairs(2, 3, seed=16)
    r = alignment_difficulty_sampled(t, v, n_samples=500, seed=1)
    assert r.d_stru == pytest.approx(alignment_difficulty(t, v).d_stru, abs=1e-15)
    assert r.ci95[1] - r.ci95[0] == pytest.approx(0.0, abs=1e-15)


# ------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "text, image, match",
    [
        (np.ones((3, 2)), np.ones((4, 2)), "same number of pairs"),
        (np.ones((3, 2)), np.ones((3, 5)), "same dimension"),
        (np.ones((1, 2)), np.ones((1, 2)), "at least 2 pairs"),
        (np.ones(3), np.ones(3), "2-D array"),
        (np.array([[1.0, np.nan], [1, 1]]), np.ones((2, 2)), "text contains NaN or inf"),
        (np.ones((2, 2)), np.array([[1.0, 1], [np.inf, 1]]), "image contains NaN or inf"),
        (np.array([[0.0, 0], [1, 1]]), np.ones((2, 2)), "text row 0 is a zero vector"),
        (np.ones((2, 2)), np.array([[1.0, 1], [0, 0]]), "image row 1 is a zero vector"),
        (np.array([["a", "b"], ["c", "d"]]), np.ones((2, 2)), "real numbers"),
    ],
)
def test_bad_inputs_raise_named_errors(text, image, match):
    with pytest.raises(InputError, match=match):
        alignment_difficulty(text, image)


@pytest.mark.parametrize("alpha", [-0.1, 1.5, float("nan"), "x"])
def test_alpha_outside_unit_interval(alpha):
    t, v = _pairs(5, 2)
    with pytest.raises(InputError, match="alpha"):
        alignment_difficulty(t, v, alpha=alpha)


def test_bad_options():
    t, v = _pairs(5, 2)
    with pytest.raises(InputError, match="block"):
        alignment_difficulty(t, v, block=0)
    with pytest.raises(InputError, match="backend"):
        alignment_difficulty(t, v, backend="jax")
    with pytest.raises(InputError, match="precision"):
        alignment_difficulty(t, v, precision="float16")
    with pytest.raises(InputError, match="CPU only"):
        alignment_difficulty(t, v, device="cuda")
    with pytest.raises(InputError, match="n_samples"):
        alignment_difficulty_sampled(t, v, n_samples=1)


@pytest.mark.parametrize("scale", [1e-200, 1e200, 1e300])
def test_extreme_row_scales_are_normalised_not_refused(scale):
    """AD is scale-invariant per row: rows of 1e-200 or 1e200 give the AD of the unscaled rows (they used to be
    "zero vectors" or "too large to normalise")."""
    rng = np.random.default_rng(3)
    t, v = rng.normal(size=(12, 5)), rng.normal(size=(12, 5))
    want = alignment_difficulty(t, v)
    got = alignment_difficulty(t * scale, v * scale)
    assert got.ad == pytest.approx(want.ad, abs=1e-12) and got.d_stru == pytest.approx(want.d_stru, abs=1e-12)
