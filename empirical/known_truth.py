"""``python -m empirical.known_truth``: the meaningless rate on images whose answer is known.

The harness calls a generated image *meaningless* when the judge can place it near no concept
(:mod:`empirical.meaningless`). A measure earns that name only if it says "meaningless" for images that are
meaningless by construction and not for images that are not. This command calibrates the rule on one half of the
preset's held-out renders and feeds the judge both kinds of images:

meaningless by construction
    ``gaussian_noise`` (every pixel N(127.5, 64²), clipped), ``uniform_noise`` (every pixel U{0..255}),
    ``blank`` (a plain canvas of the renders' own background tints: white tinted by up to ``tint``),
    ``single_colour`` (a plain canvas of a uniformly random colour), ``concept_average`` (the pixel mean of
    ``average_of`` calibration renders of distinct random concepts), ``all_concepts_average`` (the pixel mean of
    one calibration render of every concept), ``shuffled_patches`` (a calibration render cut into a ``patches`` ×
    ``patches`` grid whose tiles are permuted so that every tile moves);
meaningful
    ``clean_render`` (the other half of the held-out renders, which the rule was not calibrated on) and
    ``vae_reconstruction`` (those renders through the VAE: the decoder generated images come out of); with
    ``--calibrate-on samples``, also ``clean_sample`` (the clean base model of ``--base-seed`` drawing every concept
    at seeds neither the calibration nor the evaluation uses, :mod:`empirical.clean_samples`).

By default every family is read by the rule calibrated on the renders (the off-render rate). ``--calibrate-on
samples`` draws the clean base model's calibration samples (its pretraining is cached as empirical.run caches it)
and reads every family by three rules: the one calibrated on the renders; the second rule of
docs/predictions/README.md, calibrated on the renders and the samples; and the meaningless rule of the harness,
calibrated on the renders, their VAE reconstructions and the samples
(:func:`empirical.meaningless.calibrate_on_samples`).

The table (``--out FILE.csv``, one row per rule and family) holds the family, the truth, the number of images, the
rate and its two readings (``far_rate``, ``unsure_rate``: for the rule on renders far from every concept mean, or
unsure, either flagging; for the rules on samples far from every clean sample, and off the data — off-render and,
for the harness's rule, off the reconstructions — both flagging), the no-standout rate of :mod:`theory.implosion`
(the salience rule that was the harness's meaningless rate before this check) with its mean salience and null
level, the judge's accuracy (meaningful families: the image read as its own concept), what the rule was calibrated
on (``renders``, ``samples-b<base seed>`` or ``recon+samples-b<base seed>``), the preset and the data set
(:mod:`empirical.data_set`). ``--json`` prints the rows and, per rule and rate, the lowest value on a meaningless
family and the highest on a meaningful one (a rate separates them when the first is high and the second low).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from implosion_base.cli import ArgumentParser, dry_run, path_arg, run_main
from implosion_base.errors import InputError
from implosion_base.files import atomic_write_text, check_output_file
from implosion_base.records import csv_text
from implosion_base.validate import check_scalar

MEANINGLESS_FAMILIES: tuple[str, ...] = ("gaussian_noise", "uniform_noise", "blank", "single_colour",
                                         "concept_average", "all_concepts_average", "shuffled_patches")
MEANINGFUL_FAMILIES: tuple[str, ...] = ("clean_render", "vae_reconstruction", "clean_sample")
COLUMNS: tuple[str, ...] = ("family", "truth", "n", "meaningless_rate", "far_rate", "unsure_rate",
                            "no_standout_rate", "salience", "null_salience", "judge_acc", "calibrated_on", "preset",
                            "data_set", "data_set_id")
#: What a table written before the rule could be calibrated on samples was calibrated on.
RENDERS = "renders"


@dataclass(frozen=True)
class KnownTruthConfig:
    """``n`` images per meaningless family (the meaningful families are every held-out render); a concept average
    over ``average_of`` distinct concepts; shuffled renders in a ``patches`` × ``patches`` grid; ``tint`` the
    renders' largest background tint; draws from ``seed``."""

    n: int = 600
    average_of: int = 16
    patches: int = 4
    tint: float = 0.25
    seed: int = 0

    def validate(self, size: int, n_concepts: int) -> None:
        check_scalar(self.n, "--n", low=1, high=100_000, integer=True)
        check_scalar(self.average_of, "--average-of", low=2, high=max(2, n_concepts), integer=True)
        check_scalar(self.patches, "--patches", low=2, high=size, integer=True)
        if size % self.patches:
            raise InputError(f"--patches {self.patches} must divide the image size {size}")


