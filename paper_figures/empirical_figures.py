"""F7 (both halves), F9, F10, F11: curves from the empirical harness's tables.

Every curve is a mean over seeds with a 95% Student-t interval (:func:`empirical.report.mean_ci`; no band with one
seed). Poisoned runs are solid, their same-volume correctly-labelled controls dashed and grey-toned; both start
from the shared clean point C_P = 0.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from paper_figures.built import Built
from paper_figures.simulation_figures import fig7_simulation
from paper_figures.sources import EMP_COMMANDS, Empirical, Sources, num, read_csv
from implosion_base.plotting import (
    CONTROL,
    FULL,
    panel_letters,
    POISONED,
    SCENARIO_COLOURS,
    TYPE_COLOURS,
    UNPOISONED,
    attack_vs_p_axes,
    legend,
    pyplot,
    save,
)


def _series(rows: list[dict[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[int]]:
    """C_P, mean, CI half-width and seed count of ``key`` over ``rows``, by C_P."""
    from empirical.report import mean_ci

    by: dict[int, list[float]] = {}
    seeds: dict[int, set] = {}
    for r in rows:
        by.setdefault(int(r["c_p"]), []).append(num(r[key]))
        seeds.setdefault(int(r["c_p"]), set()).add(r["seed"])
    cs = sorted(by)
    stats = [mean_ci(by[c]) for c in cs]
    return (np.array(cs, float), np.array([s[0] for s in stats]), np.array([s[1] for s in stats]),
            [len(seeds[c]) for c in cs])


def _plot(ax, rows, key, colour, *, dashed=False, label=None):
    if not rows:
        return
    x, y, e, _ = _series(rows, key)
    ok = np.isfinite(y)
    if not ok.any():
        return
    x, y, e = x[ok], y[ok], np.nan_to_num(e[ok])
    ax.plot(x, y, ls="--" if dashed else "-", marker="o", ms=3, color=colour, label=label)
    if np.any(e > 0):
        ax.fill_between(x, y - e, y + e, color=colour, alpha=0.15, lw=0)


def _tag(emp: Empirical) -> str:
    return "quick micro-preset data (numbers meaningless)" if emp.quick else f"preset {emp.preset}"


def _prov(emp: Empirical, rows: list[dict[str, Any]]) -> list[str]:
    return [f"{_tag(emp)}: " + ", ".join(sorted({r['folder'] for r in rows}))] if rows else []


def fig7(src: Sources, out: Path) -> Built:
    """Conjecture 4.1: attack success vs poison pairs per concept, in simulation and on the real model."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(FULL, 2.4))
    sim_prov = fig7_simulation(axes[0], src)
    emp = src.empirical()
    rows = emp.by_p()
    missing = []
    c_ps = sorted({int(r["c_p"]) for r in rows})
    # the C_P with the most distinct p values is the one the p-sweep was run at
    c_p = max(c_ps, key=lambda c: len({r["poison_per_concept"] for r in rows if int(r["c_p"]) == c})) if c_ps else 0
    ax = axes[1]
    for ptype, colour in TYPE_COLOURS.items():
        sel = [r for r in rows if int(r["c_p"]) == c_p and r["poison_type"] == ptype]
        if not sel:
            missing.append(f"{ptype} poisons: {EMP_COMMANDS['p']}")
            continue
        by = {}
        for r in sel:
            by.setdefault(int(r["poison_per_concept"]), []).append(num(r["attack_success"]))
        from empirical.report import mean_ci

        ps = sorted(by)
        stats = [mean_ci(by[p]) for p in ps]
        ax.errorbar(ps, [s[0] for s in stats], yerr=[s[1] for s in stats], marker="o", ms=3, capsize=2,
                    color=colour, label=f"{'dirty-label' if ptype == 'dirty' else 'Nightshade-style'}")
    chance = [num(r["attack_success"]) for r in emp.main("continuous", kinds=("control",)) if int(r["c_p"]) == c_p]
    if chance:
        ax.axhline(float(np.nanmean(chance)), color=CONTROL, ls=":", lw=1, label="control (chance of target)")
    shown_p = sorted({int(r["poison_per_concept"]) for r in rows if int(r["c_p"]) == c_p})
    attack_vs_p_axes(ax, shown_p, xlabel="poison pairs per poisoned concept p",
                     title=f"(b) real model, continuous training, C_P = {c_p}")
    fig.tight_layout()
    files = save(fig, out, "fig7")
    caption = ("Conjecture 4.1: enough poison pairs remap a concept. (a) Simulation: one concept poisoned alone, "
               "attack success (its prompt maps nearest to the target's image) vs its poison pairs p, per target "
               "rule. (b) The latent diffusion model: share of a poisoned concept's generated images that the judge "
               "reads as the target, vs p, for dirty-label and Nightshade-style (L∞-bounded, ε = 0.05) poisons "
               f"at C_P = {c_p}.")
    return Built(files, caption, [sim_prov] + _prov(emp, rows), missing)


