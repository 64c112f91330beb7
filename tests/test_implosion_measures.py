"""theory.implosion: the shared measures, against independent computations and the cases where they must
disagree (an output on a wrong concept: inaccurate, not meaningless) or agree (outputs at the average image)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from implosion_base.errors import InputError
from theory.implosion import implosion_measures, make_reference, salience


def _refs(k: int = 30, d: int = 40, seed: int = 0) -> np.ndarray:
    """CLIP-like references: a shared direction plus orthonormal concept directions (every pair at cosine 0.5)."""
    basis, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, k + 1)))
    x = basis[:, :1].T + basis[:, 1:].T  # (k, d)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_salience_matches_a_loop():
    s = np.random.default_rng(1).normal(size=(5, 9))
    want = [(row.max() - row.mean()) / row.std() for row in s]
    assert np.allclose(salience(s), want)
    assert salience(np.ones((2, 4))).tolist() == [0.0, 0.0]


def test_graded_measures_match_direct_computation():
    refs = _refs()
    rng = np.random.default_rng(2)
    labels = rng.integers(0, len(refs), size=50)
    out = refs[labels] + 0.8 * rng.normal(size=(50, refs.shape[1])) / np.sqrt(refs.shape[1])
    m = implosion_measures(out, labels, make_reference(refs))
    unit = out / np.linalg.norm(out, axis=1, keepdims=True)
    sim = unit @ refs.T
    own = np.array([sim[i, c] for i, c in enumerate(labels)])
    best_other = np.array([max(sim[i, j] for j in range(len(refs)) if j != c) for i, c in enumerate(labels)])
    assert m["acc"] == pytest.approx(np.mean(sim.argmax(1) == labels))
    assert m["own_sim"] == pytest.approx(own.mean())
    assert m["margin"] == pytest.approx(np.mean(own - best_other))


def test_wrong_concept_is_inaccurate_but_not_meaningless():
    """Every output exactly on another concept: accuracy 0, meaningless 0 (the measures disagree)."""
    refs = _refs()
    labels = np.arange(len(refs))
    m = implosion_measures(refs[(labels + 1) % len(refs)], labels, make_reference(refs))
    assert m["acc"] == 0.0 and m["meaningless_rate"] == 0.0 and m["margin"] < 0


def test_average_image_is_meaningless_and_inaccurate():
    """Outputs at the average image (plus a little noise): both measures fire."""
    refs = _refs()
    rng = np.random.default_rng(3)
    labels = np.arange(len(refs))
    out = refs.mean(0) + 0.01 * rng.normal(size=refs.shape)
    m = implosion_measures(out, labels, make_reference(refs))
    assert m["meaningless_rate"] == 1.0 and m["acc"] <= 0.1


def test_drift_toward_the_average_keeps_meaning():
    """o = a r_y + b mean: cosines to every concept fall together, yet the concept still stands out; a cosine
    threshold would call these meaningless, the salience does not."""
    refs = _refs()
    labels = np.arange(len(refs))
    mean = refs.mean(0) / np.linalg.norm(refs.mean(0))
    ref = make_reference(refs)
    clean = implosion_measures(refs, labels, ref)
    drifted = implosion_measures(0.4 * refs + 2.0 * mean, labels, ref)
    assert drifted["own_sim"] < clean["own_sim"] - 0.05  # the graded cosine measure sees the drift
    assert drifted["acc"] == 1.0 and drifted["meaningless_rate"] == 0.0


@settings(max_examples=25, deadline=None)
@given(scale=st.floats(0.01, 100.0), seed=st.integers(0, 1000))
def test_measures_are_scale_invariant(scale, seed):
    refs = _refs(seed=seed % 7)
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(refs), size=20)
    out = rng.normal(size=(20, refs.shape[1]))
    ref = make_reference(refs)
    a, b = implosion_measures(out, labels, ref), implosion_measures(scale * out, labels, ref)
    assert a == pytest.approx(b)


def test_null_level_is_between_mixtures_and_concepts():
    refs = _refs()
    ref = make_reference(refs)
    assert salience(refs[:5] @ refs.T).min() > ref.null_salience
    assert make_reference(refs, seed=0).null_salience == ref.null_salience  # deterministic


def test_bad_input():
    refs = _refs()
    ref = make_reference(refs)
    with pytest.raises(InputError, match="labels"):
        implosion_measures(refs[:2], np.array([0, 99]), ref)
    with pytest.raises(InputError, match="zero row"):
        implosion_measures(np.zeros((1, refs.shape[1])), np.array([0]), ref)
    with pytest.raises(InputError, match="at least 2"):
        make_reference(refs[:1])
    assert np.isnan(implosion_measures(refs[:0], np.array([], dtype=int), ref)["acc"])
