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
from typing import Sequence

from empirical.experiment import print_summary, run_experiment
from empirical.options import parser, training_summary
from empirical.request import resolve
from implosion_base.cli import dry_run, run_main
from implosion_base.progress import Progress, quiet_library_bars


def main(argv: Sequence[str] | None = None) -> int:
    args = parser(__doc__.split("\n\n")[0]).parse_args(argv)
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
            "points (poisoned and controls)": len(exp.points()), "control": exp.control if exp.controls else "none",
            "base model": args.pretrained or "ours (clean pretraining)",
            "data": args.train_data_dir or "emoji renders (built in)", "judge": args.judge or "ours",
            "device": exp.preset.device, "mixed precision": exp.preset.continued.mixed_precision,
            "training": training_summary(exp), "out": exp.out,
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
