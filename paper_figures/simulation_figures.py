"""F5–F8 and the simulator half of F7: the graph picture, AD vs C_P, Conjecture 4.1 and implosion in simulation.

Everything here reads the tables of ``python -m simulate.experiments`` (through :class:`paper_figures.sources.Sources`)
except F5, which draws a small instance built on the spot with :mod:`simulate` and :mod:`theory.graphs`.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from paper_figures.built import Built
from paper_figures.sources import Sources, num
from implosion_base.plotting import CLEAN, FULL, POISONED, RULE_COLOURS, attack_vs_p_axes, legend, pyplot, save


def _by(rows, key):
    out: dict[str, list] = {}
    for r in rows:
        out.setdefault(r[key], []).append(r)
    return out


def fig5(src: Sources, out: Path) -> Built:
    r"""G_txt and G_img over a small training set with one poisoned concept; mismatched edges highlighted.

    Four well-separated concepts (template weight 0.1, separation 0.95, d = 32), three benign pairs each, and two
    dirty-label pairs captioned as concept 0 showing concept 1. Edges join vertices at cosine ≥ 0.5."""
    import networkx as nx

    from simulate.concepts import ConceptConfig, make_space
    from simulate.poison import benign_pairs
    from theory.ad import alignment_difficulty
    from theory.graphs import training_graphs

    space = make_space(ConceptConfig(n_concepts=4, dim=32, template_weight=0.1, separation=0.95), 0)
    bt, bv, labels = benign_pairs(space, 3, 0)
    pt, pv = space.sample(np.array([0, 0]), np.array([1, 1]), np.random.default_rng(1))
    t, v = np.concatenate([bt, pt]), np.concatenate([bv, pv])
    text_lab = np.concatenate([labels, [0, 0]])
    image_lab = np.concatenate([labels, [1, 1]])
    poison = np.r_[np.zeros(len(bt), bool), np.ones(2, bool)]
    g = training_graphs(t, v, threshold=0.5)
    clean_ad = alignment_difficulty(bt, bv).ad
    ad = alignment_difficulty(t, v).ad
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(FULL * 0.75, 2.6))
    palette = ["#1f5fa8", "#138d75", "#d35400", "#7b3fa0"]
    mism = set(g.mismatched)
    for ax, graph, lab, name in ((axes[0], g.g_txt, text_lab, r"$\mathcal{G}^{\mathcal{T}}_{txt}$ (captions)"),
                                 (axes[1], g.g_img, image_lab, r"$\mathcal{G}^{\mathcal{T}}_{img}$ (images)")):
        pos = nx.spring_layout(graph, seed=3, k=0.6)
        normal = [e for e in graph.edges() if tuple(sorted(e)) not in mism]
        odd = [e for e in graph.edges() if tuple(sorted(e)) in mism]
        nx.draw_networkx_edges(graph, pos, edgelist=normal, ax=ax, edge_color="#bbbbbb", width=0.8)
        nx.draw_networkx_edges(graph, pos, edgelist=odd, ax=ax, edge_color=POISONED, width=1.4, style="dashed")
        nodes = list(graph.nodes())
        nx.draw_networkx_nodes(graph, pos, nodelist=nodes, ax=ax, node_size=90,
                               node_color=[palette[int(lab[n])] for n in nodes],
                               edgecolors=[POISONED if poison[n] else "white" for n in nodes],
                               linewidths=[1.8 if poison[n] else 0.5 for n in nodes],
                               node_shape="o")
        ax.set_title(name)
        ax.axis("off")
    handles = [plt.Line2D([], [], marker="o", ls="", color=c, label=f"concept {i}") for i, c in enumerate(palette)]
    handles += [plt.Line2D([], [], marker="o", ls="", mfc="white", mec=POISONED, mew=1.8,
                           label="poison pair (text 0, image 1)"),
                plt.Line2D([], [], color=POISONED, ls="--", label="edge in one graph only")]
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=6.5, bbox_to_anchor=(0.5, -0.08))
    fig.subplots_adjust(bottom=0.18)
    files = save(fig, out, "fig5")
    caption = (f"The two graphs of supervised graph alignment (paper Figure 5) over a training set of 12 benign "
               f"pairs (4 well-separated concepts) and 2 dirty-label poison pairs captioned as concept 0 but "
               f"showing concept 1. Vertex k is caption t_k on the left and image v_k on the right; an edge joins "
               f"vertices at cosine ≥ 0.5; colour is the concept the vertex shows. The poison pairs sit in concept "
               f"0's cluster on the left and in concept 1's on the right, so {len(g.mismatched)} of "
               f"{len(g.matched) + len(g.mismatched)} edges are in one graph only (dashed). AD rises from "
               f"{clean_ad:.3f} (benign pairs) to {ad:.3f} with the two poison pairs (theory.ad).")
    return Built(files, caption, ["simulate.concepts / theory.graphs, built on the spot (seed 0)"])


def fig6(src: Sources, out: Path) -> Built:
    """AD vs C_P per regime, simulated (mean and 95% CI) against the block-model closed form."""
    rows, prov = src.sim("ad_regimes")
    regimes = _by(rows, "regime")
    plt = pyplot()
    n = len(regimes)
    fig, axes = plt.subplots(1, n, figsize=(FULL, 2.3), squeeze=False)
    for ax, (name, sel) in zip(axes[0], regimes.items()):
        c = np.array([num(r["c_p"]) for r in sel])
        ad, ci = np.array([num(r["ad_mean"]) for r in sel]), np.array([num(r["ad_ci95"]) for r in sel])
        closed, stru = np.array([num(r["closed_form"]) for r in sel]), np.array([num(r["d_stru_mean"]) for r in sel])
        ax.plot(c, ad, color=CLEAN, lw=1.2, label="AD, simulated")
        ax.fill_between(c, ad - ci, ad + ci, color=CLEAN, alpha=0.2, lw=0, label="95% CI over seeds")
        ax.plot(c, closed, "--", color="#138d75", lw=1.2, label="closed form (block model)")
        ax.plot(c, stru, ":", color="#7b3fa0", lw=1.0, label=r"$D_{stru}$, simulated")
        ax.set_title(name.replace(" (", "\n(").replace(", ", ",\n"), fontsize=7)
        ax.set_xlabel("poisoned concepts $C_P$")
        ax.set_ylim(0, 1)
    axes[0][0].set_ylabel("alignment difficulty")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.tight_layout()
    fig.legend(handles, labels, loc="upper center", ncol=4, bbox_to_anchor=(0.5, 0.0))
    files = save(fig, out, "fig6")
    gaps = {name: max(abs(num(r["ad_mean"]) - num(r["closed_form"])) for r in sel) for name, sel in regimes.items()}
    mono = {name: bool(np.all(np.diff([num(r["ad_mean"]) for r in sel]) > 0)) for name, sel in regimes.items()}
    caption = ("AD vs C_P in simulation (Theorem 4.2) in four regimes: simulated AD (mean, 95% CI band over seeds), "
               "the block model's closed form fitted once at C_P = 20, and D_stru. "
               + "; ".join(f"{k}: monotone {mono[k]}, max |sim − closed form| {gaps[k]:.3f}" for k in regimes) + ".")
    return Built(files, caption, [prov])


def fig7_simulation(ax, src: Sources) -> str:
    """Panel (a) of F7: attack success vs p in simulation per target rule; returns the provenance."""
    rows, prov = src.sim("single_concept")
    markers = {"nearest": "o", "random": "s", "farthest": "^"}
    ps = set()
    for rule, sel in _by(rows, "targets").items():
        p = [num(r["poison_per_concept"]) for r in sel]
        ps.update(p)
        ax.plot(p, [num(r["attack_success"]) for r in sel], marker=markers.get(rule, "o"), ms=3, lw=1,
                color=RULE_COLOURS.get(rule), label=f"{rule} target", alpha=0.85)
    ticks = [t for t in (0, 2, 5, 10, 20, 50, 100, 200) if t <= max(ps, default=0)]
    attack_vs_p_axes(ax, ticks, xlabel="poison pairs per concept p", symlog=True,
                     title="(a) simulation, one concept poisoned (ridge)")
    return prov


def fig8(src: Sources, out: Path) -> Built:
    """Implosion in simulation: unpoisoned accuracy and meaningless rate vs C_P per solver, accuracy vs C_P per
    capacity d, and accuracy vs AD."""
    rows, prov = src.sim("implosion_regimes")
    from empirical.report import mean_ci

    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(FULL, 2.5))
    solver_colours = ["#111111", "#c0392b", "#138d75", "#d35400"]

    def curve(ax, sel, key, **kw):
        by_c = _by(sel, "c_p")
        cs = sorted(by_c, key=num)
        stats = [mean_ci([num(r[key]) for r in by_c[c]]) for c in cs]
        x, y, e = np.array([num(c) for c in cs]), np.array([s[0] for s in stats]), np.array([s[1] for s in stats])
        line, = ax.plot(x, y, **kw)
        ax.fill_between(x, y - e, y + e, color=line.get_color(), alpha=0.08, lw=0)

    solver = [r for r in rows if r["group"] == "solver"]
    colour_of: dict[str, str] = {}
    for i, (name, sel) in enumerate(_by(solver, "setting").items()):
        colour_of[name] = solver_colours[i % len(solver_colours)]
        curve(axes[0], sel, "unpoisoned_acc", color=colour_of[name], marker="o", ms=3, label=name.split(" (")[0])
        curve(axes[0], sel, "meaningless_rate", color=colour_of[name], ls=":", marker="x", ms=3)
    axes[0].set_title("(a) per solver: unpoisoned acc (solid),\nmeaningless rate (dotted)")
    cap = [r for r in rows if r["group"] == "capacity (d)"]
    caps = _by(cap, "setting")
    cmap = plt.get_cmap("viridis")
    for i, (name, sel) in enumerate(caps.items()):
        colour_of[name] = cmap(i / max(len(caps) - 1, 1) * 0.85)
        curve(axes[1], sel, "unpoisoned_acc", color=colour_of[name], label=name)
    axes[1].set_title("(b) ridge: unpoisoned acc\nper map capacity d")
    for ax in axes[:2]:
        ax.set_xlabel("poisoned concepts $C_P$")
        ax.set_ylim(-0.03, 1.03)
        legend(ax, fontsize=6)
    axes[0].set_ylabel("rate")
    for name, sel in _by(solver + cap, "setting").items():
        axes[2].scatter([num(r["ad"]) for r in sel], [num(r["unpoisoned_acc"]) for r in sel], s=5,
                        color=colour_of[name], marker="o" if name in caps else "s", alpha=0.7)
    axes[2].set_xlabel("AD of the training set")
    axes[2].set_ylabel("unpoisoned accuracy")
    axes[2].set_title("(c) the points of (a) and (b)\nagainst AD (colours as there)")
    fig.tight_layout()
    files = save(fig, out, "fig8")
    caption = ("Implosion in simulation (Conjecture 4.3): (a) unpoisoned-concept accuracy (solid) and meaningless "
               "rate (dotted: no concept stands out of the output more than out of a random mixture of concepts, "
               "theory.implosion) vs C_P per alignment solver; "
               "(b) unpoisoned accuracy vs C_P as the text→image map's capacity d grows; (c) the same points against "
               "the AD of their training sets. Bands: 95% Student-t CI over seeds (wide with two seeds).")
    return Built(files, caption, [prov])


def fig12(src: Sources, out: Path) -> Built:
    """The phase diagram of implosion (simulate.phase): threshold V against p/m per capacity and K, and the
    accuracy map over (V, p/m) at the largest K."""
    from paper_figures.sources import numeric
    from simulate.phase import thresholds

    rows, prov = src.sim("phase")
    rows = numeric(rows)
    marks = thresholds(rows)
    files = save(plot_phase(rows, marks), out, "fig12")
    competent = [m for m in marks if m["clean_acc"] >= 0.5]
    reached = [m for m in competent if np.isfinite(m["v_acc_below_half"])]
    caption = ("Phase diagram of implosion in simulation: the poison volume V = C_P·p/(K·m) at which mean "
               "unpoisoned accuracy falls below 0.5, against per-concept dominance p/m, one line per capacity (ridge "
               "map dimension d; nuclear-norm budget for the capacity solver), one panel per number of concepts K "
               "(missing points: not reached for any reachable V ≤ p/m); below, the accuracy map over (V, p/m) per d "
               f"at the largest K. {len(reached)} of the {len(competent)} curves whose clean model reads ≥ 0.5 reach "
               "accuracy < 0.5.")
    return Built(files, caption, [prov])


def fig13(src: Sources, out: Path) -> Built:
    """Damage against AD at fixed poison volume (simulate.ad_volume)."""
    from paper_figures.sources import numeric
    from simulate.ad_volume import given_volume

    rows, prov = src.sim("ad_volume")
    rows = numeric(rows)
    files = save(plot_ad_volume(rows), out, "fig13")
    st = {s["predictor"]: s for s in given_volume(rows)}
    caption = ("Does AD explain implosion beyond the amount of poison? Left: unpoisoned accuracy against the AD of "
               "the training set for each poison configuration (marker) and volume V (colour), seed means. Right: "
               "both centred within each volume and seed. Within-volume Pearson r(accuracy, AD) = "
               f"{st['ad']['pearson']:+.2f} ± {st['ad']['pearson_ci95']:.2f}, r(accuracy, D_stru) = "
               f"{st['d_stru']['pearson']:+.2f} ± {st['d_stru']['pearson_ci95']:.2f} (mean ± 95% CI over "
               f"{st['ad']['seeds']} seeds).")
    return Built(files, caption, [prov])


def plot_phase(rows: list[dict], marks: list[dict]):
    """Top: the threshold V (unpoisoned accuracy < 0.5) against p/m, one line per capacity (one colour per d in
    every panel, one legend above), one panel per K and one for the capacity solver. Bottom: mean unpoisoned
    accuracy over (V, p/m) at the largest K, one panel per d, one labelled colour bar. Full width (7 in)."""
    plt = pyplot()
    ks = sorted({m["n_concepts"] for m in marks if m["solver"] == "ridge"})
    dims = sorted({m["capacity"] for m in marks if m["solver"] == "ridge"})
    top = [("ridge", k) for k in ks] + ([("capacity", None)] if any(m["solver"] == "capacity" for m in marks) else [])
    fig = plt.figure(figsize=(FULL, 4.6), layout="constrained")
    upper, lower = fig.subfigures(2, 1, height_ratios=[1.1, 1])
    axes = upper.subplots(1, len(top), sharey=True, squeeze=False)[0]
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (solver, k) in zip(axes, top):
        sel = [m for m in marks if m["solver"] == solver and (k is None or m["n_concepts"] == k)]
        for i, cap in enumerate(sorted({m["capacity"] for m in sel})):
            line = sorted((m for m in sel if m["capacity"] == cap), key=lambda m: m["dominance"])
            x = [m["dominance"] for m in line]
            y = [m["v_acc_below_half"] if math.isfinite(m["v_acc_below_half"]) else np.nan for m in line]
            colour = colours[dims.index(cap) % len(colours)] if solver == "ridge" else colours[i % len(colours)]
            ax.plot(x, y, "o-", ms=2.5, lw=1, color=colour,
                    label=f"d = {cap:g}" if solver == "ridge" else f"budget {cap:g}")
        ax.plot(x, x, ":", color="grey", lw=0.8, label="V = p/m (all poisoned)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"ridge, K = {k:g}" if solver == "ridge" else
                     f"capacity-limited d = {sel[0]['dim']:g},\nK = {sel[0]['n_concepts']:g}", fontsize=7)
        if solver == "capacity":
            lines = [h for h in ax.get_lines() if h.get_label().startswith("budget")]
            ax.legend(lines, [h.get_label().removeprefix("budget ") for h in lines], frameon=False, fontsize=5.5,
                      loc="upper left", handlelength=1.2, borderaxespad=0.1, title="nuclear-norm budget",
                      title_fontsize=5.5)
    handles, labels = axes[0].get_legend_handles_labels()
    upper.legend(handles, labels, loc="outside upper center", ncol=len(labels), frameon=False, fontsize=6,
                 handlelength=1.5, columnspacing=1.0)
    axes[0].set_ylabel("threshold V\n(accuracy < 0.5)")
    upper.supxlabel("per-concept dominance p/m (a gap: never below 0.5)", fontsize=7)
    kmax = max(ks)
    maps = lower.subplots(1, len(dims), sharey=True, squeeze=False)[0]
    for ax, d in zip(maps, dims):
        sel = [r for r in rows if r["solver"] == "ridge" and r["n_concepts"] == kmax and r["capacity"] == d]
        doms = sorted({r["dominance"] for r in sel})
        vols = sorted({float(r["target_volume"]) for r in sel if float(r["target_volume"]) > 0})
        grid = np.full((len(doms), len(vols)), np.nan)
        for i, dm in enumerate(doms):
            for j, v in enumerate(vols):
                vals = [float(r["unpoisoned_acc"]) for r in sel if r["dominance"] == dm and float(r["target_volume"]) == v]
                if vals and not np.isnan(vals).all():
                    grid[i, j] = np.nanmean(vals)
        im = ax.imshow(grid, origin="lower", aspect="auto", cmap="viridis", vmin=0, vmax=1)
        ticks = [j for j, v in enumerate(vols) if v in (0.25, 1, 3, 8) or len(vols) <= 4]
        ax.set_xticks(ticks, [f"{vols[j]:g}" for j in ticks], fontsize=6)
        ax.set_yticks(range(len(doms)), [f"{v:g}" for v in doms], fontsize=6)
        ax.set_title(f"d = {d:g}", fontsize=7)
    maps[0].set_ylabel("dominance p/m")
    lower.supxlabel(f"poison volume V = C_P·p/(K·m); unpoisoned accuracy of the ridge map at K = {kmax:g}",
                    fontsize=7)
    lower.colorbar(im, ax=list(maps), pad=0.01, aspect=15).set_label("unpoisoned accuracy", fontsize=7)
    return fig


def plot_ad_volume(rows: list[dict]):
    """Left: unpoisoned accuracy against AD, one marker per configuration, one colour per volume (seed means).
    Right: the same centred within each volume and seed (what is left for AD to explain once V is fixed)."""
    plt = pyplot()
    names = list(dict.fromkeys(r["configuration"] for r in rows))
    vols = sorted({r["volume"] for r in rows})
    markers = "osD^v<>pPX*h"
    cmap = plt.get_cmap("viridis")
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(FULL, 3.1), constrained_layout=True)
    for i, name in enumerate(names):
        for j, v in enumerate(vols):
            sel = [r for r in rows if r["configuration"] == name and r["volume"] == v]
            if not sel:
                continue
            ax1.scatter(np.mean([r["ad"] for r in sel]), np.mean([r["unpoisoned_acc"] for r in sel]),
                        marker=markers[i % len(markers)], color=cmap(j / max(1, len(vols) - 1)), s=16)
    from matplotlib.lines import Line2D

    shapes = [Line2D([], [], ls="", marker=markers[i % len(markers)], color="0.35", ms=4, label=name)
              for i, name in enumerate(names)]
    ax1.set_xlabel("AD of the training set")
    ax1.set_ylabel("unpoisoned accuracy")
    ax1.legend(handles=shapes, frameon=False, fontsize=5.5, loc="lower left", title="configuration (marker)",
               title_fontsize=6, handletextpad=0.3, borderaxespad=0.2)
    ax1.set_title("damage vs AD", fontsize=8)
    sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(0, max(1, len(vols) - 1)))
    bar = fig.colorbar(sm, ax=[ax1, ax2], ticks=range(len(vols)), pad=0.01, aspect=25)
    bar.ax.set_yticklabels([f"{v:g}" for v in vols], fontsize=6)
    bar.set_label("poison volume V (colour)", fontsize=7)
    for seed in sorted({r["seed"] for r in rows}):
        rs = [r for r in rows if r["seed"] == seed]
        counts = {v: sum(1 for r in rs if r["volume"] == v) for v in vols}
        rs = [r for r in rs if counts[r["volume"]] >= 3]
        for j, v in enumerate(vols):
            sel = [r for r in rs if r["volume"] == v]
            if not sel:
                continue
            ad = np.array([r["ad"] for r in sel])
            acc = np.array([r["unpoisoned_acc"] for r in sel])
            ax2.scatter(ad - ad.mean(), acc - acc.mean(), color=cmap(j / max(1, len(vols) - 1)), s=10)
    ax2.axhline(0, color="grey", lw=0.6)
    ax2.axvline(0, color="grey", lw=0.6)
    ax2.set_xlabel("AD − mean AD at the same V (and seed)")
    ax2.set_ylabel("accuracy − mean accuracy at the same V")
    ax2.set_title("given V: what AD has left to explain", fontsize=8)
    return fig