PANELS_F9 = (("ad", "AD of the training mix"), ("unpoisoned_prob", "unpoisoned concepts:\njudge P(right concept)"),
             ("unpoisoned_acc", "unpoisoned concepts:\njudge top-1 accuracy"),
             ("fd_unpoisoned", "unpoisoned concepts: Fréchet\ndistance to clean (judge features)"),
             ("attack_success", "poisoned concepts:\nattack success"))


def fig9(src: Sources, out: Path) -> Built:
    """AD of the training mix and the unpoisoned-concept measures vs C_P per scenario, with controls."""
    emp = src.empirical()
    plt = pyplot()
    fig, grid = plt.subplots(2, 3, figsize=(FULL, 4.4))
    axes = list(grid.ravel())
    used, missing = [], []
    for scenario, colour in SCENARIO_COLOURS.items():
        rows = emp.main(scenario)
        if not rows:
            missing.append(f"{scenario}: {EMP_COMMANDS[scenario]}")
            continue
        used += rows
        poisoned = [r for r in rows if r["kind"] == "poisoned"]
        clean = [r for r in poisoned if int(r["c_p"]) == 0]
        control = clean + [r for r in rows if r["kind"] == "control"]
        for ax, (key, title) in zip(axes, PANELS_F9):
            _plot(ax, poisoned, key, colour, label=f"{scenario}, poisoned")
            if len(control) > len(clean):
                _plot(ax, control, key, colour, dashed=True, label=f"{scenario}, control")
            ax.set_ylabel(title)
            ax.set_xlabel("poisoned concepts $C_P$")
    handles, labels = axes[0].get_legend_handles_labels()
    axes[-1].axis("off")
    axes[-1].legend(handles, labels, loc="center", fontsize=7)
    panel_letters(axes[:-1])
    fig.tight_layout()
    files = save(fig, out, "fig9")
    counts = [len({r["seed"] for r in used if (r["scenario"], r["c_p"], r["kind"]) == key})
              for key in {(r["scenario"], r["c_p"], r["kind"]) for r in used}] or [0]
    caption = ("The latent diffusion model under poison, per training scenario: (a) the AD of the exact training "
               "mix (judge embeddings, theory.ad) and what happens to the never-poisoned concepts — (b) the judge's "
               "probability of the right concept, (c) its top-1 accuracy, (d) the Fréchet distance of generated to "
               "clean images in judge features — and (e) the attack success on the poisoned concepts, vs C_P. "
               "Solid: "
               "poisoned; dashed: the same-volume correctly-labelled control. Mean and 95% CI over seeds "
               f"({min(counts)}–{max(counts)} seeds per point in these data; no band with one seed).")
    return Built(files, caption, _prov(emp, used), missing)


