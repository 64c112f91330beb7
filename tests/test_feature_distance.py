"""Fréchet and kernel distances against closed forms and direct loops; the kernel distance is unbiased where the
Fréchet distance is not (the reason the harness reports both)."""

from __future__ import annotations

import numpy as np
import pytest

from empirical.feature_distance import frechet_distance, kernel_distance
from implosion_base.errors import InputError


def test_frechet_distance_against_closed_form():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4000, 3))
    assert frechet_distance(a, a) == pytest.approx(0, abs=1e-9)
    b = rng.normal(size=(4000, 3)) * 2 + np.array([1.0, 0, 0])
    # N(0, I) vs N(m, 4I): |m|^2 + 3 (1 + 4 - 2*2) = 1 + 3
    assert frechet_distance(a, b) == pytest.approx(4.0, abs=0.25)


def test_kernel_distance_matches_a_loop():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(7, 4)), rng.normal(size=(5, 4)) + 0.5

    def k(x, y):
        return (x @ y / 4 + 1) ** 3

    xx = sum(k(a[i], a[j]) for i in range(7) for j in range(7) if i != j) / (7 * 6)
    yy = sum(k(b[i], b[j]) for i in range(5) for j in range(5) if i != j) / (5 * 4)
    xy = sum(k(a[i], b[j]) for i in range(7) for j in range(5)) / 35
    assert kernel_distance(a, b) == pytest.approx(xx + yy - 2 * xy, rel=1e-12)
    assert kernel_distance(a, b) == pytest.approx(kernel_distance(b, a), rel=1e-12)


def test_kernel_distance_is_unbiased_where_frechet_is_not():
    """Two samples of one distribution: over many small draws the kernel distance averages to 0 (it is negative
    about as often as positive), the Fréchet distance stays well above 0 and grows as the sample shrinks."""
    rng = np.random.default_rng(2)
    kid = {n: [] for n in (10, 40)}
    fd = {n: [] for n in (10, 40)}
    for _ in range(300):
        for n in (10, 40):
            a, b = rng.normal(size=(n, 3)), rng.normal(size=(n, 3))
            kid[n].append(kernel_distance(a, b))
            fd[n].append(frechet_distance(a, b))
    for n in (10, 40):
        mean, se = np.mean(kid[n]), np.std(kid[n]) / np.sqrt(len(kid[n]))
        assert abs(mean) < 3 * se
        assert np.mean(np.array(kid[n]) < 0) > 0.2
    assert np.mean(fd[10]) > 2 * np.mean(fd[40]) > 0
    # and a real shift is detected by both
    a, b = rng.normal(size=(40, 3)), rng.normal(size=(40, 3)) + 1.0
    assert kernel_distance(a, b) > 10 * np.std(kid[40]) and frechet_distance(a, b) > np.mean(fd[40])


@pytest.mark.parametrize("measure", [frechet_distance, kernel_distance])
def test_bad_feature_sets_are_refused(measure):
    a = np.zeros((5, 3))
    with pytest.raises(InputError, match="same width"):
        measure(a, a[:, :2])
    with pytest.raises(InputError, match="n >= 2"):
        measure(a[:1], a)
    bad = a.copy()
    bad[0, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        measure(bad, a)
