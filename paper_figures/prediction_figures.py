"""F14 and T5: the simulator's pre-registered predictions (docs/predictions/) against the real model's runs.

A prediction folder (``python -m simulate.predict --out``) holds ``summary.csv`` (per p and C_P: predicted
unpoisoned accuracy, mean and 95% CI over simulator seeds) and ``prediction.json`` (K, m, calibration, target rule).
A measured point is a continuous-scenario run of the same K and m (the preset's renders per concept, or
``--benign-per-concept m``; dirty-label, the preset's poisoned steps, otherwise the preset's own setting, any base
seed), its poisoned rows and its same-volume controls, with the real target mode the prediction stands for:
predictions written before ``--targets`` existed (the volume curves) stand for the default ``poisoned`` mode, as
docs/predictions/README.md said; the target-rule predictions stand for ``all`` (random), ``nearest``, ``scatter``. The scoring
rule is the one fixed in docs/predictions/README.md before the runs: *point* hit when the measured mean lies in the
predicted band; *verdict* agreement on implosion (mean < 0.5, and below the control by more than the control's CI,
or by 0.1 with one seed).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from paper_figures.built import Built
from paper_figures.sources import Empirical, Sources, num, read_csv
from implosion_base.plotting import COLUMN, CONTROL, FULL, POISONED, pyplot, save
from simulate.phase import poison_volume
from simulate.predict import DEFAULT_GEOMETRY
from theory.poisoning import target_rule
from theory.stats import mean_ci95

PREDICTIONS = Path(__file__).resolve().parents[1] / "docs" / "predictions"
PREDICTIONS_NAME = "docs/predictions"  # what the figures' index says (no machine's path)
FEEDS = ("python -m empirical.run --preset cpu --scenario continuous --poisoned-concepts 0,100 --poison-per-concept P "
         "--seeds 0 --out results/emp-cpu-pP (P = 160, 240, 400)")


@dataclass(frozen=True)
class Prediction:
    """One prediction folder: its name, K, m, d, and summary rows keyed by (p, C_P)."""

    name: str
    n_concepts: int
    benign_per_concept: int
    dim: int
    geometry: str
    summary: dict[tuple[int, int], dict[str, float]]
    thresholds: dict[int, str]  # p -> predicted threshold C_P ("none" when not reached)
    real_targets: str = "poisoned"  # the empirical --targets mode it predicts
    real_variant: str = ""  # the setting difference of the runs it predicts ("" = the preset's own setting)
    real_scenario: str = "continuous"  # the empirical --scenario it predicts
    real_poison_type: str = "dirty"  # the empirical --poison-type it predicts

    def volume(self, p: int, c_p: int) -> float:
        """V = C_P p / (K m) of this prediction's setting."""
        return poison_volume(c_p, p, self.n_concepts, self.benign_per_concept)


def load_predictions(folder: Path = PREDICTIONS) -> list[Prediction]:
    """Every prediction folder under ``folder`` (sorted by name)."""
    out = []
    for sub in sorted(p for p in folder.glob("*") if (p / "prediction.json").is_file()):
        record = json.loads((sub / "prediction.json").read_text(encoding="utf-8"))
        setting, calibration = record["setting"], record["calibration"]
        rows = {(int(num(r["p"])), int(num(r["c_p"]))): {k: num(v) for k, v in r.items()}
                for r in read_csv(sub / "summary.csv")}
        marks = {int(num(r["p"])): r["threshold_c_p"] for r in read_csv(sub / "thresholds.csv")}
        real = setting.get("real_targets") or setting.get("targets", "poisoned")  # one vocabulary of target rules
        note = sub / "scoring.json"  # a correction of which runs it stands for, added later and said so there
        if note.is_file():
            real = json.loads(note.read_text(encoding="utf-8")).get("real_targets", real)
        real = target_rule(real, what=f"{sub.name}'s real targets")  # an old spelling ('all') read as today's
        out.append(Prediction(sub.name, int(setting["n_concepts"]), int(setting["benign_per_concept"]),
                              int(calibration["concept_config"]["dim"]), str(calibration["geometry_source"]), rows,
                              marks, real, setting.get("real_variant", ""),
                              setting.get("real_scenario", "continuous"), record.get("real_poison_type", "dirty")))
    return out


