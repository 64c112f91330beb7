r"""``python -m simulate.experiments {ad,single,implosion,phase,ad-volume,all} --out DIR``: the simulator's
experiments.

1. ``ad`` — AD vs C_P (1..500) in several regimes, with the block-model closed form of :mod:`theory.block_model`
   fitted to the simulated data: the mean gap :math:`|\cos(v_i,v_j)-\cos(t_i,t_j)|` of each relation type
   (same concept / same text only / same image only / neither) and the mean feature term of benign and poison
   pairs are measured once, on the C_P = 20 training set, then :func:`theory.block_model.closed_form` predicts
   the whole curve. Where the block model holds the two agree; where it does not, the gap says by how much.
2. ``single`` — Conjecture 4.1: attack success of one poisoned concept vs poison pairs per concept (0..200), for
   nearest / random / farthest targets; each trial poisons one concept alone (ridge; Gram updates make each
   trial one solve).
3. ``implosion`` — Conjecture 4.3: unpoisoned accuracy and meaningless rate vs C_P (and vs AD) while varying one
   knob at a time around the default regime — capacity (d), benign volume (m), template weight, poison per
   concept — plus the three solvers; Spearman ρ(AD, unpoisoned accuracy) over all points.
4. ``phase`` — the phase diagram of :mod:`simulate.phase`: where unpoisoned accuracy falls below 0.5 (and the
   meaningless rate passes 0.5) over poison volume V, dominance p/m, capacity and the number of concepts
   (``--workers`` processes; 3 seeds unless ``--seeds`` is given).
5. ``ad-volume`` — :mod:`simulate.ad_volume`: damage against AD, D_fea and D_stru *at fixed poison volume*,
   over nine poison configurations (3 seeds unless ``--seeds`` is given).

Every experiment writes CSVs into ``--out`` (computing only): ``python -m paper_figures`` draws them (F6: ad, F7a:
single, F8: implosion, F12: phase, F13: ad-volume), in the house style. The numbers quoted in docs/simulation.md
come from here.
A :class:`Scale` shrinks the universe (concepts K, largest C_P) for quick builds (``paper_figures --quick``); the
default is the paper-size universe of 1,000 concepts and C_P up to 500.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from simulate.ad_volume import CONFIGURATIONS, Configuration, given_volume, run_configurations
from simulate.align import RidgeSolver, make_solver
from simulate.concepts import ConceptConfig, make_space
from simulate.phase import PhaseGrid, run_grid, threshold_law, thresholds
from simulate.poison import PoisonConfig, benign_pairs, plan_for_space, poison_pairs
from simulate.engine import SweepConfig, run_seed, summarise
from simulate.training_set import TrainingSet
from theory.ad import pair_scores
from theory.block_model import Gaps, closed_form
from implosion_base.validate import check_scalar
from implosion_base.cli import ArgumentParser, dry_run, parse_seeds, path_arg, run_main
from implosion_base.errors import InputError
from implosion_base.files import atomic_write_text, ensure_writable_dir
from implosion_base.records import csv_text
from theory.stats import spearman


@dataclass(frozen=True)
class Scale:
    """The universe an experiment runs in: ``universe`` concepts K, C_P from 0 to ``max_cp``."""

    universe: int = 1000
    max_cp: int = 500

    def sized(self, config: SweepConfig) -> SweepConfig:
        """``config`` with K = ``universe`` (unchanged when it already is)."""
        if config.concepts.n_concepts == self.universe:
            return config
        return replace(config, concepts=replace(config.concepts, n_concepts=self.universe))

    def points(self, step: int) -> list[int]:
        """C_P = 0, step, 2·step, ... up to ``max_cp`` (always included)."""
        pts = list(range(0, self.max_cp + 1, step))
        return pts if pts[-1] == self.max_cp else pts + [self.max_cp]


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write ``rows`` as CSV, atomically (a killed experiment leaves the previous table whole), saying so when an
    earlier table is replaced."""
    if path.exists():
        print(f"replacing {path}", file=sys.stderr)
    atomic_write_text(path, csv_text(rows))


# ------------------------------------------------------------------------------------------- 1. AD vs C_P


