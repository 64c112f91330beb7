"""Nightshade-style poisons at micro size: the latent moves toward the target within the L∞ box, deterministic,
cached per concept, sized correctly, and wired into empirical.run (with old result tables upgraded)."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from empirical.poisons import (NightshadeConfig, harness_plan, nightshade_pairs, nightshade_perturb,  # noqa: E402
                               perturbation_size, poison_pairs)
from empirical.presets import PRESETS  # noqa: E402
from empirical.assets import prepare_assets  # noqa: E402
from empirical.run import main  # noqa: E402
from implosion_base.errors import InputError  # noqa: E402

torch.set_num_threads(2)
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def assets(cache):
    return prepare_assets(PRESETS["micro"], cache)


def test_perturbation_size_against_hand_computation():
    a = np.zeros((2, 2, 2, 3), np.uint8)
    b = a.copy()
    b[0, 0, 0, 0] = 51                       # one value moved by 0.2
    linf, l2, psnr = perturbation_size(a, b)
    assert linf[0] == pytest.approx(0.2) and l2[0] == pytest.approx(0.2)
    assert psnr[0] == pytest.approx(10 * np.log10(12 / 0.04))   # MSE = 0.04 / 12 values
    assert linf[1] == 0 and np.isinf(psnr[1])


def test_pgd_moves_latents_toward_the_target_inside_the_box(assets):
    imgs, labels = assets.data.images, assets.data.labels
    src, tgt = imgs[labels == 0][:4], imgs[labels == 1][:4]
    cfg = NightshadeConfig(epsilon=0.05, steps=15)
    out, rep = nightshade_perturb(assets.instruments.vae, src, tgt, cfg, seed=1)
    assert out.dtype == np.uint8 and out.shape == src.shape
    linf, _, _ = perturbation_size(src, out)
    assert linf.max() <= 0.05 + 1 / 510 + 1e-9 and np.array_equal(linf, rep.linf)
    assert np.all(rep.latent_after < rep.latent_before)
    # the reported distance is the real one: re-encode the uint8 poisons
    with torch.no_grad():
        enc = lambda x: assets.instruments.vae.encode(torch.from_numpy(x).permute(0, 3, 1, 2).float() / 127.5 - 1
                                          ).latent_dist.mean
        dist = (enc(out) - enc(tgt)).flatten(1).norm(dim=1).numpy()
    assert np.allclose(dist, rep.latent_after, rtol=1e-4, atol=1e-5)
    # deterministic for a seed; a bigger budget gets at least as close on average
    again, _ = nightshade_perturb(assets.instruments.vae, src, tgt, cfg, seed=1)
    assert np.array_equal(out, again)
    _, wide = nightshade_perturb(assets.instruments.vae, src, tgt, NightshadeConfig(epsilon=0.3, steps=15), seed=1)
    assert wide.latent_after.mean() < rep.latent_after.mean()


def test_pairs_are_captioned_as_the_poisoned_concept_and_cached(assets, tmp_path: Path):
    plan = harness_plan(assets.data.names, "poisoned", seed=0)
    labels = assets.data.labels
    cfg = NightshadeConfig(steps=3)
    img, concepts, src, rep = nightshade_pairs(plan, 2, 3, assets.data.images, labels, assets.instruments.vae, cfg, seed=0,
                                               cache_dir=tmp_path)
    assert img.shape[0] == len(concepts) == len(src) == len(rep.linf) == 6
    _, dirty_concepts = poison_pairs(plan, 2, 3, labels, seed=0)
    assert np.array_equal(concepts, dirty_concepts)            # same captions as dirty-label
    assert np.array_equal(labels[src], concepts)               # sources are images of the captioned concept
    assert len(list(tmp_path.glob("nightshade-*/*.npz"))) == 2
    again = nightshade_pairs(plan, 2, 3, assets.data.images, labels, assets.instruments.vae, cfg, seed=0, cache_dir=tmp_path)
    assert np.array_equal(again[0], img) and np.array_equal(again[3].latent_after, rep.latent_after)
    # a larger C_P reuses the first concepts' poisons (nested) and adds one file
    bigger = nightshade_pairs(plan, 3, 3, assets.data.images, labels, assets.instruments.vae, cfg, seed=0, cache_dir=tmp_path)
    assert np.array_equal(bigger[0][:6], img) and len(list(tmp_path.glob("nightshade-*/*.npz"))) == 3


@pytest.mark.parametrize("fields, message", [({"epsilon": 0}, "epsilon"), ({"epsilon": 1.5}, "epsilon"),
                                             ({"steps": 0}, "steps"), ({"step_size": -1.0}, "step size")])
def test_bad_configs_are_refused_when_made(fields, message):
    with pytest.raises(InputError, match=message):
        NightshadeConfig(**fields)


def test_run_with_nightshade_poisons_and_an_upgraded_old_table(tmp_path: Path, cache: Path):
    out = tmp_path / "out"
    out.mkdir()
    # a results table written before poison types existed: kept, upgraded, its points not recomputed
    from empirical.layout import COLUMNS
    old_cols = [c for c in COLUMNS if c not in ("poison_type", "poison_latent_ratio", "poison_linf", "poison_psnr")]
    base = ["--preset", "micro", "--poisoned-concepts", "0,2", "--out", str(out), "--cache", str(cache), "--quiet"]
    assert main(base + ["--no-control"]) == 0
    with open(out / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    with open(out / "results.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=old_cols, lineterminator="\n")
        w.writeheader()
        w.writerows({k: r[k] for k in old_cols} for r in rows)
    assert main(base + ["--poison-type", "nightshade"]) == 0
    with open(out / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["c_p"], r["kind"], r["poison_type"]) for r in rows] == [
        ("0", "poisoned", "none"), ("2", "poisoned", "dirty"), ("2", "poisoned", "nightshade"),
        ("2", "control", "none")]
    ns = rows[2]
    assert float(ns["poison_linf"]) <= 0.05 + 1 / 510 + 1e-9 and float(ns["poison_latent_ratio"]) < 1
    assert np.isfinite(float(ns["poison_psnr"])) and np.isnan(float(rows[1]["poison_psnr"]))
    assert (out / "grids" / "continuous-s0-cp2-poisoned-nightshade.png").is_file()


@pytest.mark.parametrize("extra, message", [
    (["--poison-type", "clean"], "unknown poison type 'clean'"),
    (["--poison-type", "nightshade", "--epsilon", "0"], "epsilon must be in (0, 1]"),
    (["--poison-type", "nightshade", "--epsilon", "2"], "epsilon must be in (0, 1]"),
    (["--poison-type", "nightshade", "--pgd-steps", "0"], "PGD steps must be in [1, inf]"),
])
def test_bad_poison_options_exit_2(tmp_path: Path, extra, message):
    out = tmp_path / "bad"
    proc = subprocess.run([sys.executable, "-m", "empirical.run", "--preset", "micro", "--out", str(out),
                           "--cache", str(tmp_path / "c"), *extra], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and message in proc.stderr
    assert not out.exists()
