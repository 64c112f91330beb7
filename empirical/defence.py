"""``python -m empirical.defence``: the AD-attribution poison detector (:mod:`theory.detection`) on the exact
training mixes of an experiment, scored against their known poisons, without training anything."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from implosion_base.validate import check_scalar
from implosion_base.errors import InputError
from implosion_base.cli import path_arg
from theory.detection import rank_quality


def detect_in_mix(assets, plan, poison_type: str, c_p: int, p: int, seed: int, cache: Path | None):
    """The detector on one training mix (the clean set plus the ``poison_type`` poisons of C_P concepts, exactly
    as ``empirical.run`` builds it): every pair ranked by its share of AD (judge embeddings) and scored against
    the known poisons. Returns (row for detection.csv, :class:`theory.detection.Detection`)."""
    from empirical.assets import build_mix
    from empirical.evaluate import pair_attribution_of_mix
    from empirical.poison_kinds import PoisonRequest, extra_pairs

    req = PoisonRequest(plan, c_p, p, assets.data.images, assets.data.labels, seed, assets.instruments.vae,
                        assets.preset.nightshade, cache)
    _, batch = extra_pairs("poisoned", poison_type, req)
    mix, texts = build_mix(assets, batch.image_idx, batch.concepts)
    att = pair_attribution_of_mix(assets.instruments.judge, batch.pixels(assets.data.images)[mix.image_idx], texts)
    d = rank_quality(att.contribution, np.r_[np.zeros(len(assets.data), bool), batch.is_poison])
    row = {"seed": seed, "poison_type": poison_type, "c_p": c_p, "poison_per_concept": p, "n_pairs": d.n_pairs,
           "n_poison": d.n_poison, "ad": att.result.ad, **d.summary(), **batch.report}
    return row, d


def _parser():
    from empirical.poison_kinds import POISON_KINDS
    from empirical.presets import DEFAULT_CACHE, PRESETS
    from implosion_base.cli import ArgumentParser

    parser = ArgumentParser(prog="python -m empirical.defence", description=main.__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="smoke", help=f"experiment size: {', '.join(PRESETS)}")
    parser.add_argument("--poisoned-concepts", default=None, metavar="LIST",
                        help="C_P values (default: K/6, K/3, 2K/3 of the preset's K concepts; 25,50,100 for cpu)")
    parser.add_argument("--poison-per-concept", type=int, default=None, metavar="P",
                        help="poison pairs per poisoned concept (default: the preset's)")
    parser.add_argument("--poison-type", default="dirty,nightshade", help=f"comma list of {', '.join(POISON_KINDS)}")
    parser.add_argument("--pgd-steps", type=int, default=None, help="nightshade steps (default: the preset's)")
    parser.add_argument("--epsilon", type=float, default=None,
                        help="nightshade: L-infinity budget on the [0, 1] scale (default: the preset's)")
    parser.add_argument("--seeds", "--seed", dest="seeds", default="0", metavar="LIST",
                        help="seeds, a list: 0, 0,1,2 or 0..2 (default 0; --seed is the older name)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--out", type=path_arg, default=Path("results/defence"))
    return parser


def main(argv=None) -> int:
    """``python -m empirical.defence``: the detector on the training mixes of an experiment, without training.

    For each seed, C_P and poison type, builds the exact training mix ``empirical.run`` would train on (clean set
    plus the plan's poisons), embeds it with the judge, ranks pairs by their share of AD and scores the ranking
    against the known poisons (:func:`detect_in_mix`). Prints one line per mix and writes ``OUT/detection.csv``
    (AP, precision@k, base rate, AD) and ``OUT/pr-<type>-cp<C_P>-s<seed>.csv`` (the precision–recall curve)."""
    from empirical.poison_kinds import POISON_KINDS
    from empirical.presets import default_poisoned_concepts, get_preset, with_overrides
    from implosion_base.cli import dry_run, parse_int_list, parse_seeds
    from implosion_base.provenance import command_line, git_commit, utc_now
    from implosion_base.files import ensure_writable_dir, hold_output
    from implosion_base.records import write_manifest

    args = _parser().parse_args(argv)
    preset = get_preset(args.preset)
    types = [t.strip() for t in args.poison_type.split(",") if t.strip()]
    bad = [t for t in types if t not in POISON_KINDS]
    if bad or not types:
        raise InputError(f"unknown poison type {bad[0] if bad else ''!r}; choose from {', '.join(POISON_KINDS)}")
    c_ps = parse_int_list(args.poisoned_concepts, name="--poisoned-concepts") if args.poisoned_concepts is not None \
        else default_poisoned_concepts(preset.render.concepts, clean=False)
    seeds = parse_seeds(args.seeds)
    if max(c_ps) > preset.render.concepts:
        raise InputError(f"--poisoned-concepts {max(c_ps)} exceeds the number of concepts ({preset.render.concepts})")
    p = preset.poison_per_concept if args.poison_per_concept is None else args.poison_per_concept
    check_scalar(p, "--poison-per-concept", low=1, integer=True)
    preset = with_overrides(preset, epsilon=args.epsilon, pgd_steps=args.pgd_steps)
    if dry_run(args, "python -m empirical.defence", {"preset": preset.name, "C_P": c_ps, "p": p, "poison types": types,
                                                     "seeds": seeds, "out": args.out}):
        return 0
    setting = {"preset": asdict(preset), "poison_types": types, "poisoned_concepts": c_ps, "poison_per_concept": p,
               "seeds": seeds}
    claim_detection_folder(args.out, setting)  # refused here, before anything is created
    with hold_output(args.out):
        manifest = claim_detection_folder(args.out, setting)
        manifest.update(tool="empirical.defence", command=command_line(), started=utc_now(), git_commit=git_commit())
        write_manifest(args.out / "manifest.json", manifest)
        _detect(args.out, preset, types, c_ps, p, seeds, ensure_writable_dir(args.cache, name="--cache"))
        manifest["finished"] = utc_now()
        write_manifest(args.out / "manifest.json", manifest)
    return 0


def claim_detection_folder(out: Path, setting: dict) -> dict:
    """``out``'s manifest claimed for this detection ``setting`` (:func:`implosion_base.records.claim_run_folder`): a
    folder holding another setting's detection.csv (or one without a manifest) is refused, naming the
    difference, so two settings' curves never lie side by side."""
    from implosion_base.records import claim_run_folder, key_difference

    return claim_run_folder(out, "setting", json.loads(json.dumps(setting, default=str)),
                            has_results=(out / "detection.csv").exists(), difference=key_difference,
                            refusal=lambda d: f"{out} holds detection results of another setting ({d}); use another "
                                              "--out")


def _detect(out: Path, preset, types: list[str], c_ps: list[int], p: int, seeds: list[int], cache: Path) -> None:
    """Every (seed, poison type, C_P) mix embedded and ranked; one line each on stdout, the curves and
    ``detection.csv`` written into ``out``."""
    import sys

    from empirical.assets import prepare_assets
    from empirical.poisons import harness_plan
    from implosion_base.files import atomic_write_text
    from implosion_base.records import csv_text

    assets = prepare_assets(preset, cache, log=lambda m: print(m, file=sys.stderr, flush=True))
    rows = []
    print("seed  poison      C_P  pairs  poisons  AD      AP     P@k    base rate")
    for s in seeds:
        plan = harness_plan(assets.data.names, "poisoned", seed=s)
        for t, c_p in ((t, c) for t in types for c in c_ps if c > 0):
            row, d = detect_in_mix(assets, plan, t, c_p, p, s, cache)
            rows.append(row)
            print(f"{s:<5} {t:<10} {c_p:>4} {d.n_pairs:>6} {d.n_poison:>8}  {row['ad']:.3f}  "
                  f"{d.average_precision:.3f}  {d.precision_at_k:.3f}  {row['detect_base_rate']:.3f}")
            curve = "precision,recall\n" + "".join(f"{a:.6f},{b:.6f}\n" for a, b in zip(d.precision, d.recall))
            atomic_write_text(out / f"pr-{t}-cp{c_p}-s{s}.csv", curve)
    if (out / "detection.csv").exists():
        print(f"replacing {out / 'detection.csv'} (the same setting)", file=sys.stderr)
    atomic_write_text(out / "detection.csv", csv_text(rows) if rows else "seed\n")


def cli() -> None:
    """The ``implosion-defence`` console script: :func:`main` behind the one-line error boundary."""
    from implosion_base.cli import run_main

    run_main(main, prog="implosion-defence")


if __name__ == "__main__":
    from implosion_base.cli import run_main

    run_main(main, prog="python -m empirical.defence")