def measured(emp: Empirical, k: int, m: int, targets: str = "poisoned", measure: str = "unpoisoned_acc",
             variant: str = "", scenario: str = "continuous", poison_type: str = "dirty"
             ) -> dict[tuple[int, int], dict[str, list[float]]]:
    """Per (p, C_P): ``measure`` (unpoisoned accuracy) of the poisoned runs and of their controls, one per seed
    (and base seed), from the runs of ``scenario`` (at the preset's length for it) with ``poison_type`` poisons,
    K concepts, m benign pairs per concept and target mode ``targets``; with ``variant``, only runs of that
    setting difference (e.g. a smaller UNet), else the preset's own setting (or only m changed). The clean point
    (C_P = 0) is shared by every target mode."""
    out: dict[tuple[int, int], dict[str, list[float]]] = {}
    for r in measured_rows(emp, k, m, targets, variant, scenario, poison_type):
        key = (int(r["poison_per_concept"]), int(r["c_p"]))
        out.setdefault(key, {"poisoned": [], "control": []})[r["kind"]].append(num(r[measure]))
    return out


def measured_rows(emp: Empirical, k: int, m: int, targets: str = "poisoned", variant: str = "",
                  scenario: str = "continuous", poison_type: str = "dirty"):
    """The result rows :func:`measured` reads (its selection, in one place)."""
    from empirical.presets import get_preset

    for r in emp.rows:
        pre = get_preset(r["preset"])
        # a registered variant is the one difference it names (matched as at its registration: the run's first);
        # the preset's own setting admits a different m alone (m is checked below)
        same_setting = (r.get("first_variant", r["variant"]) == variant if variant else
                        not r["variant"] or r["variant"] == r.get("model_variant") and
                        r.get("variant_keys") == "benign_per_concept")
        length = pre.scratch.steps if scenario == "scratch" else pre.continued.steps
        if (not same_setting or r["scenario"] != scenario or (r["targets"] != targets and r["c_p"] != "0")
                or r["poison_type"] not in (poison_type, "none") or int(r["n_concepts"]) != k
                or int(r.get("benign_per_concept") or pre.render.per_concept) != m
                or int(r["steps"]) != length):
            continue
        yield r


def implodes(poisoned: list[float], controls: list[float]) -> bool:
    """The measured verdict fixed in docs/predictions/README.md before the runs: the never-poisoned concepts' mean
    accuracy over seeds is below 0.5 *and* below the mean of the same-volume controls by more than the controls'
    95% CI half-width (by 0.1 when there is one control). False without a control."""
    if not poisoned or not controls:
        return False
    acc = float(np.mean(poisoned))
    ctrl, ctrl_ci = mean_ci95(controls)
    margin = ctrl_ci if len(controls) > 1 else 0.1
    return bool(acc < 0.5 and np.isfinite(ctrl) and ctrl - acc > margin)


def score(pred: Prediction, meas: dict[tuple[int, int], dict[str, list[float]]]) -> list[dict[str, Any]]:
    """One row per measured (p, C_P > 0) that the prediction covers, scored by the rule of the module docstring."""
    rows = []
    for (p, c), got in sorted(meas.items()):
        if c == 0 or (p, c) not in pred.summary or not got["poisoned"]:
            continue
        s = pred.summary[(p, c)]
        lo, hi = s["unpoisoned_acc"] - s["unpoisoned_acc_ci95"], s["unpoisoned_acc"] + s["unpoisoned_acc_ci95"]
        acc, acc_ci = mean_ci95(got["poisoned"])
        ctrl, ctrl_ci = mean_ci95(got["control"]) if got["control"] else (float("nan"), float("nan"))
        measured_implodes = implodes(got["poisoned"], got["control"])
        rows.append({"prediction": pred.name, "p": p, "c_p": c, "volume": pred.volume(p, c),
                     "predicted": s["unpoisoned_acc"], "predicted_ci95": s["unpoisoned_acc_ci95"],
                     "measured": acc, "measured_ci95": acc_ci, "seeds": len(got["poisoned"]),
                     "control": ctrl, "control_ci95": ctrl_ci,
                     "point": "hit" if lo <= acc <= hi else ("miss, above" if acc > hi else "miss, below"),
                     "verdict": "agree" if (s["unpoisoned_acc"] < 0.5) == measured_implodes else "disagree",
                     "predicted_implosion": bool(s["unpoisoned_acc"] < 0.5), "measured_implosion": measured_implodes})
    return rows


