"""Benchmark: the dataset audit (``dataset_audit``) on LAION-style float16 ``.npy`` shards, against the row-loop AD.

Run alone (another CPU-heavy process distorts every number):

    .venv/bin/python bench/audit.py                                   # n = 4,000,000, d = 512, shards of 250k
    .venv/bin/python bench/audit.py --n 200000 --shard 50000          # a quick run

Synthetic data, written once to ``--dir`` (kept between runs; not timed): K concepts in a CLIP-like space (a shared
text template, matched pairs correlated across spaces); a tenth of the concepts poisoned, 2% of all pairs
dirty-label poisons (caption of one concept, image of another). The audit runs in a child process (so its peak RSS is its own: ``ru_maxrss`` of the
child) with ``--no-predict`` (the simulator's margin is not part of the scale question): D_fea exact over every
pair; every pair against ``--partners`` random partners (shared within a block of rows), which gives each pair's
structure term and D_stru with its 95% CI (n·partners pair terms); the concept view (k-means on a sample, every
pair assigned). The pass runs in one process, in ``--workers`` local processes and on a Dask ``LocalCluster`` of
``--workers`` single-threaded worker processes, side by side (alternating over ``--repeats``); each run prints a
digest of its per-pair results (scores, flags, ranks, concepts), which must agree across modes. ``reference`` runs
the audit as it stood before its speed work (``--reference-commit``, checked out once into a git worktree beside
``--dir``: the code kept as the reference, not a copy of it) on the same shards, in one process; its per-pair
flags and concepts and its estimates are compared with today's, and each difference is counted. Peak RSS: the
audit process's own (``ru_maxrss``) and that of its whole process tree (workers included), sampled every 0.2 s.
Timings are medians over ``--repeats``.
The row-loop reference (the authors' formulation, :func:`bench.ad.row_loop_reference`) is timed at
``--reference-n`` pairs and extrapolated to n as t·(n / n_ref)² — the loop is O(n²) pair terms, so this is its
cost, not a measurement at n.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from implosion_base.files import atomic_path  # noqa: E402


def write_shards(folder: Path, n: int, d: int, shard: int, concepts: int = 200, poison: float = 0.02,
                 seed: int = 0) -> None:
    """float16 text_emb_XXXX.npy / img_emb_XXXX.npy shards of ``shard`` pairs (skipped when already there)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    template = rng.standard_normal(d).astype(np.float32)
    centres = rng.standard_normal((concepts, d)).astype(np.float32)
    for k, a in enumerate(range(0, n, shard)):
        t_path, v_path = folder / f"text_emb_{k:04d}.npy", folder / f"img_emb_{k:04d}.npy"
        if t_path.is_file() and v_path.is_file():
            continue
        m = min(shard, n - a)
        r = np.random.default_rng([seed, k])
        c = r.integers(0, concepts, m)
        # the first 10% of the concepts are poisoned: a fraction ``poison`` / 0.1 of their pairs show another one
        hit = (c < concepts // 10) & (r.random(m) < poison * 10)
        shown = np.where(hit, (c + 1 + r.integers(0, concepts - 1, m)) % concepts, c)
        text = 1.5 * template + centres[c] + 0.3 * r.standard_normal((m, d), dtype=np.float32)
        image = centres[shown] + 0.6 * r.standard_normal((m, d), dtype=np.float32)
        for path, arr in ((v_path, image), (t_path, text)):  # atomically: a killed run leaves no cut shard
            with atomic_path(path) as tmp:
                np.save(tmp, arr.astype(np.float16))


CHILD = """
import hashlib, json, resource, sys, threading, time
import numpy as np
import psutil
sys.path.insert(0, {code!r})
from dataset_audit.config import AuditConfig
from dataset_audit.execution import Execution
from dataset_audit.pipeline import audit
from implosion_base.shards import open_shards

peak = [0]
def watch():
    me = psutil.Process()
    while True:
        try:
            total = me.memory_info().rss + sum(c.memory_info().rss for c in me.children(recursive=True))
        except psutil.Error:
            continue
        peak[0] = max(peak[0], total)
        time.sleep(0.2)
threading.Thread(target=watch, daemon=True).start()
cluster = None
if {mode!r} == "dask":
    from distributed import LocalCluster
    cluster = LocalCluster(n_workers={workers}, threads_per_worker=1, processes=True, dashboard_address=None)
    execution = Execution(dask=cluster.scheduler_address, paths=({folder!r},))
elif {mode!r} == "processes":
    execution = Execution(workers={workers}, paths=({folder!r},))
else:
    execution = Execution()
t0 = time.perf_counter()
src = open_shards([{folder!r}])
res = audit(src, AuditConfig(partners={partners}, predict=False, seed=0), execution=execution)
seconds = time.perf_counter() - t0
s, pr = res["summary"], res["pairs"]
digest = hashlib.sha256(b"".join(np.ascontiguousarray(pr[k]).tobytes() for k in ("score", "flagged", "rank",
                                                                                  "concept"))).hexdigest()[:16]
np.savez({arrays!r}, flagged=pr["flagged"], concept=pr["concept"], score=pr["score"])
print(json.dumps({{"seconds": seconds, "n": s["n"], "ad": s["ad"], "ad_ci95": s["ad_ci95"],
                  "d_stru_ci95": s["d_stru_ci95"], "d_fea": s["d_fea"], "flagged": s["flagged"], "why": s["ad_why"],
                  "estimated_c_p": s["estimated_c_p"], "n_concepts": s["n_concepts"], "digest": digest,
                  "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
                  "peak_tree_rss_gib": peak[0] / 2**30}}))
if cluster is not None:
    cluster.close()
"""

#: How the audit runs in the side-by-side comparison: today's in one process, in local processes, on a Dask
#: LocalCluster; the reference version in one process.
MODES = ("reference", "here", "processes", "dask")
#: The audit before its speed work (2026-12-06): what today's is compared with.
REFERENCE_COMMIT = "083bcab"


def reference_code(commit: str, where: Path) -> Path:
    """A git worktree of this repository at ``commit`` (made once, kept beside the shards)."""
    tree = where / f"reference-{commit}"
    if not (tree / "dataset_audit").is_dir():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "--force", str(tree), commit],
                       check=True, capture_output=True)
    return tree


