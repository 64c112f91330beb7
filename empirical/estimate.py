"""How long a run will take, said before it starts (``python -m empirical.run --dry-run``).

The UNet's training steps dominate a run once its assets are cached. The estimate times a few optimiser steps of
the run's own UNet (its config, batch size, latent size, context length and device) on *this* machine, as it is
loaded now, and multiplies: T ≈ (S_points + S_pretrain)·t_step, where S_points is the sum of the points' training
steps and S_pretrain the clean pretraining's steps of continuous and lora on our own base model (counted even
when cached, so an upper bound; ``scratch`` and ``--pretrained`` have none). Generation, measurement and the VAE and judge training (once per cache) come on
top; the estimate says so rather than guessing them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from implosion_base.progress import duration


@dataclass(frozen=True)
class Estimate:
    """Seconds per step of the points' training and of the clean pretraining, each the median over ``timed``
    steps; ``point_steps`` and ``pretrain_steps`` to train."""

    point_step_s: float
    pretrain_step_s: float
    timed: int
    point_steps: int
    pretrain_steps: int

    @property
    def seconds(self) -> float:
        return self.point_step_s * self.point_steps + self.pretrain_step_s * self.pretrain_steps

    def text(self) -> str:
        pre = (f" + {self.pretrain_steps:,} clean pretraining at {self.pretrain_step_s:.3g} s (none if cached)"
               if self.pretrain_steps else "")
        return (f"about {duration(self.seconds)} of UNet training ({self.point_steps:,} steps at "
                f"{self.point_step_s:.3g} s{pre}; each the median of {self.timed} steps timed on this machine now; "
                "generation, measurement and uncached VAE/judge training come on top)")


def unet_for(exp):
    """The run's UNet before training (random weights for ours, the base model's for ``--pretrained``) and the
    shape of its inputs: (unet, latent channels, latent size, context length, context width, SDXL's pooled text
    width or 0)."""
    if exp.pretrained is not None:
        from empirical.pretrained import unet_from_base

        base = exp.pretrained[0]
        unet = unet_from_base(base)
        te = exp.pretrained[2]
        return (unet, int(unet.config.in_channels), int(unet.config.sample_size), int(te.max_length), int(te.dim),
                getattr(te, "pooled_dim", 0))
    from empirical.model import build_unet

    p = exp.preset
    latent = p.render.size // 2 ** (len(p.vae.channels) - 1)
    context = 384  # the frozen MiniLM's hidden size (empirical.text_encoder)
    unet = build_unet(p.unet, sample_size=latent, latent_channels=p.vae.latent_channels,
                      cross_attention_dim=context, seed=0)
    return unet, p.vae.latent_channels, latent, 16, context, 0



def step_seconds(unet, inputs: tuple[int, ...], batch_size: int, device: str, *, steps: int = 3) -> float:
    """Median seconds of one AdamW step of ``unet`` (its trainable parameters) on random inputs of ``inputs`` =
    (latent channels, latent size, context length, context width, SDXL's pooled width or 0) at ``batch_size``,
    after one warm-up step."""
    import torch

    from empirical.sdxl import added_conditions, time_ids

    channels, size, length, width, pooled = inputs
    unet = unet.to(device).train()
    opt = torch.optim.AdamW([q for q in unet.parameters() if q.requires_grad], lr=1e-6)
    gen = torch.Generator().manual_seed(0)
    z = torch.randn((batch_size, channels, size, size), generator=gen).to(device)
    ctx = torch.randn((batch_size, length, width), generator=gen).to(device)
    t = torch.randint(0, 1000, (batch_size,), generator=gen).to(device)
    added = (added_conditions(torch.randn((batch_size, pooled), generator=gen).to(device), time_ids(8 * size),
                              batch_size) if pooled else None)
    times = []
    for _ in range(steps + 1):
        t0 = time.perf_counter()
        loss = unet(z, t, encoder_hidden_states=ctx, added_cond_kwargs=added).sample.float().pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    times = sorted(times[1:])
    return times[len(times) // 2]


def estimate(exp, *, steps: int = 3) -> Estimate:
    """The :class:`Estimate` of ``exp`` (an :class:`empirical.experiment.Experiment`): its points' steps timed with
    the scenario's UNet (LoRA adapters on a frozen base for ``lora``) at its batch size, and the clean pretraining
    that continuous and lora need on our own base model (counted whether or not it is cached: the cache is keyed
    by assets not yet built) timed as full training at the pretraining's batch size."""
    from empirical.lora import add_lora

    p = exp.preset
    cfg = p.scratch if exp.scenario == "scratch" else p.continued
    unet, *inputs = unet_for(exp)
    pre_steps = 0 if exp.scenario == "scratch" or exp.pretrained is not None else p.pretrain.steps
    pre_s = step_seconds(unet, tuple(inputs), p.pretrain.batch_size, p.device, steps=steps) if pre_steps else 0.0
    if exp.scenario == "lora":
        add_lora(unet, p.lora, seed=0)
    point_s = step_seconds(unet, tuple(inputs), cfg.batch_size, p.device, steps=steps) \
        * cfg.gradient_accumulation_steps  # N batches per optimiser step
    return Estimate(point_s, pre_s, steps, len(exp.points()) * exp.steps(), pre_steps)