def ordering_claim(emp: Empirical, p: int = 240, c_p: int = 100) -> str:
    """The pre-registered ordering claim at fixed volume (docs/predictions/README.md): the paired difference in
    unpoisoned accuracy scatter − all (same seed) is positive with a 95% CI above 0, while the two mixes' AD differ
    by less than 0.05. Returns one sentence: the measured difference and whether the claim held. ("all" is the
    registered claim's word for the target rule now spelled ``random``.)"""
    acc = {t: measured(emp, 150, 40, t).get((p, c_p), {}).get("poisoned", []) for t in ("random", "scatter")}
    rows = {t: {r["seed"]: r for r in emp.rows if r["scenario"] == "continuous" and r["targets"] == t
                and r["kind"] == "poisoned" and r["c_p"] == str(c_p) and r["poison_per_concept"] == str(p)
                and not r["variant"]} for t in ("random", "scatter")}
    seeds = sorted(set(rows["random"]) & set(rows["scatter"]))
    if not seeds or not all(acc.values()):
        return "Ordering claim (scatter − all at V = 4): not measured yet."
    gap = [num(rows["scatter"][s]["unpoisoned_acc"]) - num(rows["random"][s]["unpoisoned_acc"]) for s in seeds]
    dad = [num(rows["scatter"][s]["ad"]) - num(rows["random"][s]["ad"]) for s in seeds]
    m, ci = mean_ci95(gap)
    held = m - ci > 0 and len(seeds) > 1 and abs(float(np.mean(dad))) < 0.05
    return (f"Ordering claim (scatter − all, C_P = {c_p}, p = {p}, paired by seed, {len(seeds)} seeds): unpoisoned "
            f"accuracy {m:+.3f} ± {ci:.3f}, AD {float(np.mean(dad)):+.3f}: "
            + ("held." if held else "did not hold."))


def fig14(src: Sources, out: Path) -> Built:
    """Predicted unpoisoned accuracy bands over V per p, with the measured poisoned points and controls."""
    preds = load_predictions()
    emp = src.empirical()
    shown = [p for p in preds if p.real_targets == "poisoned" and not p.real_variant and p.n_concepts == 150]
    plt = pyplot()
    from matplotlib.lines import Line2D

    fig, axes = plt.subplots(1, max(1, len(shown)), figsize=(FULL, 2.6), squeeze=False, sharey=True,
                             layout="constrained")
    cmap = plt.get_cmap("plasma")
    ps = sorted({p for pred in shown for (p, _) in pred.summary})
    colour = {p: cmap(0.85 * i / max(1, len(ps) - 1)) for i, p in enumerate(ps)}
    found = 0
    for ax, pred in zip(axes[0], shown):
        meas = measured(emp, pred.n_concepts, pred.benign_per_concept, pred.real_targets,
                        scenario=pred.real_scenario, poison_type=pred.real_poison_type)
        for p in ps:
            cs = sorted(c for (q, c) in pred.summary if q == p)
            v = np.array([pred.volume(p, c) for c in cs])
            y = np.array([pred.summary[(p, c)]["unpoisoned_acc"] for c in cs])
            e = np.array([pred.summary[(p, c)]["unpoisoned_acc_ci95"] for c in cs])
            ax.plot(v, y, color=colour[p], lw=1, label=f"predicted, p = {p}")
            ax.fill_between(v, np.clip(y - e, 0, 1), np.clip(y + e, 0, 1), color=colour[p], alpha=0.15, lw=0)
            for c in cs:
                got = meas.get((p, c))  # the clean point (C_P = 0) is drawn too, at V = 0
                if not got:
                    continue
                x = pred.volume(p, c)
                for kind, face in (("poisoned", colour[p]), ("control", "white")):
                    if got[kind]:
                        mean, ci = mean_ci95(got[kind])
                        ax.errorbar([x], [mean], yerr=[ci], fmt="o", ms=4, mfc=face,
                                    mec=colour[p] if kind == "poisoned" else CONTROL, ecolor=colour[p], capsize=2)
                        found += 1
        ax.axhline(0.5, color="grey", lw=0.6, ls=":")
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(panel_title(pred), fontsize=7)
    axes[0][0].set_ylabel("unpoisoned accuracy")
    fig.supxlabel("poison volume V = C_P·p/(K·m)", fontsize=7)
    lines = [Line2D([], [], color=colour[p], lw=1.2, label=f"p = {p}") for p in ps]
    marks = [Line2D([], [], ls="", marker="o", color="0.3", ms=4, label="poisoned (measured)"),
             Line2D([], [], ls="", marker="o", mfc="white", mec=CONTROL, ms=4, label="control (measured)")]
    fig.legend(handles=lines + marks, loc="outside upper center", ncol=len(lines) + 2, frameon=False, fontsize=6,
               title="predicted (line, 95% band) per poison pairs per concept p; measured (markers, 95% CI)",
               title_fontsize=6, columnspacing=1.0, handlelength=1.5)
    files = save(fig, out, "fig14")
    missing = [] if found else [f"no measured point yet: {FEEDS}"]
    caption = ("The simulator's pre-registered predictions (docs/predictions/, 2026-11-30) against the real model: "
               "predicted unpoisoned accuracy (line, 95% band over simulator seeds) over poison volume V per p; "
               "measured poisoned runs (filled markers, 95% CI over seeds) and their same-volume controls (open). "
               "One panel per volume-curve prediction: calibrated to the clean model's geometry and accuracy "
               "(d = 11) at m = 40 and at m = 10 benign pairs per concept, and the uncalibrated default space "
               "(d = 64).")
    return Built(files, caption, [PREDICTIONS_NAME] + sorted({r["folder"] for r in emp.rows}), missing)


