"""--pretrained on a Stable Diffusion XL folder (tiny, built from config): two text encoders, pooled embeddings and
time ids, continuous and LoRA points end to end, cross-attention recorded, the LoRA file loaded by
StableDiffusionXLPipeline.load_lora_weights."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("diffusers")

from empirical.pretrained import load_base, make_tiny_sdxl  # noqa: E402
from empirical.run import main as run_main  # noqa: E402


@pytest.fixture(scope="module")
def tiny_xl(tmp_path_factory) -> Path:
    return make_tiny_sdxl(tmp_path_factory.mktemp("sdxl") / "tiny-sdxl", seed=0)


def test_the_dual_text_encoder_gives_what_the_sdxl_pipeline_computes(tiny_xl):
    import torch

    from empirical.sdxl import load_xl_pipeline

    base, vae, te = load_base(tiny_xl)
    assert base.unet_config["addition_embed_type"] == "text_time" and te.dim == 64 and te.pooled_dim == 32
    pipe = load_xl_pipeline(tiny_xl)
    prompts = ["a photo of a bird", "a photo of a red apple"]
    embeds, _, pooled, _ = pipe.encode_prompt(prompts, device="cpu", do_classifier_free_guidance=False)
    assert torch.allclose(te.token_states(prompts), embeds, atol=1e-6)
    assert torch.allclose(te.pooled(prompts), pooled, atol=1e-6)
    sent = te.sentence_embeddings(prompts)
    assert sent.shape == (2, 64) and torch.allclose(sent.norm(dim=1), torch.ones(2), atol=1e-5)


def test_added_conditions_are_the_pipelines_time_ids(tiny_xl):
    from empirical.sdxl import load_xl_pipeline, time_ids

    pipe = load_xl_pipeline(tiny_xl)
    ids = pipe._get_add_time_ids((16, 16), (0, 0), (16, 16), dtype=time_ids(16).dtype,
                                 text_encoder_projection_dim=32)
    assert ids[0].tolist() == time_ids(16).tolist() == [16, 16, 0, 0, 16, 16]


@pytest.mark.slow
@pytest.mark.parametrize("scenario", ["continuous", "lora"])
def test_sdxl_points_run_end_to_end(tmp_path, tiny_xl, scenario):
    out = tmp_path / "out"
    assert run_main(["--preset", "micro", "--pretrained", str(tiny_xl), "--scenario", scenario,
                     "--poisoned-concepts", "0,1", "--seed", "0", "--cache", str(tmp_path / "cache"), "--quiet",
                     "--threads", "2", *(["--keep-models"] if scenario == "lora" else []), "--out", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["pretrained"] == str(tiny_xl.resolve()) and manifest["setting"]["render"]["size"] == 16
    rows = (out / "results.csv").read_text().splitlines()
    assert len(rows) == 1 + 3  # clean, poisoned C_P = 1, its control
    att = np.load(out / "points" / f"{scenario}-s0-cp1-poisoned-attention.npz", allow_pickle=False)
    assert att["maps"].shape[-2:] == (16, 16) and np.isfinite(att["maps"].astype(float)).all()
    if scenario == "lora":
        from diffusers import StableDiffusionXLPipeline

        from empirical.sdxl import load_xl_pipeline

        saved = out / "models" / "lora-s0-cp1-poisoned"
        assert json.loads((saved / "adapter.json").read_text())["base"] == str(tiny_xl.resolve())
        pipe = load_xl_pipeline(tiny_xl)
        assert isinstance(pipe, StableDiffusionXLPipeline)
        before = {k: v.clone() for k, v in pipe.unet.state_dict().items()}
        pipe.load_lora_weights(saved)
        assert any("lora" in k for k in pipe.unet.state_dict()) and len(pipe.unet.state_dict()) > len(before)


def test_dry_run_of_an_sdxl_folder_estimates_with_its_added_conditions(tmp_path, tiny_xl, capsys):
    assert run_main(["--preset", "micro", "--pretrained", str(tiny_xl), "--scenario", "lora", "--out",
                     str(tmp_path / "o"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "images: 16x16 px (the base model's)" in out and "estimated duration: about" in out
