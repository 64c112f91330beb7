"""The meaningless rate (empirical.meaningless) and its known-truth check (empirical.known_truth): the rule on inputs
whose answer is known, the constructed images, and the renamed salience rate in old tables."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from empirical.known_truth import (KnownTruthConfig, calibration_split, derangement, main, meaningless_images,
                                   shuffled_patches)
from empirical.meaningless import calibrate, calibrate_decoded, calibrate_on_samples, meaningless_mask, \
    meaningless_rate, nearest_distance, nearest_sample_distance, readings
from implosion_base.errors import InputError
from implosion_base.records import current_header

ROOT = Path(__file__).resolve().parents[1]


def _clusters(rng, k=20, n=30, d=16, spread=0.05):
    centres = rng.normal(size=(k, d)) + 3.0  # positive-ish features, as after a SiLU and a pool
    labels = np.repeat(np.arange(k), n)
    return centres, centres[labels] + spread * rng.normal(size=(k * n, d)), labels


def test_the_rule_flags_what_is_near_no_concept_or_read_unsure_and_nothing_else():
    rng = np.random.default_rng(0)
    centres, feats, labels = _clusters(rng)
    rule = calibrate(feats, labels, rng.uniform(0.9, 1.0, len(labels)))
    _, new, new_labels = _clusters(np.random.default_rng(1))
    new = centres[new_labels] + 0.05 * np.random.default_rng(2).normal(size=new.shape)  # fresh renders
    assert meaningless_rate(rule, new, np.full(len(new), 0.95)) <= 0.05
    noise = rng.normal(size=(200, 16)) * 3.0  # far from every concept: meaningless by the far reading
    assert meaningless_rate(rule, noise, np.full(200, 0.99)) == 1.0
    # a render read unsure is meaningless; a confident render of the *wrong* concept is not (it is near one)
    assert meaningless_mask(rule, centres[:3], np.array([0.5, 0.95, 0.95])).tolist() == [True, False, False]
    assert np.isnan(meaningless_rate(rule, np.zeros((0, 16)), np.zeros(0)))


def test_the_far_threshold_is_the_leave_one_out_quantile_computed_by_hand():
    rng = np.random.default_rng(3)
    _, feats, labels = _clusters(rng, k=4, n=5, d=6, spread=0.3)
    rule = calibrate(feats, labels, np.ones(len(labels)), quantile=0.1)
    own = []
    for i in range(len(labels)):
        others = [j for j in range(len(labels)) if labels[j] == labels[i] and j != i]
        m = feats[others].mean(0)
        own.append(1 - feats[i] @ m / np.linalg.norm(feats[i]) / np.linalg.norm(m))
    assert rule.far == pytest.approx(np.quantile(own, 0.9), abs=1e-12)
    means = np.stack([feats[labels == c].mean(0) for c in range(4)])
    expected = 1 - max(feats[0] @ mu / np.linalg.norm(feats[0]) / np.linalg.norm(mu) for mu in means)
    assert nearest_distance(rule, feats[:1])[0] == pytest.approx(expected, abs=1e-12)
    with pytest.raises(InputError, match="two images of one concept"):
        calibrate(feats[:5], np.arange(5) % 5, np.ones(5))  # five concepts, one image each


def _held(k=6, per=8, size=16, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (k * per, size, size, 3), dtype=np.uint8)
    return images, np.repeat(np.arange(k), per)


def test_the_constructed_images_are_what_their_names_say():
    images, labels = _held()
    cfg = KnownTruthConfig(n=20, average_of=3, patches=4, tint=0.25, seed=1)
    fam = meaningless_images(images, labels, cfg)
    assert all(v.shape == (20, 16, 16, 3) and v.dtype == np.uint8 for v in fam.values())
    for name in ("blank", "single_colour"):  # one colour per canvas
        flat = fam[name].reshape(20, -1, 3)
        assert np.all(flat == flat[:, :1])
    assert np.all(fam["blank"] >= np.floor(255 * 0.75))  # the renders' own tints: white tinted by <= 0.25
    # the average of every concept: one render of each, pixel mean (checked against a direct recomputation)
    again = meaningless_images(images, labels, cfg)
    assert all(np.array_equal(again[k], v) for k, v in fam.items())  # deterministic in the seed
    assert not np.array_equal(meaningless_images(images, labels, KnownTruthConfig(n=20, average_of=3, seed=2))
                              ["gaussian_noise"], fam["gaussian_noise"])


def test_shuffled_tiles_move_every_tile_and_keep_every_pixel():
    rng = np.random.default_rng(4)
    images = rng.integers(0, 256, (5, 8, 8, 3), dtype=np.uint8)
    out = shuffled_patches(images, 2, np.random.default_rng(5))
    for a, b in zip(images, out):
        tiles_a = [a[i:i + 4, j:j + 4].tobytes() for i in (0, 4) for j in (0, 4)]
        tiles_b = [b[i:i + 4, j:j + 4].tobytes() for i in (0, 4) for j in (0, 4)]
        assert sorted(tiles_a) == sorted(tiles_b) and all(x != y for x, y in zip(tiles_a, tiles_b))
    perm = derangement(9, np.random.default_rng(6))
    assert sorted(perm) == list(range(9)) and np.all(perm != np.arange(9))


def test_the_rule_is_calibrated_on_one_half_of_each_concept_and_tested_on_the_other():
    labels = np.repeat(np.arange(3), 8)
    calib = calibration_split(labels)
    for c in range(3):  # renders alternate fonts: each half holds both (positions 0, 1, 4, 5 and 2, 3, 6, 7)
        assert np.flatnonzero(calib[labels == c]).tolist() == [0, 1, 4, 5]
    with pytest.raises(InputError, match="at least 3 held-out renders per concept"):
        calibration_split(np.repeat(np.arange(3), 2))


def test_bad_options_are_one_line_before_anything_is_trained(tmp_path: Path, capsys):
    with pytest.raises(InputError, match="--patches 5 must divide the image size 32"):
        main(["--preset", "cpu", "--patches", "5", "--cache", str(tmp_path)])
    with pytest.raises(InputError, match="--n-concepts"):
        main(["--preset", "cpu", "--n-concepts", "1", "--cache", str(tmp_path)])
    assert main(["--preset", "cpu", "--dry-run", "--cache", str(tmp_path)]) == 0
    assert "gaussian_noise" in capsys.readouterr().out and not any(tmp_path.iterdir())
    assert main(["--preset", "cpu", "--concepts", "100", "--dry-run", "--cache", str(tmp_path)]) == 0
    assert "concepts: 100" in capsys.readouterr().out  # a data set of other concepts: the rule's unseen check


def test_a_table_written_before_each_move_keeps_its_rates_under_their_new_names():
    old = ["seed", "unpoisoned_meaningless", "kid_unpoisoned"]  # before both moves: the salience rule
    assert current_header(old) == ["seed", "unpoisoned_no_standout", "kid_unpoisoned"]
    middle = ["seed", "unpoisoned_meaningless", "unpoisoned_no_standout"]  # between: the rule on renders
    assert current_header(middle) == ["seed", "unpoisoned_off_render", "unpoisoned_no_standout"]
    new = ["seed", "unpoisoned_meaningless", "unpoisoned_no_standout", "unpoisoned_off_render"]
    assert current_header(new) == new  # written after: every measure under its own name
    assert current_header(["benign_acc_ci95"]) == ["unpoisoned_acc_ci95"]


def test_the_meaningless_rule_needs_both_references_to_flag_an_image():
    """Generated images sit farther from the means and are read less surely than renders: the rule on renders flags
    most of a competent generator's images; the meaningless rule (off-render *and* far from every clean sample)
    flags few of them and few renders, and still noise. Thresholds recomputed by hand."""
    rng = np.random.default_rng(7)
    centres, feats, labels = _clusters(rng, spread=0.05)
    top = rng.uniform(0.95, 1.0, len(labels))
    renders = calibrate(feats, labels, top)

    def drawn(seed, n=1500):  # a competent generator: right concept, blurrier, less sure
        g = np.random.default_rng(seed)
        lab = g.integers(0, len(centres), n)
        return centres[lab] + 0.25 * g.normal(size=(n, centres.shape[1])), g.uniform(0.5, 0.95, n)

    cal_f, _ = drawn(8)
    rule = calibrate_on_samples(feats, labels, top, cal_f, quantile=0.05)
    assert rule.calibrated_on == "samples" and rule.n == 1500 and rule.off_render.quantile == 0.05
    unit = cal_f / np.linalg.norm(cal_f, axis=1, keepdims=True)
    sim = unit @ unit.T
    np.fill_diagonal(sim, -np.inf)
    assert rule.far == pytest.approx(np.quantile(1 - sim.max(1), 0.95), abs=1e-12)
    assert np.array_equal(nearest_sample_distance(rule.samples, cal_f[:7]), 1 - (unit[:7] @ unit.T).max(1))
    fresh_f, fresh_p = drawn(9)
    assert meaningless_rate(renders, fresh_f, fresh_p) >= 0.9  # the off-render rate: most of them
    assert meaningless_rate(rule, fresh_f, fresh_p) <= 0.08  # about Q = 0.05: here off-render flags nearly all
    assert meaningless_rate(rule, feats, top) <= 0.05  # renders are near their means
    noise = np.random.default_rng(10).normal(size=(300, 16)) * 3.0
    assert meaningless_rate(rule, noise, np.full(300, 0.99)) >= 0.9
    far, off = readings(rule, noise, np.full(300, 0.99))
    assert np.array_equal(meaningless_mask(rule, noise, np.full(300, 0.99)), far & off)
    with pytest.raises(InputError, match="at least 2 samples"):
        calibrate_on_samples(feats, labels, top, cal_f[:1])


def test_the_reconstructions_are_a_third_reference_that_noise_does_not_pass():
    """What the decoder makes of the data (blurrier than the renders, read less surely, off the clean samples' modes)
    is flagged by the second rule and not by the harness's; noise is flagged by both. The reconstructions' far
    threshold is their distance to their own concept's mean without their source render, by hand."""
    rng = np.random.default_rng(11)
    centres, feats, labels = _clusters(rng, k=10, n=40, spread=0.05)
    top = rng.uniform(0.95, 1.0, len(labels))

    def decoded(g):  # one reconstruction per render: its render, blurred away from the mean, less sure
        return feats + 0.6 * g.normal(size=feats.shape), g.uniform(0.3, 0.9, len(labels))

    recon, recon_top = decoded(np.random.default_rng(12))
    samples = centres[rng.integers(0, 10, 400)] + 0.01 * rng.normal(size=(400, 16))  # tight modes
    second = calibrate_on_samples(feats, labels, top, samples)
    third = calibrate_on_samples(feats, labels, top, samples, decoded=(recon, recon_top))
    assert (second.calibrated_on, third.calibrated_on) == ("samples", "recon+samples")
    mean_without = [(feats[labels == labels[i]].sum(0) - feats[i]) / 39 for i in range(len(labels))]
    own = [1 - np.dot(r, m) / np.linalg.norm(r) / np.linalg.norm(m) for r, m in zip(recon, mean_without)]
    assert third.off_decoded.far == pytest.approx(np.quantile(own, 0.95), abs=1e-12)
    assert third.off_decoded.unsure == pytest.approx(np.quantile(recon_top, 0.05), abs=1e-12)
    assert third.off_decoded.record() == calibrate_decoded(feats, recon, labels, recon_top).record()
    fresh, fresh_top = decoded(np.random.default_rng(13))  # other reconstructions of the same renders
    assert meaningless_rate(second, fresh, fresh_top) >= 0.5
    assert meaningless_rate(third, fresh, fresh_top) <= 0.15  # at most about 2Q (either reading) + 3 binomial SEs
    noise = np.random.default_rng(14).normal(size=(300, 16)) * 3.0
    assert meaningless_rate(third, noise, np.full(300, 0.99)) >= 0.9
    far, off = readings(third, fresh, fresh_top)
    assert np.array_equal(off, meaningless_mask(third.off_render, fresh, fresh_top)
                          & meaningless_mask(third.off_decoded, fresh, fresh_top))
    with pytest.raises(InputError, match="one per render"):
        calibrate_decoded(feats, recon[:-1], labels, recon_top[:-1])
    with pytest.raises(InputError, match="one per reconstruction"):
        calibrate_decoded(feats, recon, labels, recon_top[:-1])


def test_the_committed_check_holds_together():
    """docs/data/known_truth: both data sets, every family, the rate between its readings' larger and their sum."""
    root = ROOT / "docs" / "data" / "known_truth"
    tables = [p for p in sorted(root.rglob("*.csv")) if "tried" not in p.relative_to(root).parts]
    assert len(tables) >= 4
    for path in tables:
        rows = list(csv.DictReader(open(path, encoding="utf-8")))
        assert {r["family"] for r in rows} >= {"gaussian_noise", "blank", "concept_average", "clean_render",
                                               "vae_reconstruction"}
        for r in rows:
            rate, far, unsure = (float(r[k]) for k in ("meaningless_rate", "far_rate", "unsure_rate"))
            if (r.get("calibrated_on") or "renders") == "renders":  # either reading flags
                assert max(far, unsure) - 1e-12 <= rate <= far + unsure + 1e-12
            else:  # both readings must flag
                assert far + unsure - 1 - 1e-12 <= rate <= min(far, unsure) + 1e-12


def test_t12_pairs_each_rerun_point_with_its_own_control(tmp_path: Path):
    """T12 reads results/reruns/*: one row per poisoned point, every rate beside its control's and the difference."""
    from paper_figures.measure_checks import GENERATED, tab12
    from paper_figures.sources import Sources

    folder = tmp_path / "reruns" / "m01"
    folder.mkdir(parents=True)
    base = {"seed": "0", "scenario": "lora", "c_p": "100", "poison_per_concept": "240", "targets": "poisoned",
            "data_set": "emoji-noto-150", "attack_success": "0.06"}
    rates = {"poisoned": (0.35, 0.10, 0.80, 0.03), "control": (0.90, 0.02, 0.30, 0.00)}
    with open(folder / "results.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, [*base, "kind", *(c for _, c in GENERATED)])
        w.writeheader()
        for kind, values in rates.items():
            w.writerow({**base, "kind": kind, **{c: v for (_, c), v in zip(GENERATED, values)}})
    out = tmp_path / "out"
    out.mkdir()
    built = tab12(Sources(results=tmp_path, data=tmp_path, verbose=False), out)
    rows = list(csv.reader(open(out / "tab12.csv")))
    assert len(rows) == 2 and not built.missing and rows[1][:8] == ["m01", "emoji-noto-150", "lora", "poisoned",
                                                                     "100", "240", "0", "–"]  # no manifest
    assert rows[1][8:20] == ["0.350", "0.900", "-0.550", "0.100", "0.020", "+0.080", "0.800", "0.300", "+0.500",
                             "0.030", "0.000", "+0.030"]
    empty = tab12(Sources(results=tmp_path / "none", data=tmp_path, verbose=False), out)
    assert empty.missing
