"""The plot of ``python -m empirical.report``: AD and the unpoisoned measures vs C_P, per setting and data set."""

from __future__ import annotations

from pathlib import Path


def plot(records: list[dict], path: Path) -> None:
    """AD and the unpoisoned measures vs C_P: poisoned runs (solid) against controls (dashed), 95% CI bars; a
    2 × 3 grid at full width in the house style (:mod:`implosion_base.plotting`), the legend in the sixth cell."""
    from implosion_base.plotting import FULL, pyplot, save_png

    plt = pyplot()
    panels = (("ad", "AD of the training mix"), ("unpoisoned_prob", "unpoisoned: judge P(right concept)"),
              ("unpoisoned_acc", "unpoisoned: judge accuracy"), ("fd_unpoisoned", "unpoisoned: Fréchet distance"),
              ("attack_success", "poisoned: attack success"))
    fig, grid = plt.subplots(2, 3, figsize=(FULL, 4.4))
    axes = grid.ravel()
    series: dict[tuple, list[dict]] = {}
    for rec in records:
        ptype = "" if rec["poison_type"] in ("none", "dirty") else f", {rec['poison_type']}"
        series.setdefault((f"{rec['setting']} ({rec['data_set']})", rec["scenario"], rec["targets"], rec["steps"] + ptype, rec["kind"]),
                          []).append(rec)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    setting_colour: dict[tuple, str] = {}
    for (label, scen, tgt, steps, kind), recs in sorted(series.items()):
        setting = (label, scen, tgt, steps.split(",")[0])
        colour = setting_colour.setdefault(setting, colours[len(setting_colour) % len(colours)])
        if kind == "control" or recs[0]["poison_type"] not in ("none", "dirty"):
            # a control or a second poison type starts from the shared clean point C_P = 0
            clean = [r for key, rr in series.items() if key[:3] == (label, scen, tgt) and key[-1] == "poisoned"
                     for r in rr if r["c_p"] == "0" and r["steps"] == steps.split(",")[0]]
            recs = clean[:1] + [r for r in recs if r["c_p"] != "0"]
        recs = sorted(recs, key=lambda r: int(r["c_p"]))
        x = [int(r["c_p"]) for r in recs]
        for ax, (m, title) in zip(axes, panels):
            y = [r[m][0] for r in recs]
            e = [r[m][1] for r in recs]
            ax.errorbar(x, y, yerr=e, color=colour, ls="-" if kind == "poisoned" else "--", marker="o", ms=3,
                        capsize=2, label=f"{label}: {scen}, targets {tgt}, {steps} steps ({kind})")
            ax.set_title(title)
            ax.set_xlabel("C_P (poisoned concepts)")
    handles, labels = axes[0].get_legend_handles_labels()
    axes[-1].axis("off")
    axes[-1].legend(handles, labels, loc="center", fontsize=6)
    fig.tight_layout()
    save_png(fig, path)
