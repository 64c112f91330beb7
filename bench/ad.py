"""Benchmark: Alignment Difficulty, ours (exact blocked, sampled) against the authors' row-loop formulation.

Run alone (another CPU-heavy process distorts every number):

    .venv/bin/python bench/ad.py                      # n = 10k, 40k; d = 512; sampled at n = 1M
    .venv/bin/python bench/ad.py --sizes 2000 --sample-n 50000 --repeats 1   # a quick smoke run

All timings in one run on the same embeddings, medians over ``--repeats`` (``--reference-repeats`` for the slow
row loop). The row-loop reference is the authors' released formulation (see :func:`row_loop_reference`).
Peak memory of the exact computation is measured in a child process (extra peak RSS over the RSS right before
the call, and numpy's traced allocations).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from theory.ad import alignment_difficulty, alignment_difficulty_sampled, pair_scores  # noqa: E402
from timing import timed  # noqa: E402


def embeddings(n: int, d: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """CLIP-like float32 pairs: a shared template direction in text, matched pairs correlated across spaces."""
    rng = np.random.default_rng(seed)
    template = rng.standard_normal(d, dtype=np.float32)
    concept = rng.standard_normal((n, d), dtype=np.float32)
    text = 1.5 * template + concept + 0.5 * rng.standard_normal((n, d), dtype=np.float32)
    image = 0.6 * concept + rng.standard_normal((n, d), dtype=np.float32)
    return text, image


def row_loop_reference(text: np.ndarray, image: np.ndarray, alpha: float = 0.8) -> tuple[float, float, float]:
    """The authors' compute_AD (wenxind/implosion), re-typed: float32 unit rows; for each i, dot row i against
    rows i+1..n in both spaces and add sum |difference| to a running numpy scalar (float32, as theirs is)."""
    img = (image / np.linalg.norm(image, axis=1, keepdims=True)).astype(np.float32)
    txt = (text / np.linalg.norm(text, axis=1, keepdims=True)).astype(np.float32)
    n = img.shape[0]
    clip_sim = pair_scores(np.sum(img * txt, axis=1), True)
    d_fea = float((n - np.sum(clip_sim)) / n)
    structure = 0
    for i in range(n - 1):
        cos_img = np.dot(img[i], img[i + 1 :].T)
        cos_txt = np.dot(txt[i], txt[i + 1 :].T)
        structure += np.sum(np.abs(cos_img - cos_txt))
    d_stru = float(structure) * 2 / n**2
    return alpha * d_fea + (1 - alpha) * d_stru, d_fea, d_stru


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def memory_child(n: int, d: int) -> None:
    """Child process: peak memory of one exact float32 computation beyond the inputs.

    The kernel's peak-RSS mark is reset (``/proc/self/clear_refs``) after the inputs exist, so the embedding
    generator's own temporaries do not count."""
    import tracemalloc

    text, image = embeddings(n, d)
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # reset VmHWM to the current RSS
    before = _status_kib("VmRSS")
    tracemalloc.start()
    alignment_difficulty(text, image)
    traced_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    peak = _status_kib("VmHWM")
    inputs = text.nbytes + image.nbytes
    print(json.dumps({"extra_rss": max(0, peak - before) * 1024, "traced_peak": traced_peak, "inputs": inputs}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,40000", help="comma-separated n for exact vs row loop")
    ap.add_argument("--d", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--reference-repeats", type=int, default=1)
    ap.add_argument("--sample-n", type=int, default=1_000_000, help="n for the sampled estimator (0: skip)")
    ap.add_argument("--sample-pairs", type=int, default=1_000_000)
    ap.add_argument("--markdown", type=Path, help="also write the tables to this file")
    ap.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_child:
        memory_child(args.memory_child, args.d)
        return

    lines = [
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, numpy {np.__version__}, python "
        f"{platform.python_version()}",
        f"command: python bench/ad.py --sizes {args.sizes} --d {args.d} --repeats {args.repeats} "
        f"--reference-repeats {args.reference_repeats} --sample-n {args.sample_n} --sample-pairs {args.sample_pairs}",
        "",
        "| n | d | row loop (s) | ours exact f32 (s) | ours exact f64 (s) | speed-up f32 | speed-up f64 "
        "| max abs diff AD vs row loop |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for n in [int(x) for x in args.sizes.split(",") if x]:
        text, image = embeddings(n, args.d)
        t_ref, ref = timed(lambda: row_loop_reference(text, image), args.reference_repeats)
        t32, r32 = timed(lambda: alignment_difficulty(text, image), args.repeats)
        t64, r64 = timed(lambda: alignment_difficulty(text, image, precision="float64"), args.repeats)
        diff = max(abs(r32.ad - ref[0]), abs(r64.ad - ref[0]))
        lines.append(f"| {n} | {args.d} | {t_ref:.2f} | {t32:.2f} | {t64:.2f} | {t_ref / t32:.1f}x | "
                     f"{t_ref / t64:.1f}x | {diff:.1e} (AD = {r64.ad:.6f}) |")
        print(lines[-1], flush=True)
        del text, image

    n_mem = max(int(x) for x in args.sizes.split(","))
    child = subprocess.run([sys.executable, __file__, "--memory-child", str(n_mem), "--d", str(args.d)],
                           capture_output=True, text=True, check=True)
    mem = json.loads(child.stdout)
    lines += ["", f"peak memory of exact (float32 inputs) at n = {n_mem}, d = {args.d}: "
              f"{mem['extra_rss'] / 2**20:.0f} MiB of RSS beyond the {mem['inputs'] / 2**20:.0f} MiB of inputs "
              f"(numpy-traced peak {mem['traced_peak'] / 2**20:.0f} MiB)"]
    print(lines[-1], flush=True)

    if args.sample_n:
        text, image = embeddings(args.sample_n, args.d, seed=1)
        ts, rs = timed(lambda: alignment_difficulty_sampled(text, image, args.sample_pairs, seed=0), args.repeats)
        half = (rs.ci95[1] - rs.ci95[0]) / 2
        half_stru = (rs.d_stru_ci95[1] - rs.d_stru_ci95[0]) / 2
        lines += ["", "| n | d | sampled pairs | time (s) | AD | CI half-width AD | CI half-width D_stru |",
                  "|---|---|---|---|---|---|---|",
                  f"| {args.sample_n} | {args.d} | {args.sample_pairs} | {ts:.2f} | {rs.ad:.6f} | {half:.1e} | "
                  f"{half_stru:.1e} |"]
        print(lines[-1], flush=True)

    report = "\n".join(lines)
    print("\n" + report)
    if args.markdown:
        args.markdown.write_text(report + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