def panel_title(pred: Prediction) -> str:
    """A prediction panel's title in words: the scenario it predicts, m, and its geometry."""
    scenario = {"continuous": "full fine-tune", "scratch": "from scratch", "lora": "LoRA"}.get(
        pred.real_scenario, pred.real_scenario)
    if pred.real_scenario == "lora" and "lora" in pred.name and pred.name.split("lora", 1)[1][:1].isdigit():
        scenario += " rank " + "".join(ch for ch in pred.name.split("lora", 1)[1].split("-")[0] if ch.isdigit())
    geometry = "uncalibrated" if pred.geometry == DEFAULT_GEOMETRY else "calibrated"
    return f"{scenario}, m = {pred.benign_per_concept}\n{geometry} (d = {pred.dim})"


def tab5(src: Sources, out: Path) -> Built:
    """Predicted vs measured unpoisoned accuracy per measured (p, C_P), scored, and the thresholds."""
    from paper_figures.tables import _write

    emp = src.empirical()
    rows = []
    thresholds = []
    for pred in load_predictions():
        selection = {"targets": pred.real_targets, "variant": pred.real_variant, "scenario": pred.real_scenario,
                     "poison_type": pred.real_poison_type}
        scored = score(pred, measured(emp, pred.n_concepts, pred.benign_per_concept, **selection))
        data_sets: dict[tuple[int, int], set[str]] = {}
        for r in measured_rows(emp, pred.n_concepts, pred.benign_per_concept, **selection):
            data_sets.setdefault((int(r["poison_per_concept"]), int(r["c_p"])), set()).add(r.get("data_set", ""))
        for p in sorted({r["p"] for r in scored}):
            sel = [r for r in scored if r["p"] == p]
            first = next((r["c_p"] for r in sel if r["measured_implosion"]), None)
            t = pred.thresholds.get(p, "none")
            said = "none" if t == "none" else f"{num(t):.0f}"
            seen = str(first) if first is not None else f"none up to C_P = {max(r['c_p'] for r in sel)}"
            thresholds.append(f"{pred.name}, p = {p}: predicted {said}, measured {seen}")
        for r in scored:
            rows.append([r["prediction"], ", ".join(sorted(data_sets.get((r["p"], r["c_p"]), ()))), r["p"], r["c_p"], f"{r['volume']:.2f}",
                         f"{r['predicted']:.3f} ± {r['predicted_ci95']:.3f}",
                         f"{r['measured']:.3f}" + (f" ± {r['measured_ci95']:.3f}" if r["seeds"] > 1 else ""),
                         r["seeds"], "–" if not np.isfinite(r["control"]) else f"{r['control']:.3f}",
                         r["point"], r["verdict"]])
    header = ["prediction", "data set", "p", "C_P", "V", "predicted acc", "measured acc", "seeds", "control", "point",
              "implosion verdict"]
    files, text = _write(out, "tab5", header, rows)
    caption = ("Pre-registered predictions scored against the real model (rule fixed in docs/predictions/README.md "
               "before the runs): point = measured mean inside the predicted 95% band; verdict = both say implosion "
               "or both do not. Threshold C_P (first implosion): " + ("; ".join(thresholds) or "nothing measured")
               + ". " + ordering_claim(emp))
    return Built(files, caption, [PREDICTIONS_NAME], [] if rows else [f"no measured point yet: {FEEDS}"], text)


#: What feeds F15: the capacity runs at the decisive point (C_P = 100, p = 240, V = 4).
CAPACITY_FEEDS = ("python -m empirical.run --preset cpu --scenario lora --lora-rank R --poisoned-concepts 100 "
                  "--poison-per-concept 240 --seeds 0 --base-seed 0 --out results/emp-cpu-loraR-p240-b0 "
                  "(R = 1, 2, 4, 8, 16, 32, 64); the same with --scenario continuous [--unet-channels 32,64]")


