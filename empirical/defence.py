"""A poison detector from Alignment Difficulty: flag the training pairs that carry the most AD.

:func:`theory.ad.pair_attribution` splits the AD of a training mix into per-pair shares,
c_i = α(1 − s_i)/n + (1 − α)/n² · Σ_{j≠i} |cos(v_i, v_j) − cos(t_i, t_j)|, Σ_i c_i = AD: a pair whose image and
caption disagree (low s_i) or whose neighbourhood in the image graph differs from its neighbourhood in the text
graph carries a large share. Ranking pairs by c_i and flagging the top ones is the defence the paper's analysis
suggests; how well it works is measured against the known poisons of an experiment:

- precision@k and recall@k with k the true number of poison pairs (they coincide at that k),
- average precision AP = Σ_k P(k)·[pair k is a poison] / #poisons over the ranking (area under the
  precision–recall curve; a random ranking scores the poison fraction),
- the precision–recall curve itself, at every rank where a poison is found.

The embeddings come from the judge (clean data only) or any CLIP-like model: a Nightshade-style poison looks like
its captioned concept to such a model, so it is expected to hide from this detector while dirty-label pairs do not.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from theory.ad import pair_attribution
from theory.cli import InputError, path_arg


@dataclass(frozen=True)
class Detection:
    """Ranking quality of per-pair scores against the true poison mask (see the module docstring)."""

    n_pairs: int
    n_poison: int
    precision_at_k: float
    recall_at_k: float
    average_precision: float
    precision: np.ndarray  # at each rank where a poison is found
    recall: np.ndarray

    def summary(self) -> dict[str, float]:
        return {"detect_ap": self.average_precision, "detect_p_at_k": self.precision_at_k,
                "detect_base_rate": self.n_poison / self.n_pairs if self.n_pairs else float("nan")}


def rank_quality(scores: np.ndarray, is_poison: np.ndarray) -> Detection:
    """Precision/recall of flagging pairs in decreasing ``scores`` (ties by index) against ``is_poison``."""
    scores = np.asarray(scores, dtype=np.float64)
    truth = np.asarray(is_poison, dtype=bool)
    if scores.shape != truth.shape or scores.ndim != 1:
        raise InputError("scores and the poison mask must be 1-D arrays of the same length")
    n, m = len(scores), int(truth.sum())
    if m == 0:
        nan = float("nan")
        return Detection(n, 0, nan, nan, nan, np.zeros(0), np.zeros(0))
    order = np.lexsort((np.arange(n), -scores))
    hits = truth[order]
    found = np.cumsum(hits)
    ranks = np.flatnonzero(hits) + 1
    precision = found[hits] / ranks
    recall = found[hits] / m
    at_k = float(found[m - 1] / m)
    return Detection(n, m, at_k, at_k, float(precision.sum() / m), precision, recall)


def detect_poisons(text: np.ndarray, image: np.ndarray, is_poison: np.ndarray, **ad_options) -> Detection:
    """:func:`rank_quality` of the AD attribution of the pairs (unit text/image embeddings, n × d)."""
    return rank_quality(pair_attribution(text, image, **ad_options).contribution, is_poison)


def main(argv=None) -> int:
    """``python -m empirical.defence``: the detector on the training mixes of an experiment, without training.

    For each seed, C_P and poison type, builds the exact training mix ``empirical.run`` would train on (clean set
    plus the plan's poisons), embeds it with the judge, ranks pairs by their share of AD and scores the ranking
    against the known poisons. Prints one line per mix and writes ``OUT/detection.csv`` (AP, precision@k, base
    rate, AD) and ``OUT/pr-<type>-cp<C_P>-s<seed>.csv`` (the precision–recall curve)."""
    import sys
    from dataclasses import replace
    from pathlib import Path

    from empirical.evaluate import pair_attribution_of_mix
    from empirical.poisons import POISON_TYPES, make_plan, nightshade_pairs, poison_pairs
    from empirical.presets import default_poisoned_concepts, get_preset
    from empirical.run import DEFAULT_CACHE, build_mix, prepare_assets
    from theory.cli import ArgumentParser, dry_run, parse_int_list
    from theory.records import atomic_write_text, csv_text, ensure_writable_dir

    parser = ArgumentParser(prog="python -m empirical.defence", description=main.__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="smoke")
    parser.add_argument("--poisoned-concepts", default=None, metavar="LIST",
                        help="C_P values (default: K/6, K/3, 2K/3 of the preset's K concepts; 25,50,100 for cpu)")
    parser.add_argument("--poison-per-concept", type=int, default=None, metavar="P")
    parser.add_argument("--poison-type", default="dirty,nightshade", help="comma list of dirty, nightshade")
    parser.add_argument("--pgd-steps", type=int, default=None, help="nightshade steps (default: the preset's)")
    parser.add_argument("--epsilon", type=float, default=None,
                        help="nightshade: L-infinity budget on the [0, 1] scale (default: the preset's)")
    parser.add_argument("--seed", default="0")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--out", type=path_arg, default=Path("results/defence"))
    args = parser.parse_args(argv)
    preset = get_preset(args.preset)
    types = [t.strip() for t in args.poison_type.split(",") if t.strip()]
    bad = [t for t in types if t not in POISON_TYPES]
    if bad or not types:
        raise InputError(f"unknown poison type {bad[0] if bad else ''!r}; choose from {', '.join(POISON_TYPES)}")
    c_ps = parse_int_list(args.poisoned_concepts, name="--poisoned-concepts") if args.poisoned_concepts is not None \
        else default_poisoned_concepts(preset.render.concepts, clean=False)
    seeds = parse_int_list(args.seed, name="--seed")
    if max(c_ps) > preset.render.concepts:
        raise InputError(f"--poisoned-concepts {max(c_ps)} exceeds the number of concepts ({preset.render.concepts})")
    p = preset.poison_per_concept if args.poison_per_concept is None else args.poison_per_concept
    if p < 1:
        raise InputError(f"--poison-per-concept must be >= 1, got {p}")
    if args.pgd_steps is not None or args.epsilon is not None:
        ns = preset.nightshade
        ns = replace(ns, steps=ns.steps if args.pgd_steps is None else args.pgd_steps,
                     epsilon=ns.epsilon if args.epsilon is None else args.epsilon)
        ns.validate()
        preset = replace(preset, nightshade=ns)
    if dry_run(args, "python -m empirical.defence", {"preset": preset.name, "C_P": c_ps, "p": p, "poison types": types,
                                                     "seeds": seeds, "out": args.out}):
        return 0
    out = ensure_writable_dir(args.out)
    cache = ensure_writable_dir(args.cache, name="--cache")
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    assets = prepare_assets(preset, cache, log=log)
    n = len(assets.data)
    rows = []
    print("seed  poison      C_P  pairs  poisons  AD      AP     P@k    base rate")
    for s in seeds:
        plan = make_plan(assets.data.names, seed=s)
        for t in types:
            for c_p in c_ps:
                if c_p == 0:
                    continue
                pixels = assets.data.images
                size = {"poison_latent_ratio": float("nan"), "poison_linf": float("nan"), "poison_psnr": float("nan")}
                if t == "nightshade":
                    shaded, concepts, _, report = nightshade_pairs(plan, c_p, p, pixels, assets.data.labels,
                                                                   assets.vae, preset.nightshade, seed=s,
                                                                   cache_dir=cache)
                    summary = report.summary()
                    size = {"poison_latent_ratio": summary["latent_ratio"], "poison_linf": summary["linf"],
                            "poison_psnr": summary["psnr"]}
                    pixels = np.concatenate([pixels, shaded])
                    idx = n + np.arange(len(shaded))
                else:
                    idx, concepts = poison_pairs(plan, c_p, p, assets.data.labels, seed=s)
                mix, texts = build_mix(assets, idx, concepts, new_pixels=None)
                truth = np.r_[np.zeros(n, bool), np.ones(len(idx), bool)]
                att = pair_attribution_of_mix(assets.judge, pixels[mix.image_idx], texts)
                d = rank_quality(att.contribution, truth)
                row = {"seed": s, "poison_type": t, "c_p": c_p, "poison_per_concept": p, "n_pairs": d.n_pairs,
                       "n_poison": d.n_poison, "ad": att.result.ad, **d.summary(), **size}
                rows.append(row)
                print(f"{s:<5} {t:<10} {c_p:>4} {d.n_pairs:>6} {d.n_poison:>8}  {att.result.ad:.3f}  "
                      f"{d.average_precision:.3f}  {d.precision_at_k:.3f}  {row['detect_base_rate']:.3f}")
                curve = "precision,recall\n" + "".join(f"{a:.6f},{b:.6f}\n" for a, b in zip(d.precision, d.recall))
                atomic_write_text(out / f"pr-{t}-cp{c_p}-s{s}.csv", curve)
    if (out / "detection.csv").exists():
        print(f"replacing {out / 'detection.csv'}", file=sys.stderr)
    atomic_write_text(out / "detection.csv", csv_text(rows) if rows else "seed\n")
    return 0


def cli() -> None:
    """The ``implosion-defence`` console script: :func:`main` behind the one-line error boundary."""
    from theory.cli import run_main

    run_main(main, prog="implosion-defence")


if __name__ == "__main__":
    from theory.cli import run_main

    run_main(main, prog="python -m empirical.defence")
