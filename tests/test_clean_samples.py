"""The clean base model's samples (empirical.clean_samples) at micro size: the references of the meaningless rate,
cached per base model, and the known-truth check that reads every family by every rule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("diffusers")


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


def test_the_known_truth_check_reads_every_family_by_every_rule(cache: Path):
    """empirical.known_truth with the clean base model's samples at micro size (its held-out renders doubled so
    each concept has the 3 the split needs): the three rules, every family, the held-out samples a meaningful family of
    each; the sample rule is the one the run caches, and a second call reads it from the cache."""
    from types import SimpleNamespace

    from empirical.assets import prepare_assets
    from empirical.clean_samples import CALIBRATION, HELD_OUT, clean_samples, sample_rule
    from empirical.known_truth import KnownTruthConfig, MEANINGFUL_FAMILIES, MEANINGLESS_FAMILIES, known_truth_rows
    from empirical.presets import get_preset
    from empirical.scenarios import Start, base_model

    assets = prepare_assets(get_preset("micro"), cache)
    unet = base_model(Start(assets, seed=0, base_seed=0, cache_dir=cache))
    calib, labels = clean_samples(assets, unet, offset=CALIBRATION)
    check, check_labels = clean_samples(assets, unet, offset=HELD_OUT)
    assert calib.shape == check.shape == (8, 16, 16, 3) and labels.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert not np.array_equal(calib, check)  # other seeds, other images
    held = SimpleNamespace(images=np.concatenate([assets.held.images] * 2),
                           labels=np.concatenate([assets.held.labels] * 2), names=assets.held.names)
    rows = known_truth_rows(assets.instruments.judge, assets.instruments.vae, held,
                            KnownTruthConfig(n=6, average_of=2, patches=2), (calib, check, check_labels), 0)
    assert [(r["calibrated_on"], r["family"]) for r in rows] == [
        (rule, f) for rule in ("renders", "samples-b0", "recon+samples-b0")
        for f in MEANINGLESS_FAMILIES + MEANINGFUL_FAMILIES]
    for r in rows:  # the rule on renders flags either reading, the meaningless rule both
        both = r["far_rate"], r["unsure_rate"]
        low, high = (max(both), sum(both)) if r["calibrated_on"] == "renders" else (sum(both) - 1, min(both))
        assert low - 1e-12 <= r["meaningless_rate"] <= high + 1e-12
    rule = sample_rule(assets, 0, cache)
    assert rule.calibrated_on == "recon+samples" and rule.n == 8 and rule.quantile == 0.05
    assert rule.record()["off_decoded"]["calibrated_on"] == "reconstructions"
    again = sample_rule(assets, 0, cache, log=lambda m: pytest.fail(f"drew the samples again: {m}"))
    assert again.record() == rule.record()
    assert np.array_equal(again.samples, rule.samples) and again.off_render.means is assets.off_render.means
    saved = next(cache.glob("meaningless-*.npz"))
    whole = saved.read_bytes()
    for damage in (b"not an npz", whole[:len(whole) // 2]):  # a damaged cache file is said and drawn again
        saved.write_bytes(damage)
        notes = []
        redrawn = sample_rule(assets, 0, cache, log=notes.append)
        assert "is damaged" in notes[0] and np.array_equal(redrawn.samples, rule.samples)


def test_too_few_held_out_renders_are_said_before_any_base_model_is_trained(tmp_path: Path):
    from empirical.known_truth import main
    from implosion_base.errors import InputError

    cache = tmp_path / "cache"
    with pytest.raises(InputError, match="at least 3 held-out renders per concept"):
        main(["--preset", "micro", "--calibrate-on", "samples", "--cache", str(cache)])  # micro holds out 2
    assert not list(cache.glob("pretrain-*")) and not list(cache.glob("meaningless-*"))