def capacity_points(emp: Empirical, p: int = 240, c_p: int = 100, data_set: str = "emoji-openmoji+noto-150"
                    ) -> dict[str, dict[str, Any]]:
    """Per capacity setting at (p, C_P) on one data set: its runs' unpoisoned accuracy (poisoned and control) and
    attack success, each a list over seeds. Settings: ``lora r`` (the preset's rank 8, or ``lora.rank: 8 -> r``),
    ``full UNet`` (continuous, the preset's UNet) and ``small UNet`` (continuous, ``unet.channels`` changed)."""
    out: dict[str, dict[str, Any]] = {}
    for r in emp.rows:
        if (r["c_p"] != str(c_p) or r["poison_per_concept"] != str(p) or r["targets"] != "poisoned"
                or r["poison_type"] not in ("dirty", "none") or int(r["n_concepts"]) != 150
                or r.get("data_set") != data_set):
            continue
        variant = r["variant"]
        if r["scenario"] == "lora" and (not variant or variant.startswith("lora.rank")):
            rank = int(variant.rsplit("->", 1)[1]) if variant else 8
            key, order = f"LoRA\nrank {rank}", rank
        elif r["scenario"] == "continuous" and not variant:
            key, order = "full\nUNet\n4.2 M", 10_000
        elif r["scenario"] == "continuous" and variant.startswith("unet.channels"):
            key, order = "small\nUNet\n1.2 M", 5_000
        else:
            continue
        got = out.setdefault(key, {"order": order, "poisoned": [], "control": [], "attack": []})
        got[r["kind"]].append(num(r["unpoisoned_acc"]))
        if r["kind"] == "poisoned":
            got["attack"].append(num(r["attack_success"]))
    return dict(sorted(out.items(), key=lambda kv: kv[1]["order"]))


def fig15(src: Sources, out: Path) -> Built:
    """Unpoisoned accuracy and attack success at fixed volume V = 4 per capacity: LoRA ranks, the small and the
    full UNet, poisoned runs against their same-volume controls."""
    emp = src.empirical()
    pts = capacity_points(emp)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(COLUMN, 2.6), layout="constrained")
    for x, (name, got) in enumerate(pts.items()):
        for kind, face, colour, dx in (("poisoned", POISONED, POISONED, -0.12), ("control", "white", CONTROL, 0.12)):
            if not got[kind]:
                continue
            mean, ci = mean_ci95(got[kind])
            label = f"unpoisoned accuracy, {kind}" if x == 0 else None
            if len(got[kind]) >= 3:  # a t-interval; clipped to what an accuracy can be
                lo, hi = max(0.0, mean - ci), min(1.0, mean + ci)
                ax.errorbar([x + dx], [mean], yerr=[[mean - lo], [hi - mean]], fmt="o", ms=4, mfc=face, mec=colour,
                            ecolor=colour, capsize=2, label=label)
            else:  # two seeds give no useful interval: each seed shown, and their mean
                ax.plot([x + dx] * len(got[kind]), got[kind], "_", color=colour, ms=6, mew=1)
                ax.plot([x + dx], [mean], "o", ms=4, mfc=face, mec=colour, label=label)
        if got["attack"]:
            ax.plot([x], [float(np.mean(got["attack"]))], "x", color="black", ms=4,
                    label="attack success (poisoned, mean)" if x == 0 else None)
    ax.axhline(0.5, color="grey", lw=0.6, ls=":")
    ax.set_xticks(range(len(pts)), [f"{k}\nn = {len(v['poisoned'])}" for k, v in pts.items()], fontsize=5.5)
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("fraction of generated images")
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside upper center", ncol=2, fontsize=5.5, frameon=False, handletextpad=0.3,
               columnspacing=0.8,
               title="at V = 4 (C_P = 100, p = 240); n seeds: 95% CI when n ≥ 3, else each seed (–)",
               title_fontsize=5.5)
    files = save(fig, out, "fig15")
    caption = ("Capacity at fixed poison volume (V = 4): unpoisoned accuracy of the poisoned runs (filled; 95% CI "
               "over n ≥ 3 seeds, clipped to [0, 1]; with fewer each seed as a dash) and of their same-volume "
               "controls "
               "(open), and attack success (×), from LoRA rank 1 to "
               "the fully fine-tuned UNet. Pre-registered (docs/predictions/README.md): accuracy rises with "
               "capacity.")
    return Built(files, caption, sorted({r["folder"] for r in emp.rows}),
                 [] if pts else [f"no capacity run yet: {CAPACITY_FEEDS}"])
