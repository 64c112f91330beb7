"""GPU check: correctness and training throughput of the ``gpu`` preset's model, in one short run (≤ 8 min on
one H100-class card). Never part of the tests; run it when a GPU is at hand:

    python bench/gpu_check.py --out gpu_check                # on a CUDA machine
    python bench/gpu_check.py --device cpu --tiny --out /tmp/g   # the same code path on CPU, smoke-sized

1. **Correctness.** A shortened gpu preset (40 concepts, 64×64, short VAE/judge/UNet schedules) trained from
   scratch on the card: the UNet's training loss must fall (mean of the last 10 % of steps below the first 10 %),
   and the judge must read the generated images as the prompted concept well above chance (1/40).
2. **Throughput.** ``bench/train.py``'s two loops — a plain diffusers-style loop (VAE + text encoder per step,
   ``DDPMScheduler.add_noise``, ``EMAModel``) and ours (precomputed latents and caption states) — on the full gpu
   preset UNet with its batch and bf16 autocast: median steps/s and images/s over alternating runs, and the ratio.

Writes ``OUT/gpu_check.md`` (a table to paste into BENCHMARKS.md with the card's name) and ``OUT/gpu_check.json``;
exits 1 if a correctness check fails.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def correctness(preset, cache: Path, log) -> dict:
    """Train the shortened preset from scratch; loss trend and judge accuracy of generated images."""
    from empirical.evaluate import prompts_and_seeds
    from empirical.model import generate
    from empirical.assets import build_mix, fresh_unet, prepare_assets
    from empirical.train import TrainConfig, train_unet, with_weights

    t0 = time.perf_counter()
    assets = prepare_assets(preset, cache, log=log)
    t_assets = time.perf_counter() - t0
    mix, _ = build_mix(assets, np.zeros(0, np.int64), np.zeros(0, np.int64))
    losses: list[float] = []
    cfg = TrainConfig(**{**asdict(preset.pretrain), "seed": 0})
    t0 = time.perf_counter()
    unet, ema = train_unet(fresh_unet(assets, 0), mix, cfg, device=preset.device,
                           on_step=lambda step, loss: losses.append(loss))
    t_train = time.perf_counter() - t0
    pipe = assets.instruments.pipeline(with_weights(unet, ema))
    names = assets.data.names
    prompts, seeds, labels = prompts_and_seeds(names, preset.evaluation)
    images = generate(pipe, prompts, seeds, steps=preset.evaluation.steps, guidance=preset.evaluation.guidance)
    acc = float(np.mean(assets.instruments.judge.classify(images) == labels))
    k = max(1, len(losses) // 10)
    first, last = float(np.mean(losses[:k])), float(np.mean(losses[-k:]))
    return {"concepts": len(names), "judge_heldout_acc": assets.quality["judge_heldout_acc"],
            "loss_first": first, "loss_last": last, "loss_falls": last < first, "sample_acc": acc,
            "chance": 1 / len(names), "beats_chance": acc > 3 / len(names), "assets_s": t_assets,
            "train_s": t_train, "train_steps": cfg.steps}


def markdown(result: dict, steps: int) -> str:
    """The check's table for docs: correctness (loss falls, samples read right, the judge) and throughput."""
    check, t = result["correctness"], result["throughput"]
    mp, mo, bs = t["plain_s"], t["ours_s"], t["batch"]
    return "\n".join([
        f"### bench/gpu_check.py on {result['device']} (torch {result['torch']}, preset {result['preset']}, "
        f"{result['total_s'] / 60:.1f} min)",
        "",
        "| check | value |", "|---|---|",
        f"| loss, first → last 10 % of {check['train_steps']} steps | {check['loss_first']:.3f} → "
        f"{check['loss_last']:.3f} ({'falls' if check['loss_falls'] else 'DOES NOT FALL'}) |",
        f"| generated images read as the prompted concept | {check['sample_acc']:.3f} (chance "
        f"{check['chance']:.3f}; {'beats' if check['beats_chance'] else 'DOES NOT BEAT'} 3× chance) |",
        f"| judge on held-out clean renders | {check['judge_heldout_acc']:.3f} |",
        "",
        f"| loop ({t['unet_params'] / 1e6:.1f} M-param UNet, batch {bs}, {t['image']} px, {t['precision']}) | "
        "median s | steps/s | images/s |", "|---|---|---|---|",
        f"| plain diffusers-style | {mp:.2f} | {steps / mp:.2f} | {t['plain_img_s']:.0f} |",
        f"| ours | {mo:.2f} | {steps / mo:.2f} | {t['ours_img_s']:.0f} |",
        f"| ratio ours/plain | | | **{t['ratio']:.2f}×** |", ""])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tiny", action="store_true", help="smoke-sized models (to try the code path on a CPU)")
    ap.add_argument("--steps", type=int, default=40, help="steps per timed throughput run")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("gpu_check"))
    args = ap.parse_args()

    import torch

    from empirical.presets import PRESETS
    from train import compare, timed_loops

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("bench/gpu_check.py: no CUDA device; use --device cpu --tiny to try the code path", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    base = PRESETS["smoke" if args.tiny else "gpu"]
    base = replace(base, device="cuda" if args.device.startswith("cuda") else "cpu")
    short = replace(
        base,
        render=replace(base.render, concepts=min(40, base.render.concepts), per_concept=24),
        vae=replace(base.vae, steps=150 if args.tiny else 1500),
        judge=replace(base.judge, steps=100 if args.tiny else 600),
        pretrain=replace(base.pretrain, steps=150 if args.tiny else 2500, warmup=20),
        evaluation=replace(base.evaluation, per_concept=4, steps=20),
    )
    t0 = time.perf_counter()
    check = correctness(short, args.out / "cache", log)
    log(f"correctness: loss {check['loss_first']:.3f} -> {check['loss_last']:.3f}; samples read correctly "
        f"{check['sample_acc']:.3f} (chance {check['chance']:.3f})")
    plain, ours, info = timed_loops(base, device=args.device, steps=args.steps)
    mp, mo = compare(plain, ours, args.repeats)
    total = time.perf_counter() - t0
    name = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else platform.processor() or "cpu"
    bs = info["batch"]
    result = {"device": name, "torch": torch.__version__, "preset": base.name, "correctness": check,
              "throughput": {"unet_params": info["params"], "batch": bs, "image": info["image"],
                             "precision": info["precision"], "steps_per_run": args.steps, "repeats": args.repeats,
                             "plain_s": mp, "ours_s": mo, "plain_img_s": args.steps * bs / mp,
                             "ours_img_s": args.steps * bs / mo, "ratio": mp / mo,
                             "precompute_s": info["precompute_s"]},
              "total_s": total}
    (args.out / "gpu_check.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    table = markdown(result, args.steps)
    (args.out / "gpu_check.md").write_text(table, encoding="utf-8")
    print(table)
    return 0 if check["loss_falls"] and check["beats_chance"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
