"""A damaged asset-cache entry (renders, VAE, judge, clean pretraining, a partial embedding file) is rebuilt with
one warning naming it, never fatal — and the rebuilt asset equals the one it replaces (same seeds, same data)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from empirical.presets import PRESETS  # noqa: E402
from empirical.assets import prepare_assets, pretrained_state  # noqa: E402


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


@pytest.mark.slow
def test_damaged_cache_entries_are_rebuilt_the_same(tmp_path: Path):
    cache = tmp_path / "cache"
    preset = PRESETS["micro"]
    first = prepare_assets(preset, cache)
    ema = pretrained_state(first, 0, cache)
    damaged = [next(cache.glob("renders-*.npz")), next(cache.glob("judge-*/judge.safetensors")),
               next(cache.glob("vae-*/*.safetensors")), next(cache.glob("pretrain-*/ema-*.safetensors"))]
    for f in damaged:
        _truncate(f)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = prepare_assets(preset, cache)
        ema2 = pretrained_state(again, 0, cache)
    said = " | ".join(str(w.message) for w in caught if "is damaged" in str(w.message))
    for f in damaged:
        assert (f.name if f.parent == cache else f.parent.name) in said, said
    assert np.array_equal(first.data.images, again.data.images)
    assert torch.allclose(first.latents.mu, again.latents.mu, atol=1e-5)  # the rebuilt VAE encodes as before
    assert np.allclose(first.instruments.judge.image_features(first.held.images), again.instruments.judge.image_features(again.held.images),
                       atol=1e-5)
    for k in ema:
        assert torch.allclose(ema[k], ema2[k], atol=1e-5), k