def meaningless_images(held_images: np.ndarray, held_labels: np.ndarray, cfg: KnownTruthConfig
                       ) -> dict[str, np.ndarray]:
    """The meaningless-by-construction families of the module docstring, ``cfg.n`` uint8 images (n, H, W, 3) each,
    made from the held-out renders (``held_images``, concept ``held_labels``); deterministic in ``cfg.seed``."""
    rng = np.random.default_rng([cfg.seed, 7])
    n, size = cfg.n, held_images.shape[1]
    shape = (n, size, size, 3)
    concepts = np.unique(held_labels)
    by_concept = {int(c): np.flatnonzero(held_labels == c) for c in concepts}

    def plain(colours: np.ndarray) -> np.ndarray:
        return np.broadcast_to(colours[:, None, None, :], shape).astype(np.uint8)

    def average(choose) -> np.ndarray:
        out = np.empty(shape, dtype=np.uint8)
        for i in range(n):
            idx = choose()
            out[i] = np.rint(held_images[idx].astype(np.float64).mean(axis=0)).astype(np.uint8)
        return out

    def one_per(cs: np.ndarray) -> np.ndarray:
        return np.array([rng.choice(by_concept[int(c)]) for c in cs])

    tints = 255.0 * (1.0 - cfg.tint * rng.random((n, 3)))
    k = min(cfg.average_of, len(concepts))
    return {
        "gaussian_noise": np.clip(rng.normal(127.5, 64.0, shape), 0, 255).round().astype(np.uint8),
        "uniform_noise": rng.integers(0, 256, shape, dtype=np.uint8),
        "blank": plain(np.rint(tints)),
        "single_colour": plain(rng.integers(0, 256, (n, 3))),
        "concept_average": average(lambda: one_per(rng.choice(concepts, size=k, replace=False))),
        "all_concepts_average": average(lambda: one_per(concepts)),
        "shuffled_patches": shuffled_patches(held_images[rng.integers(0, len(held_images), n)], cfg.patches, rng),
    }


def shuffled_patches(images: np.ndarray, patches: int, rng: np.random.Generator) -> np.ndarray:
    """Each image cut into a ``patches`` × ``patches`` grid of tiles, the tiles randomly permuted (a permutation
    per image that moves every tile: the same pixels, no longer an object)."""
    n, size = images.shape[:2]
    t = size // patches
    tiles = images.reshape(n, patches, t, patches, t, 3).transpose(0, 1, 3, 2, 4, 5).reshape(n, patches * patches,
                                                                                            t, t, 3)
    out = np.empty_like(tiles)
    for i in range(n):
        perm = derangement(patches * patches, rng)
        out[i] = tiles[i, perm]
    return out.reshape(n, patches, patches, t, t, 3).transpose(0, 1, 3, 2, 4, 5).reshape(images.shape)


def derangement(k: int, rng: np.random.Generator) -> np.ndarray:
    """A uniformly drawn permutation of range(k) with no fixed point (k ≥ 2), by rejection."""
    while True:
        perm = rng.permutation(k)
        if np.all(perm != np.arange(k)):
            return perm