def run_audit(folder: Path, partners: int, mode: str = "here", workers: int = 2, code: Path = ROOT) -> dict:
    arrays = folder.parent / f"results-{mode}.npz"
    script = CHILD.format(code=str(code), folder=str(folder), partners=partners,
                          mode="here" if mode == "reference" else mode, workers=workers, arrays=str(arrays))
    env = {**os.environ, "PYTHONPATH": str(code)}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"audit ({mode}) failed: {proc.stderr.strip().splitlines()[-1]}")
    return {**json.loads(proc.stdout.strip().splitlines()[-1]), "arrays": str(arrays)}


def differences(a: dict, b: dict) -> str:
    """How the per-pair flags and concepts and the estimates of two runs differ, counted."""
    with np.load(a["arrays"]) as x, np.load(b["arrays"]) as y:
        flags = int(np.sum(x["flagged"] != y["flagged"]))
        concepts = int(np.sum(x["concept"] != y["concept"]))
        score = float(np.max(np.abs(x["score"] - y["score"]) / np.maximum(np.abs(y["score"]), 1e-12)))
    return (f"{flags} flags and {concepts} concept assignments differ of {a['n']:,}; largest relative score "
            f"difference {score:.1e}; estimated C_P {a['estimated_c_p']} vs {b['estimated_c_p']}, flagged "
            f"{a['flagged']:,} vs {b['flagged']:,}, AD {a['ad']:.6f} vs {b['ad']:.6f}")


def _half(ci) -> float:
    """Half-width of a 95% interval given as (low, high) or as a half-width."""
    return (ci[1] - ci[0]) / 2 if isinstance(ci, (list, tuple)) else float(ci)


