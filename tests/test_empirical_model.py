"""The model side at micro size: judge, Fréchet distance, pipeline save/reload/generate, resumable training."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from empirical.model import generate, load_pipeline, save_pipeline  # noqa: E402
from empirical.presets import PRESETS  # noqa: E402
from empirical.assets import build_mix, fresh_unet, prepare_assets  # noqa: E402
from empirical.train import TrainConfig, train_unet  # noqa: E402
from implosion_base.errors import InputError  # noqa: E402

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    return prepare_assets(PRESETS["micro"], tmp_path_factory.mktemp("cache"))


def test_judge_beats_chance_on_held_out_clean_renders(tmp_path_factory):
    # a slightly longer judge than the micro preset's, on the same 4 concepts
    preset = replace(PRESETS["micro"], judge=replace(PRESETS["micro"].judge, steps=120))
    a = prepare_assets(preset, tmp_path_factory.mktemp("judge"))
    chance = 1 / len(a.data.names)
    assert a.quality["judge_heldout_acc"] >= chance + 0.25
    p = a.instruments.judge.probabilities(a.held.images)
    assert np.allclose(p.sum(1), 1) and p.shape == (len(a.held), len(a.data.names))
    # matched caption scores above mismatched ones on average
    texts = a.held.captions
    wrong = [texts[(i + 2) % len(texts)] for i in range(len(texts))]
    assert a.instruments.judge.score(a.held.images, texts).mean() > a.instruments.judge.score(a.held.images, wrong).mean()


def test_pipeline_saves_reloads_and_generates_the_same_images(assets, tmp_path: Path):
    unet = fresh_unet(assets, seed=0)
    pipe = assets.instruments.pipeline(unet)
    prompts, seeds = ["a photo of a bird", "a photo of a fish"], [1, 2]
    a = generate(pipe, prompts, seeds, steps=2, guidance=2.0)
    assert a.shape == (2, 16, 16, 3) and a.dtype == np.uint8
    save_pipeline(pipe, tmp_path / "pipe")
    assert list((tmp_path / "pipe" / "unet").glob("*.safetensors"))
    assert not list((tmp_path / "pipe").rglob("*.bin"))
    index = json.loads((tmp_path / "pipe" / "model_index.json").read_text())
    assert index["text_encoder"] == ["transformers", "BertModel"]
    b = generate(load_pipeline(tmp_path / "pipe"), prompts, seeds, steps=2, guidance=2.0)
    assert np.array_equal(a, b)
    assert not np.array_equal(a[0], a[1])


def test_load_pipeline_refuses_bad_folders(tmp_path: Path, assets):
    with pytest.raises(InputError, match="model_index.json"):
        load_pipeline(tmp_path)
    pipe = assets.instruments.pipeline(fresh_unet(assets, seed=0))
    save_pipeline(pipe, tmp_path / "p")
    for f in (tmp_path / "p" / "unet").glob("*.safetensors"):
        f.rename(f.with_name("diffusion_pytorch_model.bin"))
    with pytest.raises(InputError, match=r"diffusion_pytorch_model.bin: convert it to safetensors"):
        load_pipeline(tmp_path / "p")
    import shutil

    shutil.rmtree(tmp_path / "p" / "vae")
    with pytest.raises(InputError, match="no vae/"):
        load_pipeline(tmp_path / "p")


class Killed(Exception):
    """A simulated kill inside training."""


def kill_at(n: int):
    """An ``on_step`` callback that 'kills' the run when step ``n`` is reached."""
    def on_step(step, loss):
        if step == n:
            raise Killed
    return on_step


def test_training_lowers_the_loss_and_resumes_exactly(assets, tmp_path: Path):
    mix, _ = build_mix(assets, np.zeros(0, np.int64), np.zeros(0, np.int64))
    cfg = TrainConfig(steps=8, batch_size=8, warmup=2, checkpoint_every=3, lr=2e-3)
    losses: list[float] = []
    full, ema_full = train_unet(fresh_unet(assets, 0), mix, cfg, on_step=lambda s, l: losses.append(l))
    assert np.mean(losses[-3:]) < np.mean(losses[:3])

    with pytest.raises(Killed):
        train_unet(fresh_unet(assets, 0), mix, cfg, checkpoint_dir=tmp_path, on_step=kill_at(5))
    assert json.loads((tmp_path / "checkpoint.json").read_text())["step"] == 3
    resumed, ema_resumed = train_unet(fresh_unet(assets, 0), mix, cfg, checkpoint_dir=tmp_path)
    for (k, v), (_, w) in zip(full.state_dict().items(), resumed.state_dict().items()):
        assert torch.allclose(v, w, atol=1e-6), k
    for k in ema_full:
        assert torch.allclose(ema_full[k], ema_resumed[k], atol=1e-6), k
    # a different mix does not pick up this checkpoint
    other, _ = build_mix(assets, np.array([0, 1]), np.array([1, 1]))
    steps: list[int] = []
    train_unet(fresh_unet(assets, 0), other, cfg, checkpoint_dir=tmp_path, on_step=lambda s, l: steps.append(s))
    assert steps[0] == 0


def test_a_longer_run_continues_a_shorter_one_exactly(assets, tmp_path: Path):
    mix, _ = build_mix(assets, np.zeros(0, np.int64), np.zeros(0, np.int64))
    short = TrainConfig(steps=4, batch_size=8, warmup=2, checkpoint_every=2)
    long = TrainConfig(steps=7, batch_size=8, warmup=2, checkpoint_every=2)
    fresh, ema_fresh = train_unet(fresh_unet(assets, 0), mix, long)
    train_unet(fresh_unet(assets, 0), mix, short, checkpoint_dir=tmp_path)
    seen: list[int] = []
    cont, ema_cont = train_unet(fresh_unet(assets, 0), mix, long, checkpoint_dir=tmp_path,
                                on_step=lambda s, l: seen.append(s))
    assert seen == [4, 5, 6]
    for (k, v), (_, w) in zip(fresh.state_dict().items(), cont.state_dict().items()):
        assert torch.allclose(v, w, atol=1e-6), k
    # a checkpoint beyond the requested length is never cut back to it: training starts over
    seen.clear()
    train_unet(fresh_unet(assets, 0), mix, short, checkpoint_dir=tmp_path, on_step=lambda s, l: seen.append(s))
    assert seen == [0, 1, 2, 3]


def test_scratch_on_clean_data_reuses_the_pretraining_and_equals_training_it(assets, tmp_path: Path):
    from dataclasses import asdict

    from empirical.assets import pretrained_state

    from empirical.point import train_point

    mix, _ = build_mix(assets, np.zeros(0, np.int64), np.zeros(0, np.int64))
    reused, _ = train_point(assets, "scratch", 0, mix, tmp_path / "ckpt", tmp_path / "cache")
    assert not (tmp_path / "ckpt").exists()  # nothing was trained for this point
    cfg = TrainConfig(**{**asdict(assets.preset.scratch), "seed": 0})
    _, ema = train_unet(fresh_unet(assets, 0), mix, cfg)
    for k, v in reused.state_dict().items():
        assert torch.allclose(v, ema[k].to(v.dtype), atol=1e-6), k
    assert pretrained_state(assets, 0, tmp_path / "cache").keys() == ema.keys()


def test_a_kill_between_checkpoint_files_cannot_mislabel_the_step(assets, tmp_path: Path):
    """The step lives in the checkpoint's own metadata: a checkpoint.json left from an older step (a kill between
    the two writes) does not make the resumed run differ from an uninterrupted one."""
    from empirical.checkpoint import checkpoint_meta

    mix, _ = build_mix(assets, np.zeros(0, np.int64), np.zeros(0, np.int64))
    cfg = TrainConfig(steps=8, batch_size=8, warmup=2, checkpoint_every=3, lr=2e-3)
    full, _ = train_unet(fresh_unet(assets, 0), mix, cfg)

    with pytest.raises(Killed):
        train_unet(fresh_unet(assets, 0), mix, cfg, checkpoint_dir=tmp_path, on_step=kill_at(7))
    assert checkpoint_meta(tmp_path / "checkpoint.safetensors")["step"] == 6
    meta = json.loads((tmp_path / "checkpoint.json").read_text())
    (tmp_path / "checkpoint.json").write_text(json.dumps({**meta, "step": 3}))  # the stale label of the old scheme
    resumed, _ = train_unet(fresh_unet(assets, 0), mix, cfg, checkpoint_dir=tmp_path)
    for (k, v), (_, w) in zip(full.state_dict().items(), resumed.state_dict().items()):
        assert torch.allclose(v, w, atol=1e-6), k


def test_seeded_initialisation_leaves_the_global_generator_alone():
    """Models are initialised from their seed inside a fork of torch's global generator: the same seed gives the
    same weights, another seed others, and the caller's random stream is exactly as if nothing had happened."""
    import torch

    from empirical.model import UNetConfig, build_unet

    cfg = UNetConfig(channels=(32, 32), attention=(False, True), layers_per_block=1, head_dim=16, norm_groups=8)

    def weights(seed):
        unet = build_unet(cfg, sample_size=4, latent_channels=4, cross_attention_dim=8, seed=seed)
        return torch.cat([p.detach().flatten() for p in unet.parameters()])

    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a, b, c = weights(0), weights(0), weights(1)
    assert torch.equal(torch.rand(3), expected)
    assert torch.equal(a, b) and not torch.equal(a, c)
