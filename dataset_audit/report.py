"""What an audit writes: ``report.md`` and a self-contained ``report.html`` (one document, two renderings:
:mod:`dataset_audit.document`) with the verdict first, ``scores.png``, and the machine-readable ``pairs.csv``
(and ``pairs.parquet`` with pyarrow), ``concepts.csv`` and ``report.json``."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from dataset_audit.config import AuditConfig
from dataset_audit.document import Section, Table, to_html, to_markdown
from implosion_base.files import atomic_path, atomic_write_text
from implosion_base.provenance import command_line, git_commit, utc_now
from implosion_base.records import csv_text
from implosion_base.shards import PairShards

#: Rows of the report's tables (every row is in pairs.csv and concepts.csv).
SHOWN_PAIRS, SHOWN_CONCEPTS = 15, 30
TITLE = "Dataset audit"


def write_report(out: Path, src: PairShards, res: dict[str, Any], cfg: AuditConfig) -> None:
    """pairs.csv (and pairs.parquet), concepts.csv, report.json, scores.png, report.md and report.html in ``out``
    (each written atomically)."""
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
    _write_parquet(out / "pairs.parquet", lines)
    atomic_write_text(out / "concepts.csv", csv_text(res["concepts"]))
    s = res["summary"]
    record = {"tool": "dataset_audit", "summary": s, "config": asdict(cfg), "shards": src.names,
              "date": utc_now(), "git_commit": git_commit(), "command": command_line()}
    atomic_write_text(out / "report.json", json.dumps(record, indent=1, default=float) + "\n")
    _plot(out / "scores.png", pr["cos"], pr["flagged"], s)
    top = top_pairs(lines)
    sections = report_sections(s, res["concepts"], top, [_local_image(src, r) for r in top])
    atomic_write_text(out / "report.md", to_markdown(TITLE, sections))
    atomic_write_text(out / "report.html", to_html(TITLE, sections, out))


def _write_parquet(path: Path, lines: list[dict[str, Any]]) -> None:
    """pairs.csv's table as parquet (types kept), when pyarrow is installed (the ``audit`` extra)."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return
    with atomic_path(path) as tmp:
        pq.write_table(pa.Table.from_pylist(lines), tmp)


def top_pairs(lines: list[dict[str, Any]], k: int = SHOWN_PAIRS) -> list[dict[str, Any]]:
    """The ``k`` most suspicious pairs: the flagged ones first, then by rank (share of AD)."""
    return sorted(lines, key=lambda r: (-r["flagged"], r["rank"]))[:k]


def _local_image(src: PairShards, row: dict[str, Any]) -> Path | None:
    """The pair's image file when it is on this machine: its ``file_name`` / ``image_path`` as given, or relative to
    its shard's folder or the folder above it."""
    base = src.part_files[int(src.shard_of(row["index"]))].parent
    for key in ("file_name", "image_path"):
        if row.get(key):
            for candidate in (Path(row[key]), base / row[key], base.parent / row[key]):
                if candidate.is_file():
                    return candidate
    return None


def report_sections(s: dict[str, Any], concepts: list[dict[str, Any]], top: list[dict[str, Any]],
                    thumbnails: list[Path | None] = ()) -> list[Section]:
    """The report, verdict first: AD and how it was computed, the flag rule that flagged and why with the cosine
    histogram, the most suspicious pairs, the concept view, the margin and what it means."""
    ci = f" (95% CI {s['ad_ci95'][0]:.5f} – {s['ad_ci95'][1]:.5f})" if s.get("ad_ci95") else ""
    read = f" read as {' and '.join(s['layouts'])}" if s.get("layouts") else ""
    return [
        Section("", [verdict(s), f"{s['n']:,} pairs in {s['shards']} shard(s){read}, d = {s['d']}."]),
        Section("Alignment Difficulty", [
            f"AD = {s['ad']:.5f}{ci}, D_fea = {s['d_fea']:.5f}, D_stru = {s['d_stru']:.5f} (α = {s['alpha']}, LAION "
            f"rescaling {'on' if s['laion_scale'] else 'off'}). Computed {s['ad_mode']}: {s['ad_why']}."]),
        Section("Suspicious pairs", [
            f"**{s['flagged']:,} pairs flagged** by the {s['flag_rule']} rule: {s['flag_why']}. The "
            f"{min(len(top), SHOWN_PAIRS)} most suspicious (flagged first, then by share of AD) are below; every "
            "pair's cosine, score, z, rank and flag are in `pairs.csv` (and `pairs.parquet`)."],
            _pairs_table(top, list(thumbnails)), ("scores.png", "Pair cosines: flagged pairs in red, the rule's cut "
                                                  "dashed, the mixture's components when it found two.")),
        Section("Concepts", [
            f"{s['concepts']['method']}; K = {s['concepts']['k']}. Background flag rate q = "
            f"{s['background_flag_rate']:.4f}; a concept counts as poisoned when {s['poisoned_rule']}. Estimated: "
            f"**C_P = {s['estimated_c_p']}** of {s['n_concepts']} concepts, **p = {s['estimated_p']}** flagged pairs "
            f"per poisoned concept, m = {s['estimated_m']} unflagged pairs per concept."],
            _concepts_table(concepts),
            after=[f"{SHOWN_CONCEPTS} of {len(concepts)} concepts shown (the smallest p-values); all are in "
                   "`concepts.csv`."] if len(concepts) > SHOWN_CONCEPTS else []),
        *_margin_sections(s.get("margin")),
    ]


