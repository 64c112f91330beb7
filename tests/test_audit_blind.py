"""The audit is never silently blind (dataset_audit.flags): when the mixture of pair cosines finds no clean second
population, the robust outlier rule flags what lies plainly below the matched pairs, and report.md says which rule
flagged and why. A handful of blatant dirty-label pairs in a small clean folder are flagged, and nothing is in the
same folder without them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dataset_audit.flags import flag_pairs, mixture_flags, modified_z, outlier_flags

ROOT = Path(__file__).resolve().parents[1]
NAMES = ["circle", "square", "triangle", "star", "hexagon"]


def _cosines(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The issue's small folder: 60 matched pairs (12 each of 5 concepts) with cosines ≈ 0.8 (sd 0.04), and 1-8
    dirty-label pairs with cosines spread over [-0.4, 0.2]: (clean cosines, poison cosines)."""
    rng = np.random.default_rng(seed)
    n_poison = int(rng.integers(1, 9))
    return rng.normal(0.8, 0.04, 60), rng.uniform(-0.4, 0.2, n_poison)


def _write_folder(path: Path, cos: np.ndarray, concept: np.ndarray, seed: int = 0) -> None:
    """Pairs with exactly the cosines ``cos``: a text near its concept's centroid, an image at that cosine from it."""
    rng = np.random.default_rng(seed)
    d = 32
    centres = rng.normal(size=(len(NAMES), d))
    t = centres[concept] + 0.3 * rng.normal(size=(len(cos), d))
    t /= np.linalg.norm(t, axis=1, keepdims=True)
    w = rng.normal(size=(len(cos), d))
    w -= np.sum(w * t, axis=1, keepdims=True) * t
    w /= np.linalg.norm(w, axis=1, keepdims=True)
    v = cos[:, None] * t + np.sqrt(1 - cos[:, None] ** 2) * w
    captions = np.array([f"a photo of a {NAMES[c]}" for c in concept])
    np.savez(path, text=t.astype(np.float32), image=v.astype(np.float32), caption=captions)


def _audit(tmp: Path, cos: np.ndarray, concept: np.ndarray, name: str) -> tuple[Path, str]:
    _write_folder(tmp / f"{name}.npz", cos, concept)
    (tmp / "concepts.txt").write_text("\n".join(NAMES) + "\n")
    out = tmp / name
    proc = subprocess.run([sys.executable, "-m", "dataset_audit", str(tmp / f"{name}.npz"), "--concepts-file",
                           str(tmp / "concepts.txt"), "--no-predict", "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return out, (out / "report.md").read_text(encoding="utf-8")


def test_blatant_poisons_in_a_small_folder_are_flagged_when_the_mixture_is_rejected(tmp_path: Path):
    clean, poison = _cosines(254)
    cos = np.r_[clean, poison]
    assert not mixture_flags(cos)[1]["two_populations"]  # the case the fallback exists for (EM stuck, as in #28)
    concept = np.r_[np.repeat(np.arange(5), 12), np.arange(len(poison)) % 5]
    out, report = _audit(tmp_path, cos, concept, "poisoned")
    flags = np.loadtxt(out / "pairs.csv", delimiter=",", skiprows=1, usecols=_column(out, "flagged"))
    assert flags[:60].sum() == 0 and flags[60:].all()  # every poison, and nothing else
    assert f"**{len(poison)} pairs flagged** by the robust outlier rule" in report
    assert "the mixture found no clean second population" in report and "modified z-score" in report
    assert "| rank | flagged | cosine | concept | caption |" in report


def test_the_same_folder_without_its_poisons_flags_nothing(tmp_path: Path):
    clean, _ = _cosines(254)
    out, report = _audit(tmp_path, clean, np.repeat(np.arange(5), 12), "clean")
    assert "**0 pairs flagged**" in report and "**C_P = 0**" in report
    flags = np.loadtxt(out / "pairs.csv", delimiter=",", skiprows=1, usecols=_column(out, "flagged"))
    assert flags.sum() == 0


def _column(out: Path, name: str) -> int:
    return (out / "pairs.csv").read_text(encoding="utf-8").splitlines()[0].split(",").index(name)


def test_over_a_hundred_small_folders_every_poison_is_flagged_and_few_clean_folders_flag_anything():
    """The construction above, seeds 0-99: whichever rule flags (the mixture, or the fallback when the mixture
    finds no second population) flags every poison; the same folders without their poisons flag nothing in at least
    95 of 100 (measured: 98 — a pure Gaussian sample of 60 sometimes passes the mixture's test, a known limit
    stated in docs/audit.md)."""
    missed, clean_with_flags, rules = 0, 0, set()
    for seed in range(100):
        clean, poison = _cosines(seed)
        flagged, _, rule = flag_pairs(np.r_[clean, poison], 3.5)
        missed += int((~flagged[60:]).sum())
        rules.add(rule["rule"])
        clean_with_flags += bool(flag_pairs(clean, 3.5)[0].any())
    assert missed == 0 and clean_with_flags <= 5, (missed, clean_with_flags)


def test_the_fallback_flags_exactly_below_its_cut():
    clean, poison = _cosines(275)
    cos = np.r_[clean, poison]
    flagged, _, rule = flag_pairs(cos, 3.5)
    assert rule["rule"] == "robust outlier" and flagged[60:].all() and not flagged[:60].any()
    assert np.all(cos[flagged] < rule["cosine_cut"]) and np.all(cos[~flagged] >= rule["cosine_cut"])
    assert rule["false_flag_rate"] == pytest.approx(2.326e-4, rel=1e-3)  # Phi(-3.5), the rule's nominal rate


def test_the_outlier_rule_is_low_sided_and_is_modified_z():
    x = np.r_[np.linspace(0.7, 0.9, 50), -0.5, 3.0]
    flagged, cut = outlier_flags(x, 3.5)
    assert flagged.tolist() == [False] * 50 + [True, False]  # a high cosine is no poison
    assert np.array_equal(flagged, modified_z(x) < -3.5) and np.all(x[flagged] < cut) and np.all(x[~flagged] >= cut)