def fitted_block_parameters(config: SweepConfig, seed: int, c_p: int = 20) -> dict[str, float]:
    """Mean gap per relation type and mean feature terms, measured on the training set at C_P = ``c_p``."""
    space = make_space(config.concepts, seed)
    plan = plan_for_space(space, config.poison, seed)
    bt, bv, labels = benign_pairs(space, config.benign_per_concept, seed)
    text_l, image_l, parts_t, parts_v = [labels], [labels], [bt], [bv]
    for c in plan.poisoned(c_p):
        pt, pv = poison_pairs(space, plan, config.poison, int(c), seed)
        parts_t.append(pt)
        parts_v.append(pv)
        text_l.append(np.full(len(pt), c))
        image_l.append(np.full(len(pt), plan.target[c]))
    t, v = np.concatenate(parts_t), np.concatenate(parts_v)
    tl, il = np.concatenate(text_l), np.concatenate(image_l)
    poison = tl != il
    gap = np.abs(v @ v.T - t @ t.T)
    same_t, same_i = tl[:, None] == tl[None, :], il[:, None] == il[None, :]
    off = ~np.eye(len(tl), dtype=bool)
    f = 1.0 - pair_scores(np.sum(t * v, axis=1), config.laion_scale)
    return {
        "same": float(gap[same_t & same_i & off].mean()), "text": float(gap[same_t & ~same_i].mean()),
        "image": float(gap[~same_t & same_i].mean()), "cross": float(gap[~same_t & ~same_i].mean()),
        "f_benign": float(f[~poison].mean()), "f_poison": float(f[poison].mean()),
    }


def block_prediction(config: SweepConfig, params: dict[str, float], points: Sequence[int]) -> np.ndarray:
    """Closed-form AD(C_P) (disjoint targets) with the fitted parameters."""
    g = Gaps(params["same"], params["text"], params["image"], params["cross"])
    k, m, p = config.concepts.n_concepts, config.benign_per_concept, config.poison.poison_per_concept
    return np.array([closed_form(k, m, p, c, g, params["f_benign"], params["f_poison"], config.alpha,
                                 config.poison.placement, "disjoint")[0] for c in points])


AD_REGIMES: dict[str, SweepConfig] = {
    "default (CLIP-like)": SweepConfig(),
    "separated concepts (template 0.1, separation 0.95)": SweepConfig(
        concepts=ConceptConfig(template_weight=0.1, separation=0.95)),
    "poisons replace benign pairs (m=10, p=5)": SweepConfig(
        benign_per_concept=10, poison=PoisonConfig(poison_per_concept=5, placement="replace")),
    "feature-shift poisons (shift 0.5)": SweepConfig(poison=PoisonConfig(kind="shift", shift=0.5)),
}


def experiment_ad(out: Path, seeds: Sequence[int] = (0, 1), step: int = 10,
                  scale: Scale = Scale()) -> list[dict[str, Any]]:
    """AD, its closed form and D_stru vs C_P per regime of ``AD_REGIMES`` (mean and 95% CI over seeds)."""
    points = scale.points(step)
    rows: list[dict[str, Any]] = []
    for name, cfg in AD_REGIMES.items():
        cfg = scale.sized(cfg)
        sims = [run_seed(cfg, s, points) for s in seeds]
        summary = summarise([r for rs in sims for r in rs], points)
        pred = block_prediction(cfg, fitted_block_parameters(cfg, 0, c_p=min(20, scale.max_cp)), points)
        ad = np.array([summary[c]["ad"][0] for c in points])
        ci = np.array([summary[c]["ad"][1] for c in points])
        stru = np.array([summary[c]["d_stru"][0] for c in points])
        for c, a, e, b, sd in zip(points, ad, ci, pred, stru):
            rows.append({"regime": name, "c_p": c, "ad_mean": a, "ad_ci95": e, "closed_form": b, "d_stru_mean": sd})
    _write_csv(out / "ad_regimes.csv", rows)
    return rows


# ------------------------------------------------------------------------------------------- 2. single concept