def verdict(s: dict[str, Any]) -> str:
    """The report's first line: what the audit found, in one sentence."""
    share = f"{s['flagged']:,} pairs flagged ({100 * s['flagged'] / max(1, s['n']):.1f} %) by the {s['flag_rule']} rule"
    if s["estimated_c_p"]:
        said = (f"**Verdict: poisoning likely** — {s['estimated_c_p']} of {s['n_concepts']} concepts carry "
                f"improbably many flagged pairs (about {s['estimated_p']} each); {share}.")
    elif s["flagged"]:
        said = (f"**Verdict: suspicious pairs, no poisoned concept** — {share}, spread over the concepts no more "
                "than chance allows.")
    else:
        said = (f"**Verdict: no sign of dirty-label poisoning** — no pair flagged by the {s['flag_rule']} rule "
                "(a poison whose image still matches its caption, Nightshade-style, is not seen this way).")
    m = s.get("margin")
    if m and m.get("prediction", True) is not None:
        said += (f" The simulator's margin: unpoisoned accuracy {m['predicted_unpoisoned_acc_now']:.3f} now, "
                 f"threshold C_P {_threshold(m)} — a model's prediction, not a measurement.")
    return said


def _threshold(m: dict[str, Any]) -> str:
    """The margin's predicted threshold C_P as the report prints it ("none" when not reached)."""
    return m["threshold_c_p"] if m["threshold_c_p"] == "none" else f"{float(m['threshold_c_p']):.1f}"


def _pairs_table(top: list[dict[str, Any]], thumbnails: list[Path | None]) -> Table:
    extra = [k for k in ("caption", "text", "file_name", "image_path", "url") if top and k in top[0]]
    rows = [[str(r["rank"]), "yes" if r["flagged"] else "no", f"{r['cos']:.3f}", r["concept"] or "–",
             *(str(r[k])[:80] for k in extra)] for r in top]
    return Table(["rank", "flagged", "cosine", "concept", *extra], rows, thumbnails)


def _concepts_table(concepts: list[dict[str, Any]]) -> Table:
    rows = [[r["name"], str(r["pairs"]), str(r["flagged"]), f"{r['flagged_fraction']:.3f}", f"{r['p_value']:.2g}",
             "yes" if r["poisoned"] else "no"] for r in sorted(concepts, key=lambda r: r["p_value"])[:SHOWN_CONCEPTS]]
    return Table(["concept", "pairs", "flagged", "fraction", "p-value", "poisoned"], rows)


def _margin_sections(m: dict[str, Any] | None) -> list[Section]:
    """What the margin says, and what it does not."""
    if not m:
        return []
    if m.get("prediction", True) is None:
        return [Section("Margin", [f"No prediction: {m['why']}."])]
    more = m["more_concepts_before_threshold"]
    thr = _threshold(m)
    return [Section("Margin (a model's prediction)", [
        f"Simulator at this data's geometry, {m['capacity']}, p = {m['p_used']} ({m['p_source']}): predicted "
        f"unpoisoned accuracy now {m['predicted_unpoisoned_acc_now']:.3f} ± {m['predicted_unpoisoned_acc_now_ci95']:.3f}"
        f" (clean {m['predicted_clean_acc']:.3f}); predicted threshold (accuracy < 0.5) at C_P = {thr}"
        + ("" if more is None else f", i.e. about {more:.0f} more concepts poisoned at this rate") + ".",
        f"**{m['warning']}** " + _capacity_hint(m)])]


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
    counts = ax.hist(cos[~flagged], bins=bins, color=UNPOISONED, alpha=0.8, label="not flagged")[0]
    if flagged.any():  # counts: pairs per bin, flagged or not
        counts = counts + ax.hist(cos[flagged], bins=bins, color=POISONED, alpha=0.7,
                                  label=f"flagged ({s['flag_rule']} rule)")[0]
    cut = s.get("flag_cosine_cut")
    if cut is not None and np.isfinite(cut):
        ax.axvline(cut, color=CONTROL, ls="--", lw=0.8, label=f"cut {round(cut, 3) + 0.0:.3f}")  # no "-0.000"
    fit = s["mixture"]
    if fit["two_populations"]:
        from scipy.stats import norm

        # each component's expected pairs per histogram bin: n·w·(Φ(b+) − Φ(b−)) over bins of the histogram's
        # width, evaluated on a finer grid — bounded by n·w however narrow the component
        edges = np.linspace(bins[0], bins[-1], 241)
        grid = 0.5 * (edges[1:] + edges[:-1])
        half = 0.5 * (bins[1] - bins[0])
        for w, mu, sd in zip(fit["weights"], fit["means"], fit["sds"]):
            count = len(cos) * w * (norm.cdf(grid + half, mu, sd) - norm.cdf(grid - half, mu, sd))
            ax.plot(grid, count, color="#111111", lw=0.8)
    ax.set_yscale("log")
    ax.set_ylim(0.5, 3.0 * max(1, int(counts.max())))
    ax.set_xlabel("pair cosine cos(t_i, v_i)")
    ax.set_ylabel("pairs")
    ax.legend(fontsize=6)
    save_png(fig, path)
