"""Named experiment sizes. One :class:`Preset` fixes data, VAE, judge, UNet, training and evaluation settings.

- ``micro``: a few concepts and tiny models; seconds. For tests only (no validation prompts unless asked:
  ``--validation-images``).
- ``smoke``: ≤ 3 minutes on 2 CPU cores end to end (CI-sized check that the whole path works).
- ``cpu``: the CPU experiment: 150 concepts × 2 fonts at 32×32, a 0.7 M-parameter VAE (32×32 → 8×8×4), a
  4.2 M-parameter UNet with cross-attention at 4×4 and in the mid block.
- ``gpu``: 64×64 images, 300 concepts, a bigger UNet (cross-attention at 8×8 and 4×4), bf16 autocast.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Mapping

from empirical.data import RenderConfig
from empirical.judge import JudgeConfig
from empirical.evaluate import EvalConfig
from empirical.model import UNetConfig, VAEConfig
from implosion_base.errors import InputError
from empirical.poisons import NightshadeConfig
from empirical.lora import LoraSettings
from empirical.train import TrainConfig

#: Where renders, VAE, judge and clean pretrainings are cached (``$IMPLOSION_CACHE`` overrides).
DEFAULT_CACHE = Path(os.environ.get("IMPLOSION_CACHE", Path.home() / ".cache" / "implosion-toolkit"))


@dataclass(frozen=True)
class Preset:
    """Everything an experiment size fixes. ``pretrain`` is the clean phase of ``continuous``; ``continued`` its
    poisoned phase (also the adapter training of ``lora``, whose adapters ``lora`` sets); ``scratch`` the single
    phase of ``scratch``. ``held_out`` renders per concept (another
    augmentation stream) measure the judge. ``poison_per_concept`` is the default p."""

    name: str
    render: RenderConfig
    vae: VAEConfig
    judge: JudgeConfig
    unet: UNetConfig
    pretrain: TrainConfig
    continued: TrainConfig
    scratch: TrainConfig
    evaluation: EvalConfig
    poison_per_concept: int
    held_out: int = 8
    device: str = "cpu"
    nightshade: NightshadeConfig = NightshadeConfig()
    lora: LoraSettings = LoraSettings()
    validation_images: int = 2  # per validation prompt and checkpoint (empirical.validation); 0: none


PRESETS: dict[str, Preset] = {
    "micro": Preset(
        name="micro",
        render=RenderConfig(concepts=4, per_concept=6, size=16),
        vae=VAEConfig(channels=(8, 16), norm_groups=4, steps=10, batch_size=8),
        judge=JudgeConfig(width=8, dim=16, steps=30, batch_size=24),
        unet=UNetConfig(channels=(16, 32), attention=(False, True), layers_per_block=1, head_dim=8, norm_groups=8),
        pretrain=TrainConfig(steps=6, batch_size=8, warmup=2, checkpoint_every=3),
        continued=TrainConfig(steps=4, batch_size=8, warmup=2, checkpoint_every=2),
        scratch=TrainConfig(steps=6, batch_size=8, warmup=2, checkpoint_every=3),
        evaluation=EvalConfig(per_concept=2, steps=2, guidance=2.0),
        poison_per_concept=4,
        held_out=2,
        nightshade=NightshadeConfig(steps=3),
        validation_images=0,  # tests ask for validation where they test it
    ),
    "smoke": Preset(
        name="smoke",
        render=RenderConfig(concepts=12, per_concept=16, size=16),
        vae=VAEConfig(channels=(16, 32), norm_groups=8, steps=150, batch_size=32),
        judge=JudgeConfig(width=16, dim=64, steps=150, batch_size=96),
        unet=UNetConfig(channels=(32, 64), attention=(False, True), layers_per_block=1, head_dim=16,
                        norm_groups=16),
        pretrain=TrainConfig(steps=300, batch_size=32, warmup=30, checkpoint_every=100),
        continued=TrainConfig(steps=80, batch_size=32, warmup=10, checkpoint_every=40),
        scratch=TrainConfig(steps=300, batch_size=32, warmup=30, checkpoint_every=100),
        evaluation=EvalConfig(per_concept=4, steps=10, guidance=3.0),
        poison_per_concept=24,
        held_out=4,
        nightshade=NightshadeConfig(steps=20),
    ),
    "cpu": Preset(
        name="cpu",
        render=RenderConfig(concepts=150, per_concept=40, size=32),
        vae=VAEConfig(channels=(16, 32, 64), norm_groups=8, steps=800, batch_size=32),
        judge=JudgeConfig(width=24, dim=128, steps=400, batch_size=256),
        unet=UNetConfig(channels=(64, 128), attention=(False, True), layers_per_block=1, head_dim=32),
        pretrain=TrainConfig(steps=3000, batch_size=64, warmup=100, checkpoint_every=200),
        continued=TrainConfig(steps=500, batch_size=64, warmup=20, checkpoint_every=100),
        scratch=TrainConfig(steps=3000, batch_size=64, warmup=100, checkpoint_every=200),
        evaluation=EvalConfig(per_concept=6, steps=15, guidance=4.0),
        poison_per_concept=80,
        nightshade=NightshadeConfig(steps=100),
    ),
    "gpu": Preset(
        name="gpu",
        render=RenderConfig(concepts=300, per_concept=60, size=64),
        vae=VAEConfig(channels=(32, 64, 128, 128), norm_groups=16, steps=6000, batch_size=128),
        judge=JudgeConfig(width=48, dim=256, steps=3000, batch_size=512),
        unet=UNetConfig(channels=(128, 256, 384), attention=(False, True, True), layers_per_block=2, head_dim=64),
        pretrain=TrainConfig(steps=30000, batch_size=256, warmup=500, checkpoint_every=2000, mixed_precision="bf16"),
        continued=TrainConfig(steps=6000, batch_size=256, warmup=100, checkpoint_every=2000,
                              mixed_precision="bf16"),
        scratch=TrainConfig(steps=30000, batch_size=256, warmup=500, checkpoint_every=2000,
                            mixed_precision="bf16"),
        evaluation=EvalConfig(per_concept=16, steps=30, guidance=4.0),
        poison_per_concept=120,
        device="cuda",
    ),
}


def check_resolution(preset: Preset, resolution: int) -> int:
    """``resolution`` if the preset's VAE and UNet can work at it: a multiple of the VAE's downsampling times
    the UNet's (latents must halve at every UNet level), at least 8 px; InputError naming the nearest ones."""
    step = 2 ** (len(preset.vae.channels) - 1) * 2 ** (len(preset.unet.channels) - 1)
    if resolution < max(8, step) or resolution % step or resolution > 4096:
        low = max(step, (resolution // step) * step)
        raise InputError(f"--resolution {resolution} does not fit preset {preset.name!r}: it must be a multiple of "
                         f"{step} (VAE and UNet downsampling) between {max(8, step)} and 4096, e.g. {low} or "
                         f"{low + step}")
    return resolution


def default_poisoned_concepts(n_concepts: int, clean: bool = True) -> list[int]:
    """The default C_P list of a universe of K concepts: K/6, K/3 and 2K/3 (rounded, at least 1), after the clean
    point 0 when ``clean`` — 25, 50, 100 for the cpu preset's 150 concepts, 2, 4, 8 for smoke's 12."""
    points = sorted({max(1, round(n_concepts * f)) for f in (1 / 6, 1 / 3, 2 / 3)})
    return ([0] if clean else []) + points


def get_preset(name: str) -> Preset:
    """The named preset (InputError listing the choices otherwise)."""
    if name not in PRESETS:
        raise InputError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    return PRESETS[name]


def with_overrides(preset: Preset, *, steps: int | None = None, concepts: int | None = None,
                   seed: int | None = None, unet_channels: tuple[int, ...] | None = None,
                   epsilon: float | None = None, pgd_steps: int | None = None,
                   lora_rank: int | None = None, training: Mapping[str, object] | None = None,
                   resolution: int | None = None, fonts: tuple[str, ...] | None = None) -> Preset:
    """A copy of ``preset`` with the poisoned-phase ``steps`` (continued and scratch), the number of
    ``concepts``, the training ``seed``, the UNet's ``unet_channels`` per level (same number of levels as the
    preset's; attention heads keep their ``head_dim``), the Nightshade budget ``epsilon`` and ``pgd_steps``, the
    LoRA rank, other :class:`empirical.train.TrainConfig` fields of the poisoned phase (``training``: lr,
    batch_size, warmup, lr_scheduler, gradient_accumulation_steps; None values ignored), the image
    ``resolution`` or the data set's ``fonts`` replaced (each validated)."""
    p = preset
    if fonts is not None:
        p = replace(p, render=replace(p.render, fonts=tuple(fonts)))
    fields = {k: v for k, v in (training or {}).items() if v is not None}
    if fields:
        p = replace(p, continued=replace(p.continued, **fields), scratch=replace(p.scratch, **fields))
    if resolution is not None:
        p = replace(p, render=replace(p.render, size=check_resolution(p, resolution)))
    if epsilon is not None or pgd_steps is not None:
        ns = replace(p.nightshade, epsilon=p.nightshade.epsilon if epsilon is None else epsilon,
                     steps=p.nightshade.steps if pgd_steps is None else pgd_steps)
        p = replace(p, nightshade=ns)
    if lora_rank is not None:
        lora = replace(p.lora, rank=lora_rank)
        p = replace(p, lora=lora)
    if unet_channels is not None:
        unet_channels = tuple(int(c) for c in unet_channels)
        if len(unet_channels) != len(p.unet.channels):
            raise InputError(f"--unet-channels needs {len(p.unet.channels)} levels for preset {p.name!r}, "
                             f"got {len(unet_channels)}")
        bad = [c for c in unet_channels if c < 1 or c % p.unet.norm_groups or c % p.unet.head_dim]
        if bad:
            raise InputError(f"--unet-channels {bad[0]} must be a positive multiple of the group-norm groups "
                             f"({p.unet.norm_groups}) and the attention head size ({p.unet.head_dim})")
        p = replace(p, unet=replace(p.unet, channels=unet_channels))
    if concepts is not None:
        p = replace(p, render=replace(p.render, concepts=concepts))
    if steps is not None:
        p = replace(p, continued=replace(p.continued, steps=steps), scratch=replace(p.scratch, steps=steps))
    if seed is not None:
        p = replace(p, pretrain=replace(p.pretrain, seed=seed), continued=replace(p.continued, seed=seed),
                    scratch=replace(p.scratch, seed=seed))
    return p


#: accelerate's mixed-precision modes.
MIXED_PRECISION: tuple[str, ...] = ("no", "fp16", "bf16")


def with_runtime(preset: Preset, *, mixed_precision: str | None = None, device: str | None = None,
                 environ: Mapping[str, str] | None = None) -> tuple[Preset, list[str]]:
    """The preset with the precision and device this run uses, and a note per choice not taken from the preset.

    Order: the command line (``--mixed-precision``, ``--device``), then the launcher (``accelerate launch
    --mixed_precision bf16`` sets ``ACCELERATE_MIXED_PRECISION``, ``--cpu`` sets ``ACCELERATE_USE_CPU``), then the
    preset. Every training phase (pretraining, continued, scratch) uses the chosen precision; fp16 needs a GPU
    (bf16 works on CPUs).
    """
    env = dict(environ or {})
    notes = []
    mp = mixed_precision
    if mp is None and env.get("ACCELERATE_MIXED_PRECISION"):
        mp = env["ACCELERATE_MIXED_PRECISION"]
        notes.append(f"mixed precision {mp} (from the launcher)")
    dev = device
    launcher_cpu = env.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")
    if dev is None and launcher_cpu:
        dev = "cpu"
        notes.append("device cpu (from the launcher)")
    if launcher_cpu and env.get("MASTER_ADDR") and not env.get("WORLD_SIZE"):
        # accelerate launch --cpu --num_processes N (N > 1) starts one process and sets only the rendezvous address
        notes.append("warning: accelerate launch --cpu runs ONE process whatever --num_processes says; for N "
                     "processes on CPUs use accelerate launch --multi_gpu --num_processes N (it works without GPUs)")
    p = preset
    if dev is not None:
        p = replace(p, device=dev)
    if mp is not None:
        if mp not in MIXED_PRECISION:
            raise InputError(f"mixed precision must be one of {', '.join(MIXED_PRECISION)}, got {mp!r}")
        p = replace(p, pretrain=replace(p.pretrain, mixed_precision=mp), continued=replace(p.continued,
                    mixed_precision=mp), scratch=replace(p.scratch, mixed_precision=mp))
    if p.continued.mixed_precision == "fp16" and p.device == "cpu":
        raise InputError("fp16 mixed precision needs a GPU; on the CPU use --mixed-precision bf16 or no")
    return p, notes
