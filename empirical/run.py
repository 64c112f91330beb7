"""``python -m empirical.run``: poison C_P concepts of a real latent text-to-image model and measure what happens.

    python -m empirical.run --preset cpu --scenario continuous --poisoned-concepts 0,25,50,100 \\
        --poison-per-concept 80 --seed 0 --out results/empirical

For every seed and C_P it trains the scenario on clean + dirty-label poison pairs, and (for C_P > 0) a *control*
on clean + as many correctly-labelled extra pairs, then generates k images per concept at fixed seeds and writes
one row per (seed, C_P, kind) to ``OUT/results.csv`` (measures: :mod:`empirical.evaluate`), a sample grid per
point under ``OUT/grids/`` (with its cross-attention overlays), mean cross-attention statistics of poisoned and
unpoisoned concepts in ``OUT/attention.csv`` (:mod:`empirical.attention`), every concept's reading by the judge
in ``OUT/per_concept.csv`` (long format: one row per point and concept), per-concept readings, the training
loss per step (``<point>-loss.csv``) and the grid concepts' attention maps under ``OUT/points/``, the poison plan
per seed under
``OUT/plans/`` and ``OUT/manifest.json`` (configs, versions, judge and VAE quality, timings). Finished points are
skipped when rerun; an interrupted training resumes from its last checkpoint. Shared assets (renders, VAE, judge,
clean pretraining) are cached in ``--cache`` and keyed by their settings.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

from empirical.experiment import print_summary, run_experiment
from empirical.poison_kinds import POISON_KINDS
from theory.poisoning import TARGET_RULES
from empirical.presets import DEFAULT_CACHE, MIXED_PRECISION, PRESETS
from empirical.request import resolve
from empirical.scenarios import SCENARIOS
from implosion_base.cli import ArgumentParser, dry_run, path_arg, run_main
from implosion_base.progress import Progress, quiet_library_bars


def _poison_options(parser: ArgumentParser) -> None:
    """What to poison and how: preset, scenario, C_P, p, poison kind and its knobs, targets, seeds."""
    parser.add_argument("--preset", default="smoke", help=f"experiment size: {', '.join(PRESETS)} (default smoke)")
    parser.add_argument("--scenario", default="continuous", help=f"{', '.join(SCENARIOS)} (default continuous)")
    parser.add_argument("--poisoned-concepts", default=None, metavar="LIST",
                        help="C_P values, e.g. 0,25,50,100 or 0..100:25 (default: 0 and K/6, K/3, 2K/3 of the "
                             "preset's K concepts, i.e. 0,25,50,100 for cpu, 0,2,4,8 for smoke)")
    parser.add_argument("--poison-per-concept", type=int, default=None, metavar="P",
                        help="dirty-label pairs per poisoned concept (default: the preset's)")
    parser.add_argument("--poison-type", default="dirty", help=f"{', '.join(POISON_KINDS)} (default dirty)")
    parser.add_argument("--epsilon", type=float, default=None,
                        help="nightshade: L-infinity budget on the [0, 1] pixel scale (default: the preset's, 0.05)")
    parser.add_argument("--pgd-steps", type=int, default=None,
                        help="nightshade: signed-gradient steps per image (default: the preset's)")
    parser.add_argument("--lora-rank", type=int, default=None, help="lora: adapter rank (default: the preset's, 8)")
    parser.add_argument("--targets", default="poisoned",
                        help=f"poison target rule: {', '.join(TARGET_RULES)} (default poisoned: targets among the "
                             "poisoned concepts; 'all' is the old spelling of random)")
    parser.add_argument("--seeds", "--seed", dest="seeds", default="0", metavar="LIST",
                        help="seeds, a list: 0, 0,1,2 or 0..2 (default 0; --seed is the older name)")
    parser.add_argument("--base-seed", type=int, default=0,
                        help="seed of the clean pretraining that continuous and lora start from, shared by all "
                             "--seeds (default 0); scratch ignores it")


def _model_options(parser: ArgumentParser) -> None:
    """The real model and its training: K, UNet width, steps, benign pairs per concept."""
    g = parser.add_argument_group("model and training")
    g.add_argument("--n-concepts", "--concepts", dest="concepts", type=int, default=None,
                   help="K, the number of concepts (default: the preset's; --concepts is the older name)")
    g.add_argument("--unet-channels", default=None, metavar="LIST",
                   help="UNet channels per level, e.g. 32,64 (default: the preset's)")
    g.add_argument("--steps", type=int, default=None, help="training steps of the poisoned phase (default: the preset's)")
    g.add_argument("--benign-per-concept", type=int, default=None, metavar="M",
                   help="clean pairs per concept in the poisoned phase's mix (default: every render, the "
                        "preset's per_concept); the clean pretraining keeps every render")


def _data_options(parser: ArgumentParser) -> None:
    """A user's own image-text folder instead of the emoji renders."""
    g = parser.add_argument_group("your own data (--train-data-dir)")
    g.add_argument("--train-data-dir", type=Path, default=None, metavar="DIR",
                   help="your own image-text folder instead of the emoji renders (metadata.jsonl or .csv, at the "
                        "top or in train/; empirical.folder_data); needs --concepts-file or --caption-template")
    g.add_argument("--concepts-file", type=Path, default=None, metavar="FILE",
                   help="--train-data-dir: concept names, one per line; a pair belongs to the concept its "
                        "caption names")
    g.add_argument("--caption-template", default=None, metavar="TEMPLATE",
                   help="--train-data-dir: captions of the form 'a photo of a {}'; the braces are the concept")
    g.add_argument("--image-column", default="file_name", help="--train-data-dir: metadata column of the image "
                                                               "path (default file_name)")
    g.add_argument("--caption-column", default="text", help="--train-data-dir: metadata column of the caption "
                                                            "(default text)")


