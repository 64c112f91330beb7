"""Benchmark: the simulator sweep. Run alone (a second CPU-heavy process distorts every number):

    .venv/bin/python bench/sweep.py                 # everything (about 15 minutes on 2 cores)
    .venv/bin/python bench/sweep.py --quick         # smaller grids, a few minutes

1. the main job, ``python -m simulate.sweep --concepts 1..500`` (default regime, 3 seeds), wall time;
2. the incremental sweep (``simulate.sweep.run_seed``: Gram statistics and AD updated as poison is added) against
   re-solving every point from scratch (training set rebuilt, AD computed exactly, ridge solved, same metrics),
   one seed, the same points — times side by side and the largest difference between their numbers;
3. cost per point of the ``capacity`` (cvxpy/SCS and FISTA) and ``attention`` solvers in the default regime.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from simulate.align import AttentionSolver, CapacitySolver  # noqa: E402
from simulate.metrics import evaluate  # noqa: E402
from simulate.poison import benign_pairs, plan_for_space, poison_pairs  # noqa: E402
from simulate.concepts import make_space  # noqa: E402
from simulate.engine import SweepConfig, run_seed  # noqa: E402
from simulate.training_set import TrainingSet  # noqa: E402
from timing import timed  # noqa: E402


def from_scratch(config: SweepConfig, seed: int, points: list[int]) -> list[dict]:
    """Every point computed independently: rebuild the training set, exact AD, fresh solve, same metrics."""
    space = make_space(config.concepts, seed)
    plan = plan_for_space(space, config.poison, seed)
    bt, bv, _ = benign_pairs(space, config.benign_per_concept, seed)
    clean = TrainingSet(config.concepts.dim)
    clean.add(bt, bv)
    fitter = config.solver.prepare(clean, seed)
    clean_out = fitter.fit(clean).predict(space.text_centroids)
    rows = []
    for c_p in points:
        extra = [poison_pairs(space, plan, config.poison, int(c), seed) for c in plan.poisoned(c_p)]
        data = TrainingSet(config.concepts.dim)
        data.add(np.concatenate([bt] + [e[0] for e in extra]), np.concatenate([bv] + [e[1] for e in extra]))
        ad = data.ad()
        rows.append({"c_p": c_p, "ad": ad.ad, **evaluate(fitter.fit(data), space, plan, c_p, clean_out)})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller grids (a smoke run of the benchmark)")
    ap.add_argument("--repeats", type=int, default=3, help="repeats of the main job (median)")
    args = ap.parse_args()
    lines = [f"machine: {platform.machine()}, {os.cpu_count()} CPUs, numpy {np.__version__}, "
             f"python {platform.python_version()}", f"command: python bench/sweep.py{' --quick' if args.quick else ''}"]

    # 1. the main job
    spec = "1..100" if args.quick else "1..500"
    with tempfile.TemporaryDirectory() as tmp:
        def job():
            out = Path(tmp) / f"run{time.perf_counter_ns()}"
            subprocess.run([sys.executable, "-m", "simulate.sweep", "--concepts", spec, "--out", str(out),
                            "--quiet", "--no-plot"], cwd=ROOT, check=True, capture_output=True)
        t_main, _ = timed(job, 1 if args.quick else args.repeats)
    lines += ["", f"main job `python -m simulate.sweep --concepts {spec}` (3 seeds, ridge): median {t_main:.1f} s "
              f"over {1 if args.quick else args.repeats} runs"]
    print(lines[-1], flush=True)

    # 2. incremental vs from scratch
    config = SweepConfig()
    points = list(range(1, 101 if args.quick else 501))
    t_inc, inc = timed(lambda: run_seed(config, 0, points), 1)
    t_scr, scr = timed(lambda: from_scratch(config, 0, points), 1)
    diff = max(abs(a[k] - b[k]) for a, b in zip(inc, scr) for k in ("ad", "unpoisoned_acc", "attack_success",
                                                                     "meaningless_rate", "distortion"))
    lines += ["", "| points (1 seed, ridge) | incremental (s) | from scratch (s) | speed-up | max abs diff |",
              "|---|---|---|---|---|",
              f"| C_P = {points[0]}..{points[-1]} | {t_inc:.1f} | {t_scr:.1f} | {t_scr / t_inc:.1f}x | {diff:.1e} |"]
    print(lines[-1], flush=True)

    # 3. other solvers: cost per point
    lines += ["", "| solver | points | total (s) | prepare (s) | per point, median (s) |", "|---|---|---|---|---|"]
    grid = [0, 250, 500] if not args.quick else [0, 50]
    for name, solver in (("capacity (cvxpy/SCS)", CapacitySolver(method="cvxpy")),
                         ("capacity (FISTA)", CapacitySolver(method="fista")),
                         ("attention", AttentionSolver())):
        cfg = SweepConfig(solver=solver)
        t_all, rows = timed(lambda: run_seed(cfg, 0, grid), 1)
        per_point = [r["seconds"] for r in rows]  # poison added + fit + metrics, per point
        lines.append(f"| {name} | {grid} | {t_all:.1f} | {t_all - sum(per_point):.1f} | "
                     f"{statistics.median(per_point):.2f} |")
        print(lines[-1], flush=True)

    print("\n" + "\n".join(lines))


if __name__ == "__main__":
    main()
