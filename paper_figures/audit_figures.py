"""F16 and T8: the dataset audit on known truth in a CLIP-like space (``python -m dataset_audit.realistic``).

The feeding command writes ``realistic.csv`` (one row per seed, poison kind and strength, p and C_P: the audit's
flags, the AP of its AD share, Ĉ_P, and two baselines it does not use — the AP of the pair cosine and of the
concept disagreement) and ``space.csv`` (the clean space's statistics per seed). Both are read from any folder under
``RESULTS/audit``; mixes are grouped by (kind, strength, p) over seeds and C_P. A mix *passes* when the AP of the AD
share is ≥ 0.9 and Ĉ_P lies within ±10 % of C_P (the issue's criterion).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from paper_figures.built import Built
from paper_figures.sources import Sources, num, read_csv
from paper_figures.tables import _write, fmt_ci
from implosion_base.plotting import COLUMN, legend, pyplot, save
from theory.stats import mean_ci95

FEEDS = "python -m dataset_audit.realistic --out results/audit/realistic"
GOOD_AP = 0.9
GOOD_C_P_ERROR = 0.10
#: The scores compared: column of realistic.csv, and its name in the table and figure.
RANKINGS = (("ap_of_score", "the audit (AD share)"), ("ap_of_disagreement", "concept disagreement"),
            ("ap_of_cosine", "pair cosine"))


def _found(src: Sources) -> list[Path]:
    return [] if src.quick else sorted((src.results / "audit").glob("**/realistic.csv"))


def groups(paths: list[Path]) -> dict[tuple[str, float, int], list[dict[str, Any]]]:
    """The mixes of every ``realistic.csv`` grouped by (poison kind, strength, p), in that order."""
    out: dict[tuple[str, float, int], list[dict[str, Any]]] = defaultdict(list)
    for path in paths:
        for r in read_csv(path):
            row = {k: (v if k == "kind" else num(v)) for k, v in r.items()}
            out[(r["kind"], row["strength"], int(row["p"]))].append(row)
    return dict(sorted(out.items(), key=lambda kv: (kv[0][0] != "dirty", -kv[0][1], kv[0][2])))


def passes(row: dict[str, Any]) -> bool:
    """The issue's criterion for one mix: AP of the AD share ≥ 0.9 and |Ĉ_P − C_P| ≤ 0.1·C_P."""
    return bool(row["ap_of_score"] >= GOOD_AP and row["c_p_error"] <= GOOD_C_P_ERROR)


def poison_name(kind: str, strength: float) -> str:
    return "dirty-label" if kind == "dirty" else f"Nightshade-like λ = {strength:g}"


def _space_line(paths: list[Path]) -> str:
    rows = [r for p in paths if (p.parent / "space.csv").is_file() for r in read_csv(p.parent / "space.csv")]
    if not rows:
        return "the clean space's statistics (space.csv) were not found"
    m = {key: float(np.mean([num(r[key]) for r in rows])) for key in rows[0]}
    smallest, largest = int(min(num(r["size_min"]) for r in rows)), int(max(num(r["size_max"]) for r in rows))
    return (f"clean pairs: matched cosine {m['matched_mean']:.3f} (sd {m['matched_sd']:.3f}), weakly aligned "
            f"captions {m['weak_fraction']:.0%} at {m['weak_mean']:.3f}, pairs across concepts "
            f"{m['across_mean']:.3f} (sd {m['across_sd']:.3f}), concepts of {smallest}–{largest} pairs, "
            f"{len(rows)} seed(s)")


