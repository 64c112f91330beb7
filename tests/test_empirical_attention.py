"""Cross-attention capture: same images as plain generation, probabilities checked against a direct computation,
processors restored, token positions, and the statistics on maps whose answers are known."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from empirical.attention import (AttentionStore, CrossAttentionRecorder, attention_statistics,  # noqa: E402
                                 cross_attention_names,
                                 generate_with_attention, overlay, recording, token_positions, word_positions)
from empirical.model import generate  # noqa: E402
from empirical.presets import PRESETS  # noqa: E402
from empirical.assets import fresh_unet, prepare_assets  # noqa: E402
from implosion_base.errors import InputError  # noqa: E402

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    assets = prepare_assets(PRESETS["micro"], tmp_path_factory.mktemp("cache"))
    return assets.instruments.pipeline(fresh_unet(assets, seed=3))


PROMPTS = ["a photo of a red apple", "a drawing of a fish", "a photo of a spiral shell"]
PHRASES = ["red apple", "fish", "spiral shell"]


def test_recording_generates_the_same_images_and_maps_are_distributions(pipe):
    plain = generate(pipe, PROMPTS, [1, 2, 3], steps=3, guidance=3.0)
    res = generate_with_attention(pipe, PROMPTS, [1, 2, 3], PHRASES, steps=3, guidance=3.0)
    # explicit softmax vs the fused kernel: equal up to float rounding of the uint8 images
    assert np.abs(plain.astype(int) - res.images.astype(int)).max() <= 1
    b, t, h, w = res.maps.shape
    assert (b, h, w) == (3, 16, 16) and t == pipe.tokenizer.model_max_length
    # every pixel's map over tokens is a probability distribution (bilinear upsampling keeps sums)
    assert np.allclose(res.maps.sum(axis=1), 1.0, atol=1e-5) and res.maps.min() >= 0
    for k, v in res.statistics.items():
        assert v.shape == (3,) and np.all(np.isfinite(v)), k
    assert np.all((res.statistics["entropy"] > 0) & (res.statistics["entropy"] <= 1 + 1e-9))
    assert np.all(res.statistics["concept_share"] <= 1 + 1e-9)
    # concept maps are the sum of the concept's token maps
    i = 0
    assert np.allclose(res.concept_maps()[i], res.maps[i, res.concept_tokens[i]].sum(0))
    # the processors are back: plain generation is unchanged afterwards
    assert np.array_equal(generate(pipe, PROMPTS, [1, 2, 3], steps=3, guidance=3.0), plain)


def test_recorded_probabilities_equal_a_direct_softmax(pipe):
    unet = pipe.unet
    name = cross_attention_names(unet)[0].rsplit(".processor", 1)[0]
    module = dict(unet.named_modules())[name]
    seen = {}
    hook = module.register_forward_pre_hook(lambda m, a, k: seen.update(x=a[0] if a else k["hidden_states"],
                                                                       ctx=k.get("encoder_hidden_states")),
                                            with_kwargs=True)
    g = torch.Generator().manual_seed(0)
    latents = torch.randn(2, unet.config.in_channels, 8, 8, generator=g)
    ctx = torch.randn(2, 5, unet.config.cross_attention_dim, generator=g)
    store = AttentionStore()
    original = module.processor
    module.set_processor(CrossAttentionRecorder(store))   # this layer alone records
    try:
        with torch.no_grad():
            unet(latents, torch.tensor([10, 10]), encoder_hidden_states=ctx)
    finally:
        hook.remove()
        module.set_processor(original)
    x, c = seen["x"], seen["ctx"]
    if x.ndim == 4:
        x = x.flatten(2).transpose(1, 2)
    with torch.no_grad():
        q = module.to_q(x).reshape(2, x.shape[1], module.heads, -1).transpose(1, 2)
        k = module.to_k(c).reshape(2, c.shape[1], module.heads, -1).transpose(1, 2)
        direct = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1).mean(1)
    (hw,) = store.sums
    assert store.counts[hw] == 1 and hw == x.shape[1] and direct.shape == (2, hw, 5)
    assert torch.allclose(store.sums[hw], direct, atol=1e-6)


def test_processors_are_restored_after_an_error(pipe):
    before = {k: type(v) for k, v in pipe.unet.attn_processors.items()}
    with pytest.raises(RuntimeError):
        with recording(pipe.unet, AttentionStore()):
            raise RuntimeError("boom")
    assert {k: type(v) for k, v in pipe.unet.attn_processors.items()} == before


def test_token_positions_find_the_concept(pipe):
    tok, n = pipe.tokenizer, pipe.tokenizer.model_max_length
    ids = tok("a photo of a red apple", padding="max_length", max_length=n, truncation=True)["input_ids"]
    pos = token_positions(tok, "a photo of a red apple", "red apple", n)
    assert tok.decode([ids[i] for i in pos]).strip() == "red apple"
    assert token_positions(tok, "a photo of a fish", "bicycle", n) == []
    words = word_positions(tok, "a photo of a fish", n)
    assert tok.decode([ids[i] for i in word_positions(tok, "a photo of a red apple", n)]) == "a photo of a red apple"
    assert len(words) == 5


def test_statistics_on_known_maps():
    n_tok, side = 4, 10
    maps = np.zeros((3, n_tok, side, side))
    maps[:, 0] = 0.5                      # a special token takes half of every pixel
    maps[0, 1] = 0.5                      # prompt 0: concept uniform over the image
    maps[1, 1, 3, 4] = 0.5                # prompt 1: concept on one pixel, another word elsewhere
    maps[1, 2] = 0.5
    maps[1, 2, 3, 4] = 0.0
    maps[2, 2] = 0.5                      # prompt 2: concept absent from the prompt
    stats = attention_statistics(maps, [[1], [1], []], [[1, 2], [1, 2], [1, 2]])
    assert stats["entropy"][0] == pytest.approx(1.0) and stats["concentration"][0] == pytest.approx(0.1)
    assert stats["concept_mass"][0] == pytest.approx(0.5) and stats["concept_share"][0] == pytest.approx(1.0)
    assert stats["entropy"][1] == pytest.approx(0.0) and stats["concentration"][1] == pytest.approx(1.0)
    assert stats["concept_mass"][1] == pytest.approx(0.005) and stats["concept_share"][1] == pytest.approx(0.01)
    assert all(np.isnan(stats[k][2]) for k in stats)


def test_store_and_overlay_edges():
    with pytest.raises(InputError, match="no cross-attention"):
        AttentionStore().maps(8)
    img = np.full((4, 4, 3), 100, np.uint8)
    out = overlay(img, np.arange(16.0).reshape(4, 4))
    assert out.shape == (4, 4, 3) and out.dtype == np.uint8 and not np.array_equal(out[0, 0], out[3, 3])
    assert np.array_equal(overlay(img, np.ones((4, 4)), alpha=0.0), img)