def experiment_single(out: Path, seeds: Sequence[int] = (0, 1, 2), trials: int = 40,
                      poison_counts: Sequence[int] = (0, 2, 5, 10, 15, 20, 25, 30, 40, 50, 100, 200),
                      scale: Scale = Scale()) -> list[dict]:
    """Attack success of one concept poisoned alone vs its poison pairs p, per target rule (``trials`` concepts
    per seed)."""
    base = scale.sized(SweepConfig())
    rows = []
    for rule in ("nearest", "random", "farthest"):
        for p in poison_counts:
            wins = total = 0
            for seed in seeds:
                space = make_space(base.concepts, seed)
                pcfg = PoisonConfig(poison_per_concept=max(p, 1), targets=rule)
                plan = plan_for_space(space, pcfg, seed)
                bt, bv, _ = benign_pairs(space, base.benign_per_concept, seed)
                data = TrainingSet(base.concepts.dim, track_ad=False)
                data.add(bt, bv)
                solver = RidgeSolver()
                for concept in plan.order[:trials]:
                    gram, cross = data.gram.copy(), data.cross.copy()
                    if p:
                        pt, pv = poison_pairs(space, plan, pcfg, int(concept), seed)
                        data.gram += pt.T @ pt
                        data.cross += pt.T @ pv
                    out_vec = solver.fit(data).predict(space.text_centroids[concept])
                    wins += int(np.argmax(space.image_centroids @ out_vec) == plan.target[concept])
                    total += 1
                    data.gram, data.cross = gram, cross
            rows.append({"targets": rule, "poison_per_concept": p, "attack_success": wins / total, "trials": total})
    _write_csv(out / "single_concept.csv", rows)
    return rows


# ------------------------------------------------------------------------------------------- 3. implosion


def implosion_regimes(scale: Scale = Scale()) -> dict[str, dict[str, SweepConfig]]:
    """One knob at a time around the default regime."""
    d = scale.sized(SweepConfig())
    c = d.concepts
    return {
        "capacity (d)": {f"d={v}": replace(d, concepts=replace(c, dim=v)) for v in (64, 128, 256, 512)},
        "benign volume (m)": {f"m={v}": replace(d, benign_per_concept=v) for v in (2, 5, 10, 20)},
        "template weight": {f"w={v}": replace(d, concepts=replace(c, template_weight=v)) for v in (0.3, 0.75, 0.9)},
        "poison per concept (p)": {f"p={v}": replace(d, poison=replace(d.poison, poison_per_concept=v))
                                   for v in (5, 20, 50, 100)},
    }


