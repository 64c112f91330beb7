r"""``python -m simulate.sweep --concepts 1..500``: the number of poisoned concepts C_P against AD and implosion.

For every seed: draw a concept space and a poisoning plan, build the benign training set, calibrate / pretrain
the solver on it, then walk C_P upward through the requested points, adding each newly poisoned concept's poison
pairs to the training set (incrementally: Gram statistics and AD are updated, never recomputed) and measuring,
at each point, AD (:mod:`theory.ad`) and the metrics of :mod:`simulate.metrics`.

Outputs in ``--out`` (default ``results/sweep``): ``results.csv`` (one row per C_P × seed), ``manifest.json``
(configuration, versions, seeds, git commit, command) and ``ad_vs_cp.png``; a compact table on stdout.
Re-running the same command resumes: rows already in ``results.csv`` are not recomputed; a run killed at any
moment loses at most the point in flight and duplicates nothing. Points and seeds may be extended in the same
folder; a different model configuration is refused.

Default regime (why it shows implosion): 1,000 concepts, 5 benign pairs each, 50 dirty-label poison pairs per
poisoned concept (random targets), d = 128, ridge. Capacity (d = 128 dims for 1,000 concepts whose prompts share
a template) is below the number of concepts, and at C_P ≈ 100 the poison volume (C_P·p) overtakes the benign
volume (K·m) — the same boundary at which the block model's D_stru stops growing (theory.symbolic). With
d = 512, or p ≤ m, unpoisoned accuracy stays ≈ 1 for every C_P (docs/simulation.md).
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from simulate.align import SOLVERS, add_solver_options, solver_from_args
from theory.ad import DEFAULT_ALPHA
from simulate.concepts import ConceptConfig
from simulate.engine import COLUMNS, SweepConfig, check_size, point_keys, run_in_workers, run_seed, run_seed_rows, \
    summarise
from simulate.poison import TARGET_RULES, PoisonConfig
from implosion_base.tasks import dask_client, dask_results
from implosion_base.cli import ArgumentParser, dry_run, parse_int_list, parse_seeds, path_arg, run_main
from implosion_base.errors import InputError
from implosion_base.records import ResultsTable, claim_run_folder, key_difference, read_table, write_manifest
from implosion_base.files import hold_output
from implosion_base.provenance import command_line, git_commit, package_versions, utc_now
from theory.stats import spearman
from implosion_base.validate import check_scalar, check_alpha


def _fmt(value: float, digits: int = 3) -> str:
    return "  n/a" if math.isnan(value) else f"{value:.{digits}f}"


def summary_text(summary: dict[int, dict[str, tuple[float, float]]], rows: list[dict[str, Any]],
                 max_lines: int = 14) -> str:
    points = sorted(summary)
    if len(points) > max_lines:
        idx = np.unique(np.round(np.linspace(0, len(points) - 1, max_lines)).astype(int))
        shown = [points[i] for i in idx]
    else:
        shown = points
    lines = [f"{'C_P':>5}  {'AD (mean ± 95% CI)':>22}  {'benign acc':>10}  {'attack':>7}  {'meaningless':>11}  "
             f"{'top cos':>7}"]
    for c_p in shown:
        s = summary[c_p]
        ad, ci = s["ad"]
        lines.append(f"{c_p:>5}  {ad:>13.5f} ± {ci:.5f}  {_fmt(s['unpoisoned_acc'][0]):>10}  "
                     f"{_fmt(s['attack_success'][0]):>7}  {_fmt(s['meaningless_rate'][0]):>11}  "
                     f"{_fmt(s['top_cos'][0]):>7}")
    if len(shown) < len(points):
        lines.append(f"({len(shown)} of {len(points)} points shown; all in results.csv)")
    below = [c for c in points if summary[c]["unpoisoned_acc"][0] < 0.5]
    lines.append("unpoisoned accuracy < 0.5 first at C_P = " + (str(below[0]) if below else "never (no implosion)"))
    rho, n, _ = spearman([float(r["ad"]) for r in rows], [float(r["unpoisoned_acc"]) for r in rows])
    if math.isfinite(rho):
        lines.append(f"Spearman rho(AD, unpoisoned acc) over {n} points = {rho:.3f}")
    return "\n".join(lines)


def plot(summary: dict[int, dict[str, tuple[float, float]]], path: Path, title: str) -> None:
    """AD vs C_P (with its two terms) and the implosion metrics vs C_P, mean ± 95% CI over seeds, in the house
    style at full width (:mod:`implosion_base.plotting`)."""
    from implosion_base.plotting import CLEAN, CONTROL, FULL, POISONED, UNPOISONED, pyplot, save_png

    plt = pyplot()
    x = np.array(sorted(summary))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(FULL, 2.8), constrained_layout=True)
    for key, label, colour in (("ad", "AD", CLEAN), ("d_fea", "D_fea", CONTROL),
                               ("d_stru", "D_stru", "#7b3fa0")):
        mean = np.array([summary[c][key][0] for c in x])
        ci = np.array([summary[c][key][1] for c in x])
        ax1.plot(x, mean, color=colour, label=label, lw=1.8 if key == "ad" else 1.0)
        ax1.fill_between(x, mean - ci, mean + ci, color=colour, alpha=0.2, lw=0)
    ax1.set_xlabel("poisoned concepts C_P")
    ax1.set_ylabel("alignment difficulty")
    ax1.legend()
    ax1.set_title("AD of the training set")
    for key, label, colour in (("unpoisoned_acc", "unpoisoned accuracy", UNPOISONED),
                               ("attack_success", "attack success (poisoned)", POISONED),
                               ("meaningless_rate", "meaningless rate (unpoisoned)", "#d35400")):
        mean = np.array([summary[c][key][0] for c in x])
        ci = np.array([summary[c][key][1] for c in x])
        ax2.plot(x, mean, color=colour, label=label)
        ax2.fill_between(x, mean - ci, mean + ci, color=colour, alpha=0.2, lw=0)
    ax2.set_xlabel("poisoned concepts C_P")
    ax2.set_ylabel("fraction of concepts")
    ax2.set_ylim(-0.02, 1.02)
    ax2.legend()
    ax2.set_title("implosion")
    fig.suptitle(title)
    save_png(fig, path)


# ------------------------------------------------------------------------------------------- command line


def _parser() -> ArgumentParser:
    p = ArgumentParser(prog="python -m simulate.sweep",
                       description="Sweep the number of poisoned concepts C_P: AD, attack success and implosion.")
    p.add_argument("--poisoned-concepts", "--concepts", dest="concepts", default="1..500", metavar="SPEC",
                   help="C_P values: 1..500, 0..500:25 or 0,10,50 (default 1..500; --concepts is the older name)")
    p.add_argument("--seeds", default="0..2", metavar="LIST",
                   help="seeds, a list: 0..2, 0,1,2 or 7 (default 0..2)")
    p.add_argument("--solver", choices=sorted(SOLVERS), default="ridge")
    p.add_argument("--out", type=path_arg, default=Path("results/sweep"), help="output folder (default results/sweep)")
    p.add_argument("--workers", type=int, default=1, help="local processes, one seed each (default 1)")
    p.add_argument("--dask", metavar="ADDRESS", help="run the seeds on a Dask scheduler, e.g. tcp://127.0.0.1:8786")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--no-plot", action="store_true")
    g = p.add_argument_group("concept space")
    d = ConceptConfig()
    g.add_argument("--n-concepts", type=int, default=d.n_concepts)
    g.add_argument("--dim", type=int, default=d.dim)
    g.add_argument("--template-weight", type=float, default=d.template_weight)
    g.add_argument("--separation", type=float, default=d.separation)
    g.add_argument("--alignment", type=float, default=d.alignment)
    g.add_argument("--modality-gap", type=float, default=d.modality_gap)
    g.add_argument("--text-spread", type=float, default=d.text_spread)
    g.add_argument("--image-spread", type=float, default=d.image_spread)
    g.add_argument("--benign-per-concept", type=int, default=SweepConfig.benign_per_concept)
    g = p.add_argument_group("poison")
    pc = PoisonConfig()
    g.add_argument("--poison-per-concept", type=int, default=pc.poison_per_concept)
    g.add_argument("--poison-kind", choices=["dirty", "shift"], default=pc.kind)
    g.add_argument("--shift", type=float, default=pc.shift, help="feature-shift fraction toward the target")
    g.add_argument("--placement", choices=["add", "replace"], default=pc.placement)
    g.add_argument("--targets", choices=list(TARGET_RULES), default=pc.targets,
                   help="target rule (scatter: a random target per poison pair)")
    add_solver_options(p)
    p.add_argument("--alpha", type=float, default=DEFAULT_ALPHA, help="AD weight of D_fea")
    return p


def _config(args: Any) -> SweepConfig:
    concepts = ConceptConfig(n_concepts=args.n_concepts, dim=args.dim, template_weight=args.template_weight,
                             separation=args.separation, alignment=args.alignment,
                             modality_gap=args.modality_gap, text_spread=args.text_spread,
                             image_spread=args.image_spread)
    poison = PoisonConfig(poison_per_concept=args.poison_per_concept, kind=args.poison_kind, shift=args.shift,
                          placement=args.placement, targets=args.targets)
    return SweepConfig(concepts, poison, solver_from_args(args.solver, args), args.benign_per_concept,
                       alpha=check_alpha(args.alpha))


class _Progress:
    """tqdm's progress bar on a terminal (stderr; points done, rate and time left), silent otherwise."""

    def __init__(self, total: int, enabled: bool):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, desc="sweep", unit="point", disable=not (enabled and sys.stderr.isatty()),
                        leave=False, dynamic_ncols=True)

    def step(self, label: str = "") -> None:
        if label:
            self.bar.set_postfix_str(label, refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    points = parse_int_list(args.concepts, name="--concepts")
    seeds = parse_seeds(args.seeds, was_count=True)
    check_scalar(args.workers, "--workers", low=1, integer=True)
    config = _config(args)
    k = config.concepts.n_concepts
    if points[-1] > k:
        raise InputError(f"--concepts asks for C_P = {points[-1]} but the universe has only {k} concepts "
                         f"(raise --n-concepts)")
    check_size(config, points[-1], len(seeds), len(points))
    out = args.out
    identity = config.identity()
    _claim(out, identity)  # refused here, before anything is created
    if dry_run(args, "python -m simulate.sweep", {
            "C_P points": f"{len(points)} ({points[0]}..{points[-1]})", "seeds": seeds, "solver": args.solver,
            "concepts K": k, "benign m": config.benign_per_concept, "poison p": config.poison.poison_per_concept,
            "out": out, "workers": args.workers, "dask": args.dask}):
        return 0
    client = dask_client(args.dask) if args.dask else None
    with hold_output(out):
        _claim(out, identity)  # again, now that no other writer can change the folder
        return _sweep(args, config, points, seeds, client)


def _claim(out: Path, identity: dict) -> None:
    """The folder's claim for this configuration (:func:`implosion_base.records.claim_run_folder`)."""
    table_path = out / "results.csv"
    claim_run_folder(out, "config", identity,
                     has_results=lambda: table_path.exists() and bool(read_table(table_path, COLUMNS)),
                     difference=key_difference,
                     refusal=lambda d: f"{out} holds a sweep with a different configuration ({d}); use another --out")


def _sweep(args: Any, config: SweepConfig, points: list[int], seeds: list[int], client: Any) -> int:
    """The sweep proper, in the held folder ``args.out``: the pending points computed and appended, then the
    summary, the plot and the finished manifest."""
    out = args.out
    manifest_path, table_path = out / "manifest.json", out / "results.csv"
    table = ResultsTable(table_path, COLUMNS)
    have = point_keys(table.rows, table_path)
    manifest = {"tool": "simulate.sweep", "config": config.identity(), "points": args.concepts, "seeds": seeds,
                "versions": package_versions(["numpy", "scipy", "sympy", "cvxpy", "torch", "dask"]),
                "git_commit": git_commit(), "command": command_line(), "started": utc_now(), "status": "running"}
    write_manifest(manifest_path, manifest)

    done = {s: frozenset(c for c in points if (c, s) in have) for s in seeds}
    pending = [s for s in seeds if len(done[s]) < len(points)]
    bar = _Progress(sum(len(points) - len(done[s]) for s in pending), not args.quiet)
    t0 = time.perf_counter()
    if client is not None:
        futures = client.map(run_seed_rows, [config] * len(pending), pending, [points] * len(pending),
                             [done[s] for s in pending], pure=False)
        for fut in dask_results(client, futures):
            rows = fut.result()
            table.append(rows)
            for _ in rows:
                bar.step("(dask)")
        client.close()
    elif args.workers > 1 and len(pending) > 1:
        run_in_workers(config, pending, points, done, min(args.workers, len(pending)), table,
                       lambda row: bar.step(f"seed {row['seed']} C_P {row['c_p']} (workers)"))
    else:
        for s in pending:
            def emit(row: dict[str, Any], s: int = s) -> None:
                table.append([row])
                bar.step(f"seed {s} C_P {row['c_p']}")
            run_seed(config, s, points, done[s], emit=emit)
    bar.close()

    rows = [r for r in table.rows if int(r["c_p"]) in set(points) and int(r["seed"]) in set(seeds)]
    summary = summarise(rows, points)
    print(summary_text(summary, rows))
    if not args.no_plot:
        plot(summary, out / "ad_vs_cp.png",
             f"{config.solver.name}, K={config.concepts.n_concepts}, m={config.benign_per_concept}, "
             f"p={config.poison.poison_per_concept}, d={config.concepts.dim}, "
             f"{config.poison.kind}/{config.poison.placement}, {len(seeds)} seeds")
    manifest.update(status="complete", finished=utc_now(), seconds=round(time.perf_counter() - t0, 2),
                    rows=len(rows))
    write_manifest(manifest_path, manifest)
    print(f"wrote {table_path}, {manifest_path}" + ("" if args.no_plot else f", {out / 'ad_vs_cp.png'}"))
    return 0


def cli() -> None:
    """The ``implosion-sweep`` console script: :func:`main` behind the one-line error boundary."""
    run_main(main, prog="implosion-sweep")


if __name__ == "__main__":
    run_main(main, prog="python -m simulate.sweep")
