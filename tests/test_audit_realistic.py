"""The audit's validation in a CLIP-like space (dataset_audit.realistic), the concept-disagreement baseline, and F16/T8
built from what the command writes."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dataset_audit.realistic import ClipLikeConfig, clip_like_clean, main, poison_clip_like, space_statistics
from implosion_base.errors import InputError
from paper_figures.audit_figures import fig16, passes, tab8
from paper_figures.sources import Sources
from theory.detection import concept_disagreement

ROOT = Path(__file__).resolve().parents[1]
SMALL = ClipLikeConfig(n_concepts=24, mean_size=20)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_clean_space_has_clip_like_statistics(seed):
    cfg = ClipLikeConfig()
    clean = clip_like_clean(cfg, seed)
    s = space_statistics(clean, seed)
    assert 0.25 <= s["matched_mean"] <= 0.35 and 0.03 <= s["matched_sd"] <= 0.08
    assert abs(s["weak_fraction"] - cfg.weak) < 0.03 and s["weak_mean"] < s["well_aligned_mean"] - 0.05
    assert s["across_mean"] < s["matched_mean"] - 0.08 and s["size_max"] >= 4 * s["size_min"]
    text, image, concept, _ = clean
    assert np.allclose(np.linalg.norm(text, axis=1), 1, atol=1e-5)
    assert np.allclose(np.linalg.norm(image, axis=1), 1, atol=1e-5)
    # near-duplicate concepts: some pair of concepts' mean images is far closer than the typical pair
    centres = np.stack([image[concept == k].mean(0) for k in range(cfg.n_concepts)])
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    sims = centres @ centres.T
    off = sims[~np.eye(len(sims), dtype=bool)]
    assert off.max() > np.median(off) + 0.1


def test_poisons_are_what_they_say():
    clean = clip_like_clean(SMALL, 0)
    text, image, concept, _ = clean
    n = len(text)
    t, v, c, truth, chosen = poison_clip_like(clean, 3, 4, "dirty", 1.0, seed=0)
    assert len(t) == n + 12 and truth.sum() == 12 and not truth[:n].any() and len(chosen) == 3
    assert np.array_equal(t[:n], text) and np.array_equal(v[:n], image)
    for i in np.flatnonzero(truth):
        own = np.flatnonzero((text == t[i]).all(1))  # the caption is one of its concept's captions
        shown = np.flatnonzero((image == v[i]).all(1))  # the image is another concept's image
        assert concept[own[0]] == c[i] and c[i] in chosen and concept[shown[0]] != c[i]
    # Nightshade-like with strength 0 is a copy of a clean pair of A; with strength 1 a dirty-label pair
    _, v0, _, _, _ = poison_clip_like(clean, 3, 4, "nightshade", 0.0, seed=0)
    _, v1, _, _, _ = poison_clip_like(clean, 3, 4, "nightshade", 1.0, seed=0)
    assert all(concept[np.argmax(image @ x)] == k for x, k in zip(v0[n:], c[n:]))
    assert np.allclose(v1[n:], v[n:], atol=1e-6)
    with pytest.raises(InputError, match="dirty or nightshade"):
        poison_clip_like(clean, 3, 4, "blend", 0.5, seed=0)
    with pytest.raises(InputError, match="shift"):
        poison_clip_like(clean, 3, 4, "nightshade", 1.5, seed=0)


def test_concept_disagreement_by_hand():
    rng = np.random.default_rng(4)
    centres = np.eye(3, 8)
    concept = np.repeat(np.arange(3), 10)
    image = centres[concept] + 0.05 * rng.standard_normal((30, 8))
    image /= np.linalg.norm(image, axis=1, keepdims=True)
    caption = concept.copy()
    caption[0] = 2  # a dirty-label pair: caption of concept 2, image of concept 0
    g = concept_disagreement(image, caption)
    # independent computation, one pair at a time
    means = [image[caption == k].sum(0) for k in range(3)]
    means = [m / np.linalg.norm(m) for m in means]
    by_hand = [max(float(x @ m) for m in means) - float(x @ means[k]) for x, k in zip(image, caption)]
    assert np.allclose(g, by_hand, atol=1e-12)
    assert g[0] > 0.5 and np.all(g[1:] == 0) and np.argmax(g) == 0
    with pytest.raises(InputError):
        concept_disagreement(image, caption[:5])
    with pytest.raises(InputError):
        concept_disagreement(image, caption - 1)


def test_the_command_writes_both_tables_and_the_figures_read_them(tmp_path):
    out = tmp_path / "results" / "audit" / "realistic"
    assert main(["--out", str(out), "--seeds", "0", "--poisoned-concepts", "3", "--poison-per-concept", "4,16",
                 "--n-concepts", "24", "--mean-size", "20"]) == 0
    rows = list(csv.DictReader(open(out / "realistic.csv")))
    assert len(rows) == 8 and {r["kind"] for r in rows} == {"dirty", "nightshade"}
    dirty = [r for r in rows if r["kind"] == "dirty"]
    # dirty-label pairs in a CLIP-like space: the captions' concepts give them away, whatever the audit does
    assert all(float(r["ap_of_disagreement"]) >= 0.9 for r in dirty)
    clean_n = len(clip_like_clean(SMALL, 0)[0])
    for r in rows:
        assert int(r["n"]) == clean_n + 3 * int(r["p"]) and 0 <= float(r["ap_of_score"]) <= 1
        assert float(r["c_p_error"]) == pytest.approx(abs(int(r["estimated_c_p"]) - 3) / 3)
    assert len(list(csv.DictReader(open(out / "space.csv")))) == 1

    src = Sources(results=tmp_path / "results", data=tmp_path / "data", verbose=False)
    figs = tmp_path / "figs"
    figs.mkdir()
    built = tab8(src, figs)
    table = list(csv.DictReader(open(figs / "tab8.csv")))
    assert not built.missing and len(table) == 8  # 4 poisons x 2 values of p, one mix each
    got = {(t["poison"], int(t["p"])): t for t in table}
    for r in rows:
        name = "dirty-label" if r["kind"] == "dirty" else f"Nightshade-like λ = {float(r['strength']):g}"
        t = got[(name, int(r["p"]))]
        row = {k: float(r[k]) for k in ("ap_of_score", "c_p_error")}
        assert t[[h for h in t if h.startswith("audit passes")][0]] == f"{int(passes(row))} of 1"
        assert t["AP: concept disagreement"] == f"{float(r['ap_of_disagreement']):.3f}"
    assert "matched cosine" in built.caption
    assert not fig16(src, figs).missing and (figs / "fig16.png").is_file()


def test_the_figures_name_the_command_without_data(tmp_path):
    src = Sources(results=tmp_path, data=tmp_path / "data", verbose=False)
    assert "python -m dataset_audit.realistic" in tab8(src, tmp_path).missing[0]
    assert "python -m dataset_audit.realistic" in fig16(src, tmp_path).missing[0]


@pytest.mark.parametrize("args, message", [
    (["--poisoned-concepts", "0"], "--poisoned-concepts must lie in 1..99"),
    (["--n-concepts", "2"], "n_concepts"),
    (["--poison-per-concept", "x"], "--poison-per-concept"),
])
def test_bad_input_is_one_line(tmp_path, args, message):
    r = subprocess.run([sys.executable, "-m", "dataset_audit.realistic", "--out", str(tmp_path / "o"), *args],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "o").exists()
