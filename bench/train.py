"""Benchmark: our UNet training loop against a plain diffusers-style loop on the same model. Run alone:

    .venv/bin/python bench/train.py              # the cpu preset's model and batch (a few minutes on 2 cores)
    .venv/bin/python bench/train.py --quick      # the smoke preset's model

Both loops train the same UNet2DConditionModel (same initial weights, batch, optimiser) on the same rendered
images and captions; they differ in what a step does:

- **plain** (the shape of diffusers' ``train_text_to_image.py``): per step, take a batch of images and captions,
  encode the images with the VAE (``latent_dist.sample() * scaling_factor``), tokenise and encode the captions with
  the text encoder, add noise with ``DDPMScheduler.add_noise``, UNet forward/backward, AdamW step, ``EMAModel.step``;
- **ours** (:func:`empirical.train.train_unet`): latent posteriors and caption token states are computed once
  (the VAE and text encoder are frozen), so a step samples z = s(μ + σξ) and indexes the context: one UNet
  forward/backward, AdamW, EMA; plus resumable checkpoints.

Reported: median steps/s and images/s over ``--repeats`` alternating runs of ``--steps`` steps, and the ratio.
The one-off precomputation cost of ours is reported separately.

``--variants`` then times our loop as it is against the same loop with the UNet in channels-last memory format
and/or compiled by ``torch.compile`` (``ours``, ``channels_last``, ``compile``): each variant trains a fresh copy
(same weights, same seed) for ``--steps`` steps, alternating over ``--repeats``; its throughput is the median
step time after the first ``--skip`` steps (so ``torch.compile``'s one-off compilation is reported apart, as its
first-step time), and "unchanged results" is checked as the largest difference of the per-step training loss
from the plain loop's (same batches, same noise). The project adopts a variant only at ≥ 1.2× with unchanged
results.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


@dataclass
class LoopSetup:
    """What both loops share: the rendered data, the frozen text encoder and (untrained) VAE, a fresh-UNet maker,
    the noise scheduler, the batch size, the precision, the device and its synchronisation."""

    data: Any
    te: Any
    vae: Any
    images: Any
    unet: Callable[[], Any]
    sched: Any
    bs: int
    precision: str
    device: str
    sync: Callable[[], None]


def plain_loop(s: LoopSetup, steps: int) -> float:
    """diffusers' train_text_to_image loop, as written there: every step encodes its images with the VAE and its
    captions with the text encoder, then one AdamW step and an EMA update; returns the seconds of ``steps``."""
    import torch
    from diffusers.training_utils import EMAModel

    model = s.unet().train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=1e-2)
    ema = EMAModel(model.parameters(), decay=0.999)
    gen = torch.Generator().manual_seed(0)
    captions = s.data.captions
    s.sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        idx = torch.randint(0, len(s.images), (s.bs,), generator=gen)
        with torch.no_grad():
            lat = s.vae.encode(s.images[idx.to(s.device)]).latent_dist.sample() * s.vae.config.scaling_factor
            caps = [captions[i] if torch.rand(1, generator=gen).item() > 0.1 else "" for i in idx.tolist()]
            ids = s.te.tokenizer(caps, padding="max_length", max_length=s.te.max_length, truncation=True,
                                 return_tensors="pt").input_ids.to(s.device)
            ctx = s.te.model(ids)[0]
        noise = torch.randn(lat.shape, device=s.device)
        t = torch.randint(0, s.sched.config.num_train_timesteps, (s.bs,), device=s.device)
        with torch.autocast(device_type=s.device.split(":")[0], dtype=torch.bfloat16, enabled=s.precision == "bf16"):
            pred = model(s.sched.add_noise(lat, noise, t), t, encoder_hidden_states=ctx).sample
        loss = torch.nn.functional.mse_loss(pred.float(), noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        ema.step(model.parameters())
    s.sync()
    return time.perf_counter() - t0


def timed_loops(preset, *, device: str = "cpu", steps: int = 30, concepts: int = 40, per_concept: int = 8):
    """(plain, ours, info): two callables that each train a fresh copy of ``preset``'s UNet for ``steps`` steps
    on ``device`` (bf16 autocast when the preset trains in bf16) and return the seconds taken; ``info`` holds the
    batch, the image size, the parameter count and the one-off precomputation seconds of ours."""
    from dataclasses import replace

    import torch

    from empirical.data import render, to_tensor
    from empirical.model import build_unet, build_vae, noise_scheduler
    from empirical.text_encoder import TextEncoder
    from empirical.train import Mix, TrainConfig, encode_latents, train_unet

    data = render(replace(preset.render, concepts=min(preset.render.concepts, concepts), per_concept=per_concept))
    te = TextEncoder(device=device)
    vae = build_vae(preset.vae).eval().requires_grad_(False).to(device)  # untrained: cost, not quality
    h = data.images.shape[1] // (2 ** (len(preset.vae.channels) - 1))

    def unet():
        return build_unet(preset.unet, sample_size=h, latent_channels=preset.vae.latent_channels,
                          cross_attention_dim=te.dim, seed=0).to(device)

    setup = LoopSetup(data, te, vae, to_tensor(data.images).to(device), unet, noise_scheduler(),
                      preset.continued.batch_size, preset.continued.mixed_precision, device,
                      torch.cuda.synchronize if device.startswith("cuda") else (lambda: None))
    t0 = time.perf_counter()
    mu, sigma = encode_latents(vae, data.images)
    uniq = sorted(set(data.captions)) + [""]
    row = {c: i for i, c in enumerate(uniq)}
    mix = Mix(mu, sigma, te.token_states(uniq), np.arange(len(data.captions)),
              np.array([row[c] for c in data.captions]), row[""], float(vae.config.scaling_factor))
    precompute = time.perf_counter() - t0

    def ours() -> float:
        model = unet()
        setup.sync()
        t0 = time.perf_counter()
        train_unet(model, mix, TrainConfig(steps=steps, batch_size=setup.bs, warmup=1, checkpoint_every=10 ** 9,
                                           mixed_precision=setup.precision), device=device)
        setup.sync()
        return time.perf_counter() - t0

    info = {"batch": setup.bs, "image": data.images.shape[1], "params": sum(p.numel() for p in unet().parameters()),
            "precompute_s": precompute, "images": len(data.captions), "captions": len(uniq),
            "precision": setup.precision}
    return (lambda: plain_loop(setup, steps)), ours, info


VARIANTS = ("ours", "channels_last", "compile")


def variant_loop(preset, name: str, *, steps: int, device: str = "cpu", concepts: int = 40, per_concept: int = 8):
    """A callable that trains a fresh copy of ``preset``'s UNet with our loop for ``steps`` steps in variant
    ``name`` and returns (per-step wall times, per-step losses, seconds of the first step)."""
    from dataclasses import replace

    import torch

    from empirical.data import render
    from empirical.model import build_unet, build_vae
    from empirical.text_encoder import TextEncoder
    from empirical.train import Mix, TrainConfig, encode_latents, train_unet

    bs = preset.continued.batch_size
    data = render(replace(preset.render, concepts=min(preset.render.concepts, concepts), per_concept=per_concept))
    te = TextEncoder(device=device)
    vae = build_vae(preset.vae).eval().requires_grad_(False).to(device)
    mu, sigma = encode_latents(vae, data.images)
    uniq = sorted(set(data.captions)) + [""]
    row = {c: i for i, c in enumerate(uniq)}
    mix = Mix(mu, sigma, te.token_states(uniq), np.arange(len(data.captions)),
              np.array([row[c] for c in data.captions]), row[""], float(vae.config.scaling_factor))
    h = data.images.shape[1] // (2 ** (len(preset.vae.channels) - 1))

    def run() -> tuple[list[float], list[float]]:
        model = build_unet(preset.unet, sample_size=h, latent_channels=preset.vae.latent_channels,
                           cross_attention_dim=te.dim, seed=0).to(device)
        if name == "channels_last":
            model = model.to(memory_format=torch.channels_last)
        elif name == "compile":
            model = torch.compile(model)
        stamps, losses = [time.perf_counter()], []

        def on_step(step: int, loss: float) -> None:
            stamps.append(time.perf_counter())
            losses.append(loss)

        train_unet(model, mix, TrainConfig(steps=steps, batch_size=bs, warmup=1, checkpoint_every=10 ** 9,
                                           mixed_precision=preset.continued.mixed_precision), device=device,
                   on_step=on_step)
        return list(np.diff(stamps)), losses

    return run


def compare_variants(preset, names: list[str], *, steps: int, repeats: int, skip: int) -> dict[str, dict]:
    """Per variant: median step seconds after ``skip`` steps (over all repeats), the first step's seconds, and the
    largest per-step loss difference from the ``ours`` loop (alternating runs)."""
    loops = {n: variant_loop(preset, n, steps=steps) for n in names}
    times: dict[str, list[float]] = {n: [] for n in names}
    first: dict[str, list[float]] = {n: [] for n in names}
    losses: dict[str, list[float]] = {}
    for _ in range(repeats):
        for n in names:
            dt, loss = loops[n]()
            times[n] += dt[skip:]
            first[n].append(dt[0])
            losses.setdefault(n, loss)
    ref = np.asarray(losses["ours"])
    return {n: {"step_s": statistics.median(times[n]), "first_step_s": statistics.median(first[n]),
                "max_loss_diff": float(np.max(np.abs(np.asarray(losses[n]) - ref)))} for n in names}


def compare(plain, ours, repeats: int) -> tuple[float, float]:
    """Medians (seconds) of ``repeats`` alternating runs of each loop, after one warm-up run of each."""
    plain(), ours()
    tp, to = [], []
    for _ in range(repeats):
        tp.append(plain())
        to.append(ours())
    return statistics.median(tp), statistics.median(to)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="the smoke preset's model instead of the cpu preset's")
    ap.add_argument("--steps", type=int, default=None, help="steps per timed run (default 30, quick 40)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--variants", default=None, metavar="LIST",
                    help=f"instead: time our loop's variants side by side, from {','.join(VARIANTS)}")
    ap.add_argument("--skip", type=int, default=5, help="--variants: steps left out of the throughput (warm-up)")
    args = ap.parse_args()

    import torch

    from empirical.presets import PRESETS

    torch.set_num_threads(args.threads)
    preset = PRESETS["smoke" if args.quick else "cpu"]
    steps = args.steps or (40 if args.quick else 30)
    if args.variants:
        names = ["ours"] + [n for n in args.variants.split(",") if n != "ours"]
        if any(n not in VARIANTS for n in names):
            raise SystemExit(f"--variants: choose from {', '.join(VARIANTS)}")
        got = compare_variants(preset, names, steps=steps, repeats=args.repeats, skip=args.skip)
        bs = preset.continued.batch_size
        print(f"# bench/train.py --variants  preset={preset.name}  batch={bs}  steps/run={steps} (first "
              f"{args.skip} left out)  repeats={args.repeats}  threads={args.threads}  torch {torch.__version__}")
        print(f"{'variant':<14} {'median step s':>14} {'steps/s':>8} {'vs ours':>8} {'first step s':>13} "
              f"{'max |Δ loss|':>13}")
        for n, r in got.items():
            print(f"{n:<14} {r['step_s']:>14.4f} {1 / r['step_s']:>8.2f} {got['ours']['step_s'] / r['step_s']:>7.2f}x "
                  f"{r['first_step_s']:>13.2f} {r['max_loss_diff']:>13.2e}")
        return 0
    plain, ours, info = timed_loops(preset, steps=steps)
    mp, mo = compare(plain, ours, args.repeats)
    bs = info["batch"]
    print(f"# bench/train.py  preset={preset.name}  unet={info['params'] / 1e6:.2f}M params  batch={bs}  "
          f"image={info['image']}px  steps/run={steps}  repeats={args.repeats}  threads={args.threads}  "
          f"{platform.machine()}  torch {torch.__version__}")
    print(f"{'loop':<8} {'median s':>9} {'steps/s':>8} {'images/s':>9}")
    for name, m in (("plain", mp), ("ours", mo)):
        print(f"{name:<8} {m:>9.2f} {steps / m:>8.2f} {steps * bs / m:>9.1f}")
    print(f"ratio ours/plain (throughput): {mp / mo:.2f}x; one-off precompute for ours: {info['precompute_s']:.1f} s "
          f"({info['images']} images, {info['captions']} captions)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
