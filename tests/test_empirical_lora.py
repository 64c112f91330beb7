"""The LoRA scenario at micro size: only adapters train, the base stays the pretrained model, the fused model
saves as a plain diffusers folder and the adapter alone as diffusers' LoRA file, and both generate what the adapted
one does."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from empirical.model import generate, load_pipeline  # noqa: E402
from empirical.poisons import harness_plan, poison_pairs  # noqa: E402
from empirical.presets import PRESETS  # noqa: E402
from empirical.assets import build_mix, fresh_unet, prepare_assets, pretrained_state  # noqa: E402
from empirical.point import train_point  # noqa: E402
from empirical.run import main  # noqa: E402
from empirical.lora import LoraSettings, merged, save_lora_adapter  # noqa: E402
from implosion_base.errors import InputError  # noqa: E402

torch.set_num_threads(2)
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


def test_only_adapters_train_and_the_fused_model_saves_plainly(cache: Path, tmp_path: Path):
    assets = prepare_assets(PRESETS["micro"], cache)
    plan = harness_plan(assets.data.names, "poisoned", seed=0)
    mix, _ = build_mix(assets, *poison_pairs(plan, 2, 4, assets.data.labels, seed=0))
    base = pretrained_state(assets, 0, cache)
    unet, steps = train_point(assets, "lora", 0, mix, tmp_path / "ck", cache)
    state = unet.state_dict()
    lora_keys = [k for k in state if "lora_" in k]
    assert lora_keys and steps == PRESETS["micro"].continued.steps
    # every base weight is exactly the pretrained one (wrapped layers keep theirs under base_layer)
    for k, v in base.items():
        k2 = k if k in state else k.replace(".weight", ".base_layer.weight").replace(".bias", ".base_layer.bias")
        assert torch.equal(state[k2].float(), v.float()), k
    # the adapters moved away from their zero-B start
    assert any(state[k].abs().sum() > 0 for k in lora_keys if "lora_B" in k)
    pipe = assets.instruments.pipeline(unet)
    a = generate(pipe, ["a photo of a bird"], [5], steps=2, guidance=2.0)
    plain = merged(unet)
    assert not any("lora_" in k for k in plain.state_dict())
    folder = tmp_path / "model"
    assets.instruments.pipeline(plain).save_pretrained(folder, safe_serialization=True)
    b = generate(load_pipeline(folder), ["a photo of a bird"], [5], steps=2, guidance=2.0)
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1

    # the adapter alone, saved as diffusers' LoRA file, loads onto the base pipeline and generates the same
    clean = fresh_unet(assets, 0)
    clean.load_state_dict(base)
    base_dir = tmp_path / "base"
    assets.instruments.pipeline(clean).save_pretrained(base_dir, safe_serialization=True)
    weights = save_lora_adapter(unet, tmp_path / "adapter")
    assert weights.name == "pytorch_lora_weights.safetensors" and weights.stat().st_size < 0.5 * sum(
        f.stat().st_size for f in (folder / "unet").glob("*.safetensors"))
    loaded = load_pipeline(base_dir)
    g = torch.Generator().manual_seed(0)
    z, t = torch.randn(2, *mix.mu.shape[1:], generator=g), torch.tensor([10, 700])
    ctx = assets.bank.contexts[:2]

    def out(u):
        with torch.no_grad():
            return u.eval()(z, t, encoder_hidden_states=ctx).sample

    adapted, plain_base = out(unet), out(loaded.unet)
    loaded.load_lora_weights(str(tmp_path / "adapter"))
    reloaded = out(loaded.unet)
    gap = float((reloaded - adapted).abs().max())
    assert gap < 1e-4 and float((plain_base - adapted).abs().max()) > 100 * max(gap, 1e-7)
    c = generate(loaded, ["a photo of a bird"], [5], steps=2, guidance=2.0)
    assert np.abs(a.astype(int) - c.astype(int)).max() <= 1
    with pytest.raises(InputError, match="no LoRA adapter"):
        save_lora_adapter(clean, tmp_path / "none")


def test_lora_run_and_bad_rank(cache: Path, tmp_path: Path):
    out = tmp_path / "lora"
    assert main(["--preset", "micro", "--scenario", "lora", "--poisoned-concepts", "0,1", "--no-control",
                 "--out", str(out), "--cache", str(cache), "--quiet", "--lora-rank", "2"]) == 0
    with open(out / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["scenario"], r["c_p"]) for r in rows] == [("lora", "0"), ("lora", "1")]
    with pytest.raises(InputError, match=r"LoRA rank must be in \[1, inf\], got 0"):
        LoraSettings(rank=0).validate()
    proc = subprocess.run([sys.executable, "-m", "empirical.run", "--preset", "micro", "--scenario", "lora",
                           "--lora-rank", "0", "--out", str(tmp_path / "bad"), "--cache", str(cache)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "LoRA rank must be in [1, inf]" in proc.stderr and not (tmp_path / "bad").exists()
