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
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="the smoke preset's model instead of the cpu preset's")
    ap.add_argument("--steps", type=int, default=None, help="steps per timed run (default 30, quick 40)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    import torch
    from diffusers.training_utils import EMAModel

    from empirical.data import render
    from empirical.encoders import TextEncoder, to_tensor
    from empirical.model import build_unet, build_vae, noise_scheduler
    from empirical.presets import PRESETS
    from empirical.train import Mix, TrainConfig, encode_latents, train_unet

    torch.set_num_threads(args.threads)
    preset = PRESETS["smoke" if args.quick else "cpu"]
    steps = args.steps or (40 if args.quick else 30)
    bs = preset.continued.batch_size
    from dataclasses import replace

    data = render(replace(preset.render, concepts=min(preset.render.concepts, 40), per_concept=8))
    te = TextEncoder()
    vae = build_vae(preset.vae).eval().requires_grad_(False)  # untrained: cost, not quality, is measured
    images = to_tensor(data.images)
    captions = data.captions
    h = data.images.shape[1] // (2 ** (len(preset.vae.channels) - 1))

    def unet():
        return build_unet(preset.unet, sample_size=h, latent_channels=preset.vae.latent_channels,
                          cross_attention_dim=te.dim, seed=0)

    sched = noise_scheduler()

    def plain() -> float:
        model = unet().train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=1e-2)
        ema = EMAModel(model.parameters(), decay=0.999)
        gen = torch.Generator().manual_seed(0)
        t0 = time.perf_counter()
        for _ in range(steps):
            idx = torch.randint(0, len(images), (bs,), generator=gen)
            with torch.no_grad():
                lat = vae.encode(images[idx]).latent_dist.sample(generator=gen) * vae.config.scaling_factor
                caps = [captions[i] if torch.rand(1, generator=gen).item() > 0.1 else "" for i in idx.tolist()]
                ids = te.tokenizer(caps, padding="max_length", max_length=te.max_length, truncation=True,
                                   return_tensors="pt").input_ids
                ctx = te.model(ids)[0]
            noise = torch.randn(lat.shape, generator=gen)
            t = torch.randint(0, sched.config.num_train_timesteps, (bs,), generator=gen)
            pred = model(sched.add_noise(lat, noise, t), t, encoder_hidden_states=ctx).sample
            loss = torch.nn.functional.mse_loss(pred, noise)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            ema.step(model.parameters())
        return time.perf_counter() - t0

    t0 = time.perf_counter()
    mu, sigma = encode_latents(vae, data.images)
    uniq = sorted(set(captions)) + [""]
    ctx_all = te.token_states(uniq)
    row = {c: i for i, c in enumerate(uniq)}
    mix = Mix(mu, sigma, ctx_all, np.arange(len(captions)), np.array([row[c] for c in captions]), row[""],
              float(vae.config.scaling_factor))
    precompute = time.perf_counter() - t0

    def ours() -> float:
        model = unet()
        t0 = time.perf_counter()
        train_unet(model, mix, TrainConfig(steps=steps, batch_size=bs, warmup=1, checkpoint_every=10 ** 9))
        return time.perf_counter() - t0

    plain(), ours()  # warm-up
    tp, to = [], []
    for _ in range(args.repeats):
        tp.append(plain())
        to.append(ours())
    mp, mo = statistics.median(tp), statistics.median(to)
    n_params = sum(p.numel() for p in unet().parameters())
    print(f"# bench/train.py  preset={preset.name}  unet={n_params / 1e6:.2f}M params  batch={bs}  "
          f"image={data.images.shape[1]}px  steps/run={steps}  repeats={args.repeats}  threads={args.threads}  "
          f"{platform.machine()}  torch {torch.__version__}")
    print(f"{'loop':<8} {'median s':>9} {'steps/s':>8} {'images/s':>9}")
    for name, m in (("plain", mp), ("ours", mo)):
        print(f"{name:<8} {m:>9.2f} {steps / m:>8.2f} {steps * bs / m:>9.1f}")
    print(f"ratio ours/plain (throughput): {mp / mo:.2f}x; one-off precompute for ours: {precompute:.1f} s "
          f"({len(captions)} images, {len(uniq)} captions)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
