"""The diffusion objective follows the schedule's prediction_type, as diffusers' training scripts do: ε for
``epsilon``, the velocity for ``v_prediction`` (checked against a direct computation), anything else refused."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from empirical.train import Mix, TrainConfig, noisy_and_target, train_unet  # noqa: E402
from implosion_base.errors import InputError  # noqa: E402


def _schedule(kind: str) -> dict:
    from diffusers import DDPMScheduler

    return dict(DDPMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                              beta_schedule="scaled_linear", prediction_type=kind).config)


def _unet():
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    return UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
                                block_out_channels=(16, 32), down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=8,
                                attention_head_dim=8, norm_num_groups=8)


def _mix() -> Mix:
    g = torch.Generator().manual_seed(1)
    return Mix(mu=torch.randn(6, 4, 8, 8, generator=g), sigma=0.1 * torch.rand(6, 4, 8, 8, generator=g),
               contexts=torch.randn(4, 5, 8, generator=g), image_idx=np.arange(6), caption_idx=np.arange(6) % 3,
               empty=3, scaling=0.5)


def _first_loss(kind: str) -> float:
    losses = []
    cfg = TrainConfig(steps=1, batch_size=4, lr=1e-4, warmup=1, caption_dropout=0.25, seed=3)
    train_unet(_unet(), _mix(), cfg, scheduler_config=_schedule(kind), on_step=lambda s, loss: losses.append(loss))
    return losses[0]


def _direct_loss(kind: str) -> float:
    """The first step's loss recomputed by hand: the same draws from the run's generator, ᾱ from the betas."""
    cfg_seed, bs, mix = 3, 4, _mix()
    gen = torch.Generator().manual_seed(cfg_seed)
    b = torch.randint(0, 6, (bs,), generator=gen)
    c = torch.as_tensor(mix.caption_idx)[b].clone()
    c[torch.rand(bs, generator=gen) < 0.25] = mix.empty
    xi = torch.randn((bs, 4, 8, 8), generator=gen)
    eps = torch.randn((bs, 4, 8, 8), generator=gen)
    t = torch.randint(0, 1000, (bs,), generator=gen)
    z0 = mix.scaling * (mix.mu[b] + mix.sigma[b] * xi)
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
    abar = torch.cumprod(1 - betas, 0)[t].view(-1, 1, 1, 1)
    zt = (abar.sqrt() * z0 + (1 - abar).sqrt() * eps).float()
    target = eps if kind == "epsilon" else (abar.sqrt() * eps - (1 - abar).sqrt() * z0).float()
    unet = _unet().train()
    with torch.no_grad():
        pred = unet(zt, t, encoder_hidden_states=mix.contexts[c]).sample
    return float(torch.mean((pred.float() - target) ** 2))


@pytest.mark.parametrize("kind", ["epsilon", "v_prediction"])
def test_first_step_loss_matches_a_direct_computation(kind):
    assert _first_loss(kind) == pytest.approx(_direct_loss(kind), rel=1e-5, abs=1e-6)


def test_v_prediction_loss_differs_from_epsilon():
    assert abs(_first_loss("v_prediction") - _first_loss("epsilon")) > 1e-3


def test_velocity_target_is_the_diffusers_formula():
    from diffusers import DDPMScheduler

    sched = DDPMScheduler.from_config(_schedule("v_prediction"))
    g = torch.Generator().manual_seed(0)
    z0, eps = torch.randn(3, 4, 2, 2, generator=g), torch.randn(3, 4, 2, 2, generator=g)
    t = torch.tensor([0, 500, 999])
    zt, v = noisy_and_target(sched, z0, eps, t)
    a = sched.alphas_cumprod[t].view(-1, 1, 1, 1)
    assert torch.allclose(zt, a.sqrt() * z0 + (1 - a).sqrt() * eps, atol=1e-6)
    assert torch.allclose(v, a.sqrt() * eps - (1 - a).sqrt() * z0, atol=1e-6)
    # z0 = √ᾱ z_t − √(1−ᾱ) v: the velocity parametrisation recovers the clean latent
    assert torch.allclose(a.sqrt() * zt - (1 - a).sqrt() * v, z0, atol=1e-5)


def test_other_prediction_types_are_refused_by_name():
    with pytest.raises(InputError, match="prediction_type 'sample' is not supported"):
        train_unet(_unet(), _mix(), TrainConfig(steps=1, batch_size=2), scheduler_config=_schedule("sample"))