def experiment_implosion(out: Path, seeds: Sequence[int] = (0, 1), step: int = 25,
                         solver_points: Sequence[int] | None = None, scale: Scale = Scale(),
                         solvers: Sequence[str] = ("ridge", "capacity", "attention"),
                         knobs: Sequence[str] | None = None) -> list[dict]:
    """Unpoisoned accuracy and meaningless rate vs C_P for each knob of :func:`implosion_regimes` (all, or those
    named in ``knobs``) and each of ``solvers`` (at ``solver_points``, default six evenly spaced C_P)."""
    points = scale.points(step)
    if solver_points is None:
        solver_points = scale.points(max(1, scale.max_cp // 5))
    rows: list[dict[str, Any]] = []
    groups = {k: v for k, v in implosion_regimes(scale).items() if knobs is None or k in knobs}
    for group, configs in groups.items():
        for label, cfg in configs.items():
            rows += [{"group": group, "setting": label, **r} for s in seeds for r in run_seed(cfg, s, points)]
    default = scale.sized(SweepConfig())
    for name in solvers:
        solver = make_solver(name)
        label = getattr(solver, "label", name)
        try:
            sims = [r for s in seeds for r in run_seed(replace(default, solver=solver), s, list(solver_points))]
        except InputError as exc:  # attention without torch
            print(f"skipped {label}: {exc}")
            continue
        rows += [{"group": "solver", "setting": label, **r} for r in sims]
    _write_csv(out / "implosion_regimes.csv", rows)
    return rows


# ------------------------------------------------------------------------------------------- 4. phase diagram


def experiment_phase(out: Path, grid: PhaseGrid = PhaseGrid(), workers: int = 1) -> tuple[list[dict], list[dict]]:
    """The phase diagram of :mod:`simulate.phase`: ``phase.csv`` (every point) and ``phase_thresholds.csv`` (per
    curve); ``python -m paper_figures fig12`` draws it."""
    rows = run_grid(grid, workers)
    marks = thresholds(rows)
    _write_csv(out / "phase.csv", rows)
    _write_csv(out / "phase_thresholds.csv", marks)
    return rows, marks


# ------------------------------------------------------------------------------------------- 5. AD given volume

AD_VOLUMES: tuple[float, ...] = (0.5, 1.0, 2.0, 3.0, 5.0)


def experiment_ad_volume(out: Path, seeds: Sequence[int] = (0, 1, 2), volumes: Sequence[float] = AD_VOLUMES,
                         configs: Sequence[Configuration] | None = None) -> tuple[list[dict], list[dict]]:
    """AD at fixed poison volume (:mod:`simulate.ad_volume`): ``ad_volume.csv`` (every point),
    ``ad_volume_stats.csv`` (within-volume association of damage with AD, D_fea, D_stru); ``python -m
    paper_figures fig13`` draws it."""
    configs = list(CONFIGURATIONS if configs is None else configs)
    rows = run_configurations(configs, volumes, seeds)
    stats = []
    for outcome in ("unpoisoned_acc", "meaningless_rate"):
        for subset, names in (("all configurations", None),
                              ("learnable only (no scatter)", [c.name for c in configs if "scatter" not in c.name])):
            for st in given_volume(rows, outcome=outcome, configurations_used=names):
                stats.append({"subset": subset, **st})
    _write_csv(out / "ad_volume.csv", rows)
    _write_csv(out / "ad_volume_stats.csv", stats)
    return rows, stats


def spearman_by_setting(rows: list[dict[str, Any]]) -> dict[str, float]:
    out = {}
    for key in sorted({(r["group"], r["setting"]) for r in rows}):
        sel = [r for r in rows if (r["group"], r["setting"]) == key]
        out[f"{key[0]}: {key[1]}"] = spearman([r["ad"] for r in sel], [r["unpoisoned_acc"] for r in sel],
                                              minimum=2)[0]
    out["all points"] = spearman([r["ad"] for r in rows], [r["unpoisoned_acc"] for r in rows], minimum=2)[0]
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = ArgumentParser(prog="python -m simulate.experiments", description=__doc__.splitlines()[0])
    p.add_argument("which", choices=[*EXPERIMENTS, "all"],
                   help="which experiment (all: every one, in this order)")
    p.add_argument("--out", type=path_arg, default=Path("results/experiments"))
    p.add_argument("--seeds", default=None, metavar="LIST",
                   help="seeds, a list: 0..2 or 0,1,2 (default 0,1; 0,1,2 for the single-concept attack, the phase "
                        "diagram and AD at fixed volume)")
    p.add_argument("--workers", type=int, default=1, help="local processes for the phase diagram (default 1)")
    args = p.parse_args(argv)
    given = parse_seeds(args.seeds, was_count=True) if args.seeds is not None else None
    seeds, seeds3 = given or [0, 1], given or [0, 1, 2]
    check_scalar(args.workers, "--workers", low=1, integer=True)
    if dry_run(args, "python -m simulate.experiments", {"experiments": args.which, "out": args.out,
                                                        "seeds": f"{seeds} (phase, ad-volume: {seeds3})",
                                                        "workers": args.workers}):
        return 0
    out = ensure_writable_dir(args.out)
    for name, run in EXPERIMENTS.items():
        if args.which in (name, "all"):
            run(out, seeds, seeds3, args.workers)
    return 0


def _ad(out: Path, seeds: list[int], seeds3: list[int], workers: int) -> None:
    rows = experiment_ad(out, seeds=seeds)
    for name in AD_REGIMES:
        sel = [r for r in rows if r["regime"] == name]
        ad = np.array([r["ad_mean"] for r in sel])
        gap = max(abs(r["ad_mean"] - r["closed_form"]) for r in sel)
        print(f"AD {name}: {ad[0]:.4f} -> {ad[-1]:.4f}, monotone {bool(np.all(np.diff(ad) > 0))}, "
              f"max |sim - closed form| {gap:.4f}, D_stru {sel[0]['d_stru_mean']:.4f} -> "
              f"{sel[-1]['d_stru_mean']:.4f}")


def _single(out: Path, seeds: list[int], seeds3: list[int], workers: int) -> None:
    for r in experiment_single(out, seeds=seeds3):
        print(f"single: targets={r['targets']:8s} p={r['poison_per_concept']:3d} "
              f"attack success {r['attack_success']:.3f} ({r['trials']} trials)")


def _implosion(out: Path, seeds: list[int], seeds3: list[int], workers: int) -> None:
    rows = experiment_implosion(out, seeds=seeds)
    for (group, setting) in sorted({(r["group"], r["setting"]) for r in rows}, key=lambda k: k[0]):
        sel = {r["c_p"]: r for r in rows if (r["group"], r["setting"]) == (group, setting) and r["seed"] == 0}
        last = max(sel)
        first_below = [c for c in sorted(sel) if sel[c]["unpoisoned_acc"] < 0.5]
        print(f"implosion {group:24s} {setting:30s} acc C_P=0 {sel[0]['unpoisoned_acc']:.3f} "
              f"C_P={last} {sel[last]['unpoisoned_acc']:.3f} attack {sel[last]['attack_success']:.3f} "
              f"meaningless {sel[last]['meaningless_rate']:.3f} "
              f"acc<0.5 at {first_below[0] if first_below else 'never'} (seed 0)")
    for key, rho in spearman_by_setting(rows).items():
        print(f"spearman {key}: {rho:.3f}")


def _phase(out: Path, seeds: list[int], seeds3: list[int], workers: int) -> None:
    _, marks = experiment_phase(out, PhaseGrid(seeds=tuple(seeds3)), workers=workers)
    for m in marks:
        print(f"phase {m['solver']:8s} K={m['n_concepts']:<5d} capacity={m['capacity']:<6g} p/m={m['dominance']:<4g} "
              f"acc<0.5 at V={m['v_acc_below_half']:.2f} meaningless>0.5 at V={m['v_meaningless_above_half']:.2f} "
              f"(V measured to {m['v_max']:.2f}, acc there {m['acc_at_v_max']:.3f})")
    law = threshold_law(marks)
    if law["n"] >= 5:
        print(f"phase law (ridge, p/m >= 10, {law['n']} curves): V* = {law['scale']:.3f} d^{law['exp_capacity']:.2f} "
              f"K^{law['exp_concepts']:.2f} (p/m)^{law['exp_dominance']:.2f}, R^2 {law['r2']:.3f}, misses by at most "
              f"x{law['max_miss_factor']:.2f}")


def _ad_volume(out: Path, seeds: list[int], seeds3: list[int], workers: int) -> None:
    _, stats = experiment_ad_volume(out, seeds=seeds3)
    for st in stats:
        print(f"ad-volume {st['subset']:28s} {st['outcome']:16s} ~ {st['predictor']:6s} given V: "
              f"pearson {st['pearson']:+.3f} ± {st['pearson_ci95']:.3f}, spearman {st['spearman']:+.3f} ± "
              f"{st['spearman_ci95']:.3f}, slope {st['slope']:+.3f} ± {st['slope_ci95']:.3f} "
              f"({st['seeds']} seeds)")


#: The experiments of ``python -m simulate.experiments``, in the order ``all`` runs them: each computes, writes its
#: CSVs and prints its summary (seeds: the two-seed default; seeds3: the three-seed one; workers: the phase grid's).
EXPERIMENTS = {"ad": _ad, "single": _single, "implosion": _implosion, "phase": _phase, "ad-volume": _ad_volume}


def cli() -> None:
    """The ``implosion-experiments`` console script: :func:`main` behind the one-line error boundary."""
    run_main(main, prog="implosion-experiments")


if __name__ == "__main__":
    run_main(main, prog="python -m simulate.experiments")
