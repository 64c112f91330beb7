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
    atomic_write_text(out / "report.md", report_markdown(s, res["concepts"], top_pairs(lines)))
    _plot(out / "scores.png", pr["cos"], pr["flagged"], s)


#: Rows of the report's tables (every row is in pairs.csv and concepts.csv).
SHOWN_PAIRS, SHOWN_CONCEPTS = 15, 30


def top_pairs(lines: list[dict[str, Any]], k: int = SHOWN_PAIRS) -> list[dict[str, Any]]:
    """The ``k`` most suspicious pairs: the flagged ones first, then by rank (share of AD)."""
    return sorted(lines, key=lambda r: (-r["flagged"], r["rank"]))[:k]


def _pairs_table(top: list[dict[str, Any]]) -> list[str]:
    """The report's table of the most suspicious pairs, with their caption and file when the data have them."""
    extra = [k for k in ("caption", "file_name", "url", "image_path") if top and k in top[0]]
    out = ["| rank | flagged | cosine | concept | " + " | ".join(extra) + (" |" if extra else "|"),
           "|---" * (4 + len(extra)) + "|"]
    for r in top:
        cells = [str(r["rank"]), "yes" if r["flagged"] else "no", f"{r['cos']:.3f}", r["concept"] or "–",
                 *(str(r[k]).replace("|", "\\|")[:80] for k in extra)]
        out.append("| " + " | ".join(cells) + " |")
    return out


def report_markdown(s: dict[str, Any], concepts: list[dict[str, Any]], top: list[dict[str, Any]] = ()) -> str:
    """The human report: AD and how it was computed, the flag rule that flagged and why, the most suspicious pairs,
    the concept view, the margin and what it means."""
    ci = f" (95% CI {s['ad_ci95'][0]:.5f} – {s['ad_ci95'][1]:.5f})" if s.get("ad_ci95") else ""
    read = f" read as {' and '.join(s['layouts'])}" if s.get("layouts") else ""
    out = [f"# Dataset audit\n\n{s['n']:,} pairs in {s['shards']} shard(s){read}, d = {s['d']}.\n",
           f"## Alignment Difficulty\n\nAD = {s['ad']:.5f}{ci}, D_fea = {s['d_fea']:.5f}, D_stru = {s['d_stru']:.5f} "
           f"(α = {s['alpha']}, LAION rescaling {'on' if s['laion_scale'] else 'off'}). Computed {s['ad_mode']}: "
           f"{s['ad_why']}.\n",
           f"## Suspicious pairs\n\n**{s['flagged']:,} pairs flagged** by the {s['flag_rule']} rule: {s['flag_why']}. "
           f"The {min(len(top), SHOWN_PAIRS)} most suspicious (flagged first, then by share of AD) are below; every "
           "pair's cosine, score, z, rank and flag are in `pairs.csv`, and `scores.png` draws the cosines with the "
           "cut.\n", *_pairs_table(list(top)), "",
           f"## Concepts\n\n{s['concepts']['method']}; K = {s['concepts']['k']}. Background flag rate "
           f"q = {s['background_flag_rate']:.4f}; a concept counts as poisoned when {s['poisoned_rule']}. "
           f"Estimated: **C_P = {s['estimated_c_p']}** of {s['n_concepts']} concepts, **p = {s['estimated_p']}** "
           f"flagged pairs per poisoned concept, m = {s['estimated_m']} unflagged pairs per concept.\n",
           "| concept | pairs | flagged | fraction | p-value | poisoned |\n|---|---|---|---|---|---|"]
    for r in sorted(concepts, key=lambda r: r["p_value"])[:SHOWN_CONCEPTS]:
        out.append(f"| {r['name']} | {r['pairs']} | {r['flagged']} | {r['flagged_fraction']:.3f} | "
                   f"{r['p_value']:.2g} | {'yes' if r['poisoned'] else 'no'} |")
    if len(concepts) > SHOWN_CONCEPTS:
        out.append(f"\n{SHOWN_CONCEPTS} of {len(concepts)} concepts shown (the smallest p-values); all are in "
                   "`concepts.csv`.")
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
                f"**{m['warning']}** " + _capacity_hint(m) + "\n")
    return "\n".join(out) + "\n"


def _capacity_hint(m: dict[str, Any]) -> str:
    """What the margin's capacity means: a given d is the simulator's, not the model's."""
    if "given" in m["capacity"]:
        return ("The capacity d was given, not measured: the simulator's default d = 64 learns almost anything, so "
                "'accuracy 1.000, threshold none' says little about a real model; give --clean-acc (a real model's "
                "clean accuracy on this data) to calibrate d.")
    return "The capacity d was calibrated to the clean accuracy given (--clean-acc)."


def _plot(path: Path, cos: np.ndarray, flagged: np.ndarray, s: dict[str, Any]) -> None:
    """Histogram of the pair cosines (the quantity the flag rule reads), the flagged pairs drawn apart, the cut the
    rule amounts to, and the fitted mixture's components when it found two populations; house style at column
    width (:mod:`implosion_base.plotting`)."""
    from implosion_base.plotting import COLUMN, CONTROL, POISONED, UNPOISONED, pyplot, save_png

    fig, ax = pyplot().subplots(figsize=(COLUMN, 2.4))
    bins = np.linspace(float(cos.min()), float(cos.max()) + 1e-12, 61)
    ax.hist(cos[~flagged], bins=bins, color=UNPOISONED, alpha=0.8, label="not flagged")
    if flagged.any():
        ax.hist(cos[flagged], bins=bins, color=POISONED, alpha=0.7, label=f"flagged ({s['flag_rule']} rule)")
    cut = s.get("flag_cosine_cut")
    if cut is not None and np.isfinite(cut):
        ax.axvline(cut, color=CONTROL, ls="--", lw=0.8, label=f"cut {cut:.3f}")
    fit = s["mixture"]
    if fit["two_populations"]:
        x = np.linspace(bins[0], bins[-1], 400)
        width = bins[1] - bins[0]
        for w, mu, sd in zip(fit["weights"], fit["means"], fit["sds"]):
            ax.plot(x, len(cos) * width * w * np.exp(-0.5 * ((x - mu) / sd) ** 2) / (sd * np.sqrt(2 * np.pi)),
                    color="#111111", lw=0.8)
    ax.set_yscale("log")
    ax.set_ylim(bottom=0.5)
    ax.set_xlabel("pair cosine cos(t_i, v_i)")
    ax.set_ylabel("pairs")
    ax.legend(fontsize=6)
    save_png(fig, path)