def _interval(ci) -> str:
    return f"[{ci[0]:.5f}, {ci[1]:.5f}]" if isinstance(ci, (list, tuple)) else f"± {ci:.5f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=4_000_000)
    ap.add_argument("--d", type=int, default=512)
    ap.add_argument("--shard", type=int, default=250_000)
    ap.add_argument("--partners", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--reference-n", type=int, default=20_000)
    ap.add_argument("--modes", type=lambda v: v.split(","), default=list(MODES),
                    help=f"comma-separated, from {', '.join(MODES)} (default all, side by side)")
    ap.add_argument("--workers", type=int, default=2, help="worker processes of the processes and dask modes")
    ap.add_argument("--dir", type=Path, default=Path("/tmp/implosion-bench-audit"))
    ap.add_argument("--reference-commit", default=REFERENCE_COMMIT, help="the reference version's commit")
    args = ap.parse_args()
    folder = args.dir / f"n{args.n}-d{args.d}-s{args.shard}"
    t0 = time.perf_counter()
    write_shards(folder, args.n, args.d, args.shard)
    print(f"shards: {folder} ({args.n:,} pairs, d = {args.d}, float16; written or found in "
          f"{time.perf_counter() - t0:.1f} s)")
    runs = {mode: [] for mode in args.modes}
    code = {mode: reference_code(args.reference_commit, args.dir) if mode == "reference" else ROOT
            for mode in args.modes}
    for _ in range(args.repeats):  # alternating, so the modes see the same machine state
        for mode in args.modes:
            runs[mode].append(run_audit(folder, args.partners, mode, args.workers, code[mode]))
    base = float(np.median([x["seconds"] for x in runs[args.modes[0]]]))
    for mode in args.modes:
        rs = runs[mode]
        med = float(np.median([x["seconds"] for x in rs]))
        r = rs[0]
        where = {"reference": f"the reference ({args.reference_commit}), one process", "here": "one process",
                 "processes": f"--workers {args.workers}", "dask": f"Dask LocalCluster, {args.workers} workers"}[mode]
        print(f"audit, {where}: median {med:.1f} s over {args.repeats} run(s) ({base / med:.2f}x the speed of "
              f"{args.modes[0]}); "
              f"peak RSS {max(x['peak_rss_gib'] for x in rs):.2f} GiB (this process), "
              f"{max(x['peak_tree_rss_gib'] for x in rs):.2f} GiB (with its workers, sampled every 0.2 s); "
              f"AD {r['ad']:.5f}, 95% CI {_interval(r['ad_ci95'])} (D_stru CI half-width "
              f"{_half(r['d_stru_ci95']):.2e}); {r['flagged']:,} flagged; {r['estimated_c_p']} of {r['n_concepts']} "
              f"concepts estimated poisoned; per-pair results digest {r['digest']}")
    today = [m for m in args.modes if m != "reference"]
    digests = {x["digest"] for m in today for x in runs[m]}
    print(f"identical per-pair results in every mode and run of today's audit: {'yes' if len(digests) == 1 else 'NO'} "
          f"({runs[today[0]][0]['why']})")
    if "reference" in runs and today:
        print(f"today's against the reference: {differences(runs[today[0]][0], runs['reference'][0])}")
    med = float(np.median([x["seconds"] for x in runs[today[0]]]))
    from ad import embeddings, row_loop_reference

    text, image = embeddings(args.reference_n, args.d)
    t0 = time.perf_counter()
    row_loop_reference(text, image)
    ref = time.perf_counter() - t0
    scale = (args.n / args.reference_n) ** 2
    print(f"row loop: {ref:.1f} s at n = {args.reference_n:,}; extrapolated to n = {args.n:,}: {ref * scale:,.0f} s "
          f"({ref * scale / 86400:.1f} days) — {ref * scale / med:,.0f}x the audit")


if __name__ == "__main__":
    main()