def tab8(src: Sources, out: Path) -> Built:
    """Per (poison, p): the flags' precision and recall, the three APs (mean ± 95% CI over mixes), the Ĉ_P error, and
    how many mixes pass the criterion."""
    found = _found(src)
    rows = []
    for (kind, strength, p), mixes in groups(found).items():
        cps = sorted({int(r["c_p"]) for r in mixes})
        ap = [fmt_ci(*mean_ci95([r[col] for r in mixes])) for col, _ in RANKINGS]
        share = np.mean([r["c_p"] * p / r["n"] for r in mixes])  # a random ranking's AP
        rows.append([poison_name(kind, strength), p, ", ".join(map(str, cps)), len(mixes), f"{share:.3f}",
                     f"{mean_ci95([r['precision'] for r in mixes])[0]:.2f} / "
                     f"{mean_ci95([r['recall'] for r in mixes])[0]:.3f}",
                     *ap, f"{np.mean([r['c_p_error'] for r in mixes]):.2f}",
                     f"{sum(passes(r) for r in mixes)} of {len(mixes)}",
                     f"{sum(r['ap_of_disagreement'] >= GOOD_AP for r in mixes)} of {len(mixes)}"])
    header = ["poison", "p", "C_P", "mixes", "poison share (AP of chance)", "flagged: precision / recall",
              *[f"AP: {name}" for _, name in RANKINGS],
              "Ĉ_P relative error", f"audit passes (AP ≥ {GOOD_AP:g}, Ĉ_P ±{GOOD_C_P_ERROR:.0%})",
              f"disagreement AP ≥ {GOOD_AP:g}"]
    files, md = _write(out, "tab8", header, rows)
    caption = (f"The dataset audit on known truth in a CLIP-like space ({FEEDS}; {_space_line(found)}). Per poison "
               f"and pairs per poisoned concept p, over seeds and C_P: the flags' precision and recall (a mix "
               f"that flagged nothing has no precision and is left out of its mean), the average precision of "
               f"ranking pairs by the audit's AD share and "
               f"by two baselines it does not use (the pair cosine, lower first; the concept disagreement of "
               f"theory.detection, from the captions' concepts), mean ± 95% CI over mixes, the relative error of "
               f"Ĉ_P, and how many mixes pass the criterion (AP ≥ {GOOD_AP:g} and Ĉ_P within "
               f"±{GOOD_C_P_ERROR:.0%}).")
    return Built(files, caption, [str(p) for p in found], [] if rows else [f"no realistic validation yet: {FEEDS}"],
                 md)


def fig16(src: Sources, out: Path) -> Built:
    """AP against p per poison, one panel per ranking: the audit's AD share and the concept disagreement."""
    found = _found(src)
    got = groups(found)
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(COLUMN, 2.1), sharey=True)
    kinds = sorted({k[:2] for k in got}, key=lambda k: (k[0] != "dirty", -k[1]))
    colours = dict(zip(kinds, ("#c0392b", "#8e44ad", "#2e86c1", "#7f8c8d")))
    for ax, (col, name) in zip(axes, RANKINGS[:2]):
        for kind in kinds:
            ps = sorted(p for (k, s, p) in got if (k, s) == kind)
            stats = [mean_ci95([r[col] for r in got[(*kind, p)]]) for p in ps]
            ax.errorbar(ps, [m for m, _ in stats], yerr=[c for _, c in stats], marker="o", ms=3, lw=1, capsize=1.5,
                        color=colours[kind], label=poison_name(*kind))
        ax.axhline(GOOD_AP, color="grey", lw=0.6, ls=":")
        ax.set_xscale("log")
        ax.set_xlabel("poison pairs per concept p", fontsize=7)
        ax.set_title(name, fontsize=7)
        ax.tick_params(labelsize=6)
        ticks = sorted({p for (_, _, p) in got})
        if ticks:
            ax.set_xticks(ticks, [str(p) for p in ticks])
            ax.minorticks_off()
    axes[0].set_ylabel("average precision", fontsize=7)
    axes[0].set_ylim(-0.02, 1.02)
    if kinds:
        legend(axes[0], fontsize=5.5, loc="upper left", frameon=False)
    fig.tight_layout(pad=0.3, w_pad=0.6)
    files = save(fig, out, "fig16")
    caption = (f"Finding poisons in a CLIP-like space ({FEEDS}): average precision of ranking the pairs by the "
               f"audit's share of AD (left) and by the concept disagreement (right: an image nearer another "
               f"concept's images than its caption's), mean ± 95% CI over seeds and C_P; dotted: AP = {GOOD_AP:g}.")
    return Built(files, caption, [str(p) for p in found], [] if got else [f"no realistic validation yet: {FEEDS}"])
