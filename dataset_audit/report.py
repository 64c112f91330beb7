"""What an audit writes: ``pairs.csv``, ``concepts.csv``, ``report.json``, ``report.md`` and ``scores.png``."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from dataset_audit.config import AuditConfig
from implosion_base.files import atomic_write_text
from implosion_base.provenance import command_line, git_commit, utc_now
from implosion_base.records import csv_text
from implosion_base.shards import PairShards


def write_report(out: Path, src: PairShards, res: dict[str, Any], cfg: AuditConfig) -> None:
    """pairs.csv, concepts.csv, report.json, report.md and scores.png in ``out`` (each written atomically)."""
    pr, names = res["pairs"], res["names"]
    shard = src.shard_of(np.arange(src.n))
    lines = []
    for i in range(src.n):
        c = int(pr["concept"][i])
        lines.append({"index": i, "shard": src.names[shard[i]],
                      **{k: str(v[i]) for k, v in src.labels.items()},
                      "cos": float(pr["cos"][i]), "s_i": float(pr["s_i"][i]), "score": float(pr["score"][i]),
                      "z": float(pr["z"][i]), "rank": int(pr["rank"][i]),
                      "p_mismatched": float(pr["posterior"][i]), "flagged": int(pr["flagged"][i]),
                      "concept": names[c] if c >= 0 else ""})
    atomic_write_text(out / "pairs.csv", csv_text(lines))
    atomic_write_text(out / "concepts.csv", csv_text(res["concepts"]))
    s = res["summary"]
    record = {"tool": "dataset_audit", "summary": s, "config": asdict(cfg), "shards": src.names,
              "date": utc_now(), "git_commit": git_commit(), "command": command_line()}
    atomic_write_text(out / "report.json", json.dumps(record, indent=1, default=float) + "\n")
    atomic_write_text(out / "report.md", report_markdown(s, res["concepts"]))
    _plot(out / "scores.png", pr["score"], pr["flagged"])


def report_markdown(s: dict[str, Any], concepts: list[dict[str, Any]]) -> str:
    """The human report: AD and how it was computed, the flag rule and count, the concept view, the margin."""
    ci = f" (95% CI {s['ad_ci95'][0]:.5f} – {s['ad_ci95'][1]:.5f})" if s.get("ad_ci95") else ""
    out = [f"# Dataset audit\n\n{s['n']:,} pairs in {s['shards']} shard(s), d = {s['d']}.\n",
           f"## Alignment Difficulty\n\nAD = {s['ad']:.5f}{ci}, D_fea = {s['d_fea']:.5f}, D_stru = {s['d_stru']:.5f} "
           f"(α = {s['alpha']}, LAION rescaling {'on' if s['laion_scale'] else 'off'}). Computed {s['ad_mode']}: "
           f"{s['ad_why']}.\n",
           f"## Suspicious pairs\n\n{s['flagged']:,} pairs flagged by the rule: {s['flag_rule']}; "
           "every pair's score, z and rank are in `pairs.csv`.\n",
           f"## Concepts\n\n{s['concepts']['method']}; K = {s['concepts']['k']}. Background flag rate "
           f"q = {s['background_flag_rate']:.4f}; a concept counts as poisoned when {s['poisoned_rule']}. "
           f"Estimated: **C_P = {s['estimated_c_p']}** of {s['n_concepts']} concepts, **p = {s['estimated_p']}** "
           f"flagged pairs per poisoned concept, m = {s['estimated_m']} unflagged pairs per concept.\n",
           "| concept | pairs | flagged | fraction | p-value | poisoned |\n|---|---|---|---|---|---|"]
    for r in sorted(concepts, key=lambda r: r["p_value"])[:30]:
        out.append(f"| {r['name']} | {r['pairs']} | {r['flagged']} | {r['flagged_fraction']:.3f} | "
                   f"{r['p_value']:.2g} | {'yes' if r['poisoned'] else 'no'} |")
    m = s.get("margin")
    if m:
        if m.get("prediction", True) is None:
            out.append(f"\n## Margin\n\nNo prediction: {m['why']}.\n")
        else:
            more = m["more_concepts_before_threshold"]
            thr = m["threshold_c_p"]
            thr = thr if thr == "none" else f"{float(thr):.1f}"
            out.append(
                f"\n## Margin (a model's prediction)\n\nSimulator at this data's geometry, {m['capacity']}, "
                f"p = {m['p_used']} ({m['p_source']}): predicted unpoisoned accuracy now "
                f"{m['predicted_unpoisoned_acc_now']:.3f} ± {m['predicted_unpoisoned_acc_now_ci95']:.3f} "
                f"(clean {m['predicted_clean_acc']:.3f}); predicted threshold (accuracy < 0.5) at C_P = "
                f"{thr}" + ("" if more is None else f", i.e. about {more:.0f} more concepts poisoned at this rate") + ".\n\n"
                f"**{m['warning']}**\n")
    return "\n".join(out) + "\n"


def _plot(path: Path, score: np.ndarray, flagged: np.ndarray) -> None:
    """Histogram of the pair scores, the flagged pairs (the mixture rule, not a score cut) drawn apart, in the
    house style at column width (:mod:`implosion_base.plotting`)."""
    from implosion_base.plotting import COLUMN, POISONED, UNPOISONED, pyplot, save_png

    fig, ax = pyplot().subplots(figsize=(COLUMN, 2.4))
    bins = np.linspace(float(score.min()), float(score.max()) + 1e-12, 81)
    ax.hist(score[~flagged], bins=bins, color=UNPOISONED, alpha=0.8, label="not flagged")
    if flagged.any():
        ax.hist(score[flagged], bins=bins, color=POISONED, alpha=0.6, label="flagged (mixture of pair cosines)")
    ax.legend()
    ax.set_yscale("log")
    ax.set_xlabel("pair score n·c_i (share of AD × n)")
    ax.set_ylabel("pairs")
    save_png(fig, path)