def fig10(src: Sources, out: Path) -> Built:
    """Cross-attention statistics of the concept's tokens vs C_P, poisoned vs unpoisoned concepts."""
    emp = src.empirical()
    plt = pyplot()
    panels = (("attn_concept_share", "share of word-token attention\non the concept's tokens"),
              ("attn_entropy", "entropy of the concept map\n(1 = spread evenly)"),
              ("attn_concentration", "mass in the top 10% of positions\n(0.1 = uniform)"))
    fig, axes = plt.subplots(1, len(panels), figsize=(FULL, 2.3))
    used, missing = [], []
    styles = {"scratch": ":", "continuous": "-", "lora": "-."}
    for scenario in SCENARIO_COLOURS:
        att = [a for a in emp.attention_main(scenario) if a["kind"] == "poisoned"]
        if not att:
            missing.append(f"{scenario}: {EMP_COMMANDS[scenario]}")
            continue
        used += att
        for group, colour in (("unpoisoned", UNPOISONED), ("poisoned", POISONED)):
            sel = [a for a in att if a["group"] == group and num(a["n_prompts"]) > 0]
            for ax, (key, title) in zip(axes, panels):
                if not sel:
                    continue
                x, y, e, _ = _series(sel, key)
                ax.plot(x, y, ls=styles[scenario], marker="o", ms=3, color=colour, label=f"{group}, {scenario}")
                if np.any(e > 0):
                    ax.fill_between(x, y - e, y + e, color=colour, alpha=0.12, lw=0)
                ax.set_title(title)
                ax.set_xlabel("poisoned concepts $C_P$")
    legend(axes[0], fontsize=6)
    fig.tight_layout()
    files = save(fig, out, "fig10")
    caption = ("Cross-attention maps under poison (do the maps of unpoisoned concepts spread out?): per generated "
               "image, the concept's tokens' share of the attention the prompt's words receive (heads, layers, "
               "sampling steps and latent positions averaged, empirical.attention), the entropy of the "
               "concept-token map over latent positions normalised to [0, 1], and the mass in its top 10% of "
               "positions; mean over the concepts of each group; unpoisoned concepts blue, poisoned red; line "
               "style = scenario.")
    return Built(files, caption, _prov(emp, used), missing)


def fig11(src: Sources, out: Path) -> Built:
    """The AD-attribution poison detector: precision–recall curves against the known poisons."""
    emp = src.empirical()
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(FULL / 2, 3.2), layout="constrained")
    det = [r for r in emp.detection if r["pr"]]
    if not det:
        plt.close(fig)
        return Built([], "AD-attribution detector: precision–recall.", missing=[EMP_COMMANDS["defence"]])
    shades = {"dirty": ["#f1948a", "#e74c3c", "#922b21", "#641e16"],
              "nightshade": ["#c39bd3", "#8e44ad", "#5b2c6f", "#4a235a"]}
    used = []
    for ptype in ("dirty", "nightshade"):
        sel = sorted((r for r in det if r["poison_type"] == ptype and r["seed"] == min(d["seed"] for d in det)),
                     key=lambda r: int(r["c_p"]))
        for i, r in enumerate(sel):
            pr = read_csv(Path(r["pr"]))
            rec = [0.0] + [num(x["recall"]) for x in pr]
            prec = [1.0 if pr else 0.0] + [num(x["precision"]) for x in pr]
            colour = shades[ptype][min(i, 3)]
            name = "dirty-label" if ptype == "dirty" else "Nightshade-style"
            if ptype == "nightshade" and np.isfinite(num(r.get("poison_linf"))):
                name += f" (L∞ {num(r['poison_linf']):.2f})"  # the budget, when the table records it
            # curves at AP = 1 coincide along the top and right edges: a dash pattern each keeps them apart
            ax.plot(rec, prec, color=colour, lw=1.2, ls=("-", (0, (4, 2)), (0, (1, 1.2)), "-.")[min(i, 3)],
                    clip_on=False, zorder=3,
                    label=f"{name}, C_P={r['c_p']}: AP {num(r['detect_ap']):.2f} (base {num(r['detect_base_rate']):.2f})")
            ax.axhline(num(r["detect_base_rate"]), color=colour, ls=":", lw=0.7)
            used.append(r)
    ax.set_xlabel("recall (share of poison pairs flagged)")
    ax.set_ylabel("precision")
    ax.set_xlim(-0.01, 1.02)
    ax.set_ylim(0, 1.05)
    fig.legend(*ax.get_legend_handles_labels(), fontsize=5.5, loc="outside lower center", ncol=1, frameon=False,
               handlelength=2.5)
    files = save(fig, out, "fig11")
    caption = ("A poison detector from AD: rank the training pairs of a poisoned mix by their share of AD "
               "(theory.ad.pair_attribution on judge embeddings) and flag from the top. Precision–recall against the "
               "known poisons; dotted lines are each mix's poison fraction (a random ranking's precision). The "
               "dirty-label curves (AP 1.00) coincide along precision 1; their dash patterns tell them apart.")
    prov = [f"{_tag(emp)}: " + ", ".join(sorted({r['folder'] for r in used}))]
    return Built(files, caption, prov)