def _base_options(parser: ArgumentParser) -> None:
    """A Stable Diffusion folder as the base model, a CLIP judge, precision and device."""
    g = parser.add_argument_group("base model, judge and runtime")
    g.add_argument("--judge", type=Path, default=None, metavar="DIR",
                   help="a local transformers CLIP folder as the judge (default: a judge trained here on clean "
                        "renders)")
    g.add_argument("--pretrained", type=Path, default=None, metavar="DIR",
                   help="a local diffusers Stable Diffusion folder as the base model of continuous or lora "
                        "(safetensors only; its VAE, CLIP text encoder, UNet and schedule replace ours)")
    g.add_argument("--variant", default=None,
                   help="--pretrained: the weight variant to load, e.g. fp16 for *.fp16.safetensors (held as "
                        "float32)")
    g.add_argument("--mixed-precision", default=None, choices=MIXED_PRECISION,
                   help="training precision of every phase (default: the launcher's, e.g. accelerate launch "
                        "--mixed_precision bf16, else the preset's)")
    g.add_argument("--device", default=None,
                   help="cpu, cuda, cuda:N or mps (default: cpu under accelerate launch --cpu, else the "
                        "preset's)")


def _output_options(parser: ArgumentParser) -> None:
    """Controls, what is kept, where it goes, threads, progress."""
    g = parser.add_argument_group("outputs")
    g.add_argument("--no-control", action="store_true", help="skip the same-volume correctly-labelled controls")
    g.add_argument("--keep-models", action="store_true", help="save each point's pipeline under OUT/models/")
    g.add_argument("--track-attention", action="store_true",
                   help="at every training checkpoint, record the grid concepts' cross-attention statistics "
                        "and judge readings into OUT/attention_track.csv")
    g.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help=f"asset cache (default {DEFAULT_CACHE})")
    g.add_argument("--out", type=path_arg, default=Path("results/empirical"), help="output folder")
    g.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    g.add_argument("--quiet", action="store_true",
                   help="no progress: without it a terminal shows bars, and a file (nohup, SLURM, CI) gets a line "
                        "per phase and at least every 30 s of training (step, loss, steps/s, ETA)")


def _parser() -> ArgumentParser:
    parser = ArgumentParser(prog="python -m empirical.run", description=__doc__.split("\n\n")[0])
    for add in (_poison_options, _model_options, _data_options, _base_options, _output_options):
        add(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    exp = resolve(args)
    plan_extra = {}
    if args.dry_run:
        from empirical.estimate import estimate

        size = exp.preset.render.size
        plan_extra = {"images": f"{size}x{size} px" + (" (the base model's)" if args.pretrained else ""),
                      "estimated duration": estimate(exp).text()}
    if dry_run(args, "python -m empirical.run", {
            "preset": exp.preset.name, "scenario": exp.scenario, "concepts K": exp.preset.render.concepts,
            "C_P": exp.c_ps, "p": exp.p, "benign per concept": exp.benign or exp.preset.render.per_concept,
            "seeds": exp.seeds, "base seed": exp.base_seed, "targets": exp.targets, "poison type": exp.poison_type,
            "points (poisoned and controls)": len(exp.points()),
            "base model": args.pretrained or "ours (clean pretraining)",
            "data": args.train_data_dir or "emoji renders (built in)", "judge": args.judge or "ours",
            "device": exp.preset.device, "mixed precision": exp.preset.continued.mixed_precision, "out": exp.out,
            **plan_extra}):
        return 0
    from accelerate import PartialState

    # several processes under torchrun / accelerate launch: DDP training, process 0 evaluates and writes
    state = PartialState(cpu=(exp.preset.device == "cpu"))
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    quiet = args.quiet or not state.is_main_process
    log = (lambda msg: None) if quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    for note in exp.notes:
        log(note)
    progress = Progress.choose(quiet=quiet)
    quiet_library_bars(progress)
    rows = run_experiment(exp, log=log, progress=progress)
    if state.is_main_process:
        print_summary(rows, exp.scenario)
    return 0


def cli() -> None:
    """The ``implosion-run`` console script: :func:`main` behind the one-line error boundary."""
    run_main(main, prog="implosion-run")


if __name__ == "__main__":
    run_main(main, prog="python -m empirical.run")
