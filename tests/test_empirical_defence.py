"""The AD-attribution poison detector: ranking metrics against brute force, and it finds synthetic mismatches."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from theory.detection import detect_poisons, rank_quality
from implosion_base.errors import InputError


def _brute(scores, truth):
    """AP and precision@k by sorting explicitly (stable on ties by index)."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    m = sum(truth)
    hits, ap = 0, 0.0
    for rank, i in enumerate(order, 1):
        if truth[i]:
            hits += 1
            ap += hits / rank
    top = sum(truth[i] for i in order[:m])
    return ap / m, top / m


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.booleans()), min_size=1, max_size=40))
def test_metrics_match_brute_force(items):
    scores = np.array([float(s) for s, _ in items])
    truth = np.array([t for _, t in items])
    d = rank_quality(scores, truth)
    if not truth.any():
        assert np.isnan(d.average_precision) and d.n_poison == 0
        return
    ap, pk = _brute(list(scores), list(truth))
    assert d.average_precision == pytest.approx(ap) and d.precision_at_k == pytest.approx(pk)
    assert d.recall[-1] == pytest.approx(1.0) and np.all(np.diff(d.recall) > 0)


def test_perfect_reversed_and_random_rankings():
    truth = np.r_[np.ones(10, bool), np.zeros(90, bool)]
    assert rank_quality(np.r_[np.ones(10), np.zeros(90)], truth).average_precision == 1.0
    worst = rank_quality(np.r_[np.zeros(10), np.ones(90)], truth)
    assert worst.precision_at_k == 0 and worst.average_precision < 0.2
    rng = np.random.default_rng(0)
    aps = [rank_quality(rng.random(100), truth).average_precision for _ in range(200)]
    assert abs(np.mean(aps) - 0.1) < 0.05  # a random ranking scores about the poison fraction
    with pytest.raises(InputError):
        rank_quality(np.zeros(3), np.zeros(4, bool))


def test_detector_finds_mismatched_pairs_in_a_clustered_mix():
    rng = np.random.default_rng(1)
    k, per, d = 8, 30, 32
    centres = np.linalg.qr(rng.normal(size=(d, d)))[0][:k]
    labels = np.repeat(np.arange(k), per)

    def emb(c):
        x = centres[c] + 0.15 * rng.normal(size=(len(c), d))
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    text, image = emb(labels), emb(labels)
    captions = np.arange(4)                      # poisons: captions of concepts 0..3, images of concept (c+1) % k
    text_p, image_p = emb(np.repeat(captions, 10)), emb(np.repeat((captions + 1) % k, 10))
    t, v = np.vstack([text, text_p]), np.vstack([image, image_p])
    truth = np.r_[np.zeros(len(text), bool), np.ones(len(text_p), bool)]
    d = detect_poisons(t, v, truth)
    assert d.n_poison == 40 and d.average_precision > 0.95 and d.precision_at_k > 0.9


def test_cli_scores_both_poison_types_on_micro_mixes(tmp_path, capsys):
    pytest.importorskip("torch")
    import csv

    from empirical.defence import main

    out = tmp_path / "d"
    assert main(["--preset", "micro", "--poisoned-concepts", "0,2", "--out", str(out), "--cache",
                 str(tmp_path / "c")]) == 0
    with open(out / "detection.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["poison_type"], r["c_p"]) for r in rows] == [("dirty", "2"), ("nightshade", "2")]
    for r in rows:
        assert 0 < float(r["detect_ap"]) <= 1 and int(r["n_poison"]) == 2 * 4
    # dirty-label pairs contradict their captions in the judge's space: ranked above chance
    dirty = rows[0]
    assert float(dirty["detect_ap"]) > float(dirty["detect_base_rate"])
    assert (out / "pr-dirty-cp2-s0.csv").read_text().startswith("precision,recall\n")
    with pytest.raises(InputError, match="unknown poison type 'clean'"):
        main(["--preset", "micro", "--poison-type", "clean", "--out", str(out), "--cache", str(tmp_path / "c")])


def test_cli_epsilon_sets_the_budget_and_reports_the_poisons_size(tmp_path):
    pytest.importorskip("torch")
    import csv

    from empirical.defence import main

    out = tmp_path / "d"
    assert main(["--preset", "micro", "--poisoned-concepts", "2", "--poison-type", "nightshade", "--epsilon", "0.02",
                 "--out", str(out), "--cache", str(tmp_path / "c")]) == 0
    row = next(csv.DictReader(open(out / "detection.csv", newline="")))
    assert float(row["poison_linf"]) <= 0.02 + 1 / 255 + 1e-6  # the budget, up to uint8 rounding
    assert 0 < float(row["poison_latent_ratio"]) and float(row["poison_psnr"]) > 20
    with pytest.raises(InputError, match="epsilon"):
        main(["--preset", "micro", "--poisoned-concepts", "2", "--epsilon", "0", "--out", str(out), "--cache", str(tmp_path / "c")])