def calibration_split(labels: np.ndarray) -> np.ndarray:
    """True for the held-out renders the rule is calibrated on: per concept, renders 0, 1, 4, 5, 8, ... (both fonts
    in each half, since a concept's renders alternate fonts); the others are the ``clean_render`` family. Every
    concept needs at least 3 held-out renders (InputError otherwise)."""
    labels = np.asarray(labels)
    j = np.zeros(len(labels), dtype=np.int64)
    for c in np.unique(labels):
        m = labels == c
        j[m] = np.arange(m.sum())
    if np.bincount(labels).min() < 3:
        raise InputError("the known-truth check needs at least 3 held-out renders per concept (2 to calibrate the "
                         "rule, 1 to test it); use a preset with more (smoke, cpu, gpu)")
    return (j // 2) % 2 == 0


def family_row(judge, images: np.ndarray, labels: np.ndarray | None, rule, reference) -> dict[str, float]:
    """The measures of one family: the rule's rate (:mod:`empirical.meaningless`) and its two readings (the rule on
    renders: far from every concept mean, unsure; the rule on samples: far from every clean sample, off-render), the
    no-standout rate and mean salience (:mod:`theory.implosion`, with z_null) and, with ``labels``, the judge's
    accuracy. Labels only enter the accuracy: neither rate reads a label."""
    from empirical.meaningless import meaningless_mask, readings
    from theory.implosion import implosion_measures

    feats = judge.image_features(images)
    prob = judge.probabilities(images)
    top = prob.max(1)
    old = implosion_measures(feats, np.zeros(len(images), np.int64), reference)
    first, second = readings(rule, feats, top)
    return {"n": len(images), "meaningless_rate": float(np.mean(meaningless_mask(rule, feats, top))),
            "far_rate": float(np.mean(first)), "unsure_rate": float(np.mean(second)),
            "no_standout_rate": old["meaningless_rate"],
            "salience": old["salience"], "null_salience": reference.null_salience,
            "judge_acc": float(np.mean(prob.argmax(1) == labels)) if labels is not None else float("nan")}


def known_truth_rows(judge, vae, held, cfg: KnownTruthConfig, samples: tuple | None = None,
                     base_seed: int = 0) -> list[dict]:
    """One row per rule and family (module docstring): the render rule and the no-standout reference are calibrated
    on one half of the held-out renders (:func:`calibration_split`), whose other half (and its reconstructions)
    are meaningful families. ``samples`` = the clean base model's (calibration images, held-out images, their
    labels): the rules on samples (the second rule, and the harness's with the calibration renders'
    reconstructions) are calibrated on the first; the second are a meaningful family of every rule."""
    from empirical.assets import reconstruct
    from empirical.evaluate import concept_reference
    from empirical.meaningless import calibrate, calibrate_on_samples

    cfg.validate(held.images.shape[1], len(held.names))
    calib = calibration_split(held.labels)
    labels = held.labels[calib]
    feats = judge.image_features(held.images[calib])
    top = judge.probabilities(held.images[calib]).max(1)
    rules = {RENDERS: calibrate(feats, labels, top)}
    reference = concept_reference({c: feats[labels == c] for c in range(len(held.names))})
    test = held.images[~calib]
    meaningful = [("clean_render", test, held.labels[~calib]),
                  ("vae_reconstruction", reconstruct(vae, test), held.labels[~calib])]
    if samples is not None:
        calib_images, check_images, check_labels = samples
        sample_feats = judge.image_features(calib_images)
        recon = reconstruct(vae, held.images[calib])
        rules[f"samples-b{base_seed}"] = calibrate_on_samples(feats, labels, top, sample_feats)
        rules[f"recon+samples-b{base_seed}"] = calibrate_on_samples(
            feats, labels, top, sample_feats, decoded=(judge.image_features(recon), judge.probabilities(recon).max(1)))
        meaningful.append(("clean_sample", check_images, check_labels))
    families = meaningless_images(held.images[calib], labels, cfg)
    rows = []
    for name, rule in rules.items():
        for family, images in families.items():
            rows.append({"family": family, "truth": "meaningless",
                         **family_row(judge, images, None, rule, reference), "calibrated_on": name})
        for family, images, truth in meaningful:
            rows.append({"family": family, "truth": "meaningful",
                         **family_row(judge, images, truth, rule, reference), "calibrated_on": name})
    return rows


def by_rule(rows: Sequence[dict]) -> dict[str, list[dict]]:
    """The rows per rule (``calibrated_on``; rows of tables written before that column were calibrated on
    renders), rules in their first row's order."""
    out: dict[str, list[dict]] = {}
    for r in rows:
        out.setdefault(r.get("calibrated_on") or RENDERS, []).append(r)
    return out


def separation(rows: Sequence[dict], measure: str = "meaningless_rate") -> dict[str, dict[str, float]]:
    """Per rule (:func:`by_rule`): the lowest ``measure`` (a number) on a meaningless family and the highest on a
    meaningful one."""
    return {name: {"lowest_on_meaningless": min(r[measure] for r in mine if r["truth"] == "meaningless"),
                   "highest_on_meaningful": max(r[measure] for r in mine if r["truth"] == "meaningful")}
            for name, mine in by_rule(rows).items()}


def main(argv: Sequence[str] | None = None) -> int:
    from empirical.presets import DEFAULT_CACHE, PRESETS, get_preset, with_overrides
    from empirical.request import _fonts

    parser = ArgumentParser(prog="python -m empirical.known_truth", description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="cpu", help=f"the judge, VAE and data set of: {', '.join(PRESETS)}")
    parser.add_argument("--fonts", default=None, metavar="LIST", help="the emoji data set's fonts (as empirical.run)")
    parser.add_argument("--n-concepts", "--concepts", dest="concepts", type=int, default=None, metavar="K",
                        help="the emoji data set's number of concepts (as empirical.run; default the preset's)")
    parser.add_argument("--cache", type=path_arg, default=DEFAULT_CACHE, help="asset cache (as empirical.run)")
    parser.add_argument("--n", type=int, default=KnownTruthConfig.n, help="images per meaningless family")
    parser.add_argument("--average-of", type=int, default=None,
                        help=f"concepts in a concept average (default {KnownTruthConfig.average_of}, at most K)")
    parser.add_argument("--patches", type=int, default=KnownTruthConfig.patches, help="tiles per side when shuffled")
    parser.add_argument("--seed", type=int, default=0, help="seed of the constructed images")
    parser.add_argument("--out", type=path_arg, default=None, metavar="FILE.csv", help="write the table")
    parser.add_argument("--json", action="store_true", help="print the rows and the separation as JSON")
    parser.add_argument("--calibrate-on", default=RENDERS, choices=(RENDERS, "samples"),
                        help="renders: the off-render rule alone; samples: also the meaningless rule, calibrated on "
                             "the clean base model's samples (trains or loads its clean pretraining)")
    parser.add_argument("--base-seed", type=int, default=0, help="--calibrate-on samples: the clean base model")
    args = parser.parse_args(argv)
    check_scalar(args.base_seed, "--base-seed", low=0, integer=True)
    if args.concepts is not None:
        check_scalar(args.concepts, "--n-concepts", low=2, high=100_000, integer=True)
    preset = with_overrides(get_preset(args.preset), fonts=_fonts(args.fonts), concepts=args.concepts)
    average_of = args.average_of or min(KnownTruthConfig.average_of, preset.render.concepts)
    cfg = KnownTruthConfig(n=args.n, average_of=average_of, patches=args.patches, tint=preset.render.tint,
                           seed=args.seed)
    cfg.validate(preset.render.size, preset.render.concepts)
    if args.out is not None:
        check_output_file(args.out, name="--out")
    if dry_run(args, "python -m empirical.known_truth", {
            "preset": preset.name, "fonts": ",".join(preset.render.fonts), "concepts": preset.render.concepts,
            "cache": args.cache,
            "meaningless families": f"{', '.join(MEANINGLESS_FAMILIES)} ({cfg.n} images each)",
            "meaningful families": ", ".join(MEANINGFUL_FAMILIES[:2] if args.calibrate_on == RENDERS
                                             else MEANINGFUL_FAMILIES),
            "calibrated on": RENDERS if args.calibrate_on == RENDERS
            else f"renders, and the clean base model's samples (base seed {args.base_seed})", "out": args.out}):
        return 0
    rows = measure(preset, cfg, args.cache, args.base_seed if args.calibrate_on == "samples" else None)
    if args.out is not None:
        atomic_write_text(args.out, csv_text([{k: r[k] for k in COLUMNS} for r in rows]))
    if args.json:
        print(json.dumps({"rows": rows, "meaningless_rate": separation(rows),
                          "no_standout_rate": separation(rows, "no_standout_rate")}, indent=1, default=float))
    else:
        for r in rows:
            print(f"{r['calibrated_on']:>10}  {r['family']:>22}  {r['truth']:>11}  n {r['n']:>5}  "
                  f"rate {r['meaningless_rate']:.3f} "
                  f"(far {r['far_rate']:.3f}, unsure {r['unsure_rate']:.3f})  no-standout {r['no_standout_rate']:.3f}"
                  f"  judge acc {r['judge_acc']:.3f}")
        for name in ("meaningless_rate", "no_standout_rate"):
            for rule, sep in separation(rows, name).items():
                print(f"{name} (calibrated on {rule}): lowest on a meaningless family "
                      f"{sep['lowest_on_meaningless']:.3f}, highest on a meaningful one "
                      f"{sep['highest_on_meaningful']:.3f}", file=sys.stderr)
    return 0


def measure(preset, cfg: KnownTruthConfig, cache: Path, base_seed: int | None = None) -> list[dict]:
    """Prepare the preset's assets (cached as empirical.run caches them) and measure every family; with
    ``base_seed``, also by the rule calibrated on that clean base model's samples. Each row carries the preset and
    the data set it used."""
    from empirical.assets import prepare_assets
    from empirical.data import available_fonts, font_identity
    from empirical.data_set import identity
    from implosion_base.files import ensure_writable_dir

    assets = prepare_assets(preset, ensure_writable_dir(cache, name="--cache"), progress=True,
                            log=lambda m: print(m, file=sys.stderr))
    data_set = identity(assets.data.names, assets.data.fonts, None,
                        font_identity(available_fonts(tuple(assets.data.fonts))))
    calibration_split(assets.held.labels)  # too few held-out renders: said before a base model is trained
    samples = None
    if base_seed is not None:
        from empirical.clean_samples import CALIBRATION, HELD_OUT, clean_samples
        from empirical.scenarios import Start, base_model

        unet = base_model(Start(assets, seed=0, base_seed=base_seed, cache_dir=cache, progress=True))
        calib, _ = clean_samples(assets, unet, offset=CALIBRATION)
        samples = (calib, *clean_samples(assets, unet, offset=HELD_OUT))
    rows = known_truth_rows(assets.instruments.judge, assets.instruments.vae, assets.held, cfg, samples,
                            base_seed or 0)
    return [{**r, "preset": preset.name, **data_set.columns()} for r in rows]


def cli() -> None:
    """The ``implosion-known-truth`` console script: :func:`main` behind the one-line error boundary."""
    run_main(main, prog="implosion-known-truth")


if __name__ == "__main__":
    run_main(main, prog="python -m empirical.known_truth")
