"""T7: one implosion verdict per scenario and poison volume, from the real model's committed results.

For every measured point of the chosen preset (a regime — data set, scenario, setting difference, target rule,
poison type, poisoned-phase length — at a poison volume V = C_P·p/(K·m); results of two data sets never pool) the
table pairs each seed's poisoned run with its own same-volume control and reports the never-poisoned concepts'
accuracy, the paired gap (mean ± 95% t-interval over seeds, two-sided paired t-test), the kernel-distance (KID),
meaningless-rate and off-render-rate (:mod:`empirical.meaningless`; "–" for runs written before each) and
no-standout-rate gaps, the
attack success and the verdict. The verdict is the rule fixed in docs/predictions/README.md before the runs
(:func:`paper_figures.prediction_figures.implodes`: mean accuracy < 0.5 and below the control by more than the
control's CI, or by 0.1 with one seed), qualified by the issue's "with a competent clean model": the clean model
(C_P = 0) of the same base seeds must read at least ``COMPETENT`` of its concepts right, else the verdict says the
model was weak before any poison. A mean accuracy within one evaluation standard error of 0.5
(:func:`evaluation_se`) is "on the line": the verdict says so instead of calling it with certainty. The second table
gives each regime's verdict at V ≥ 3: the first V with implosion and the largest V without.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from paper_figures.built import Built
from paper_figures.prediction_figures import implodes
from paper_figures.sources import Empirical, Sources, num
from paper_figures.tables import PAIRING, _pair, _variant_name, fmt_ci, markdown_table, write_csv
from simulate.phase import poison_volume
from theory.stats import mean_ci95

#: Clean accuracy a base model needs before its implosion counts as one. The cpu preset's full UNets read
#: 0.90–0.93 of their concepts right when clean; 0.8 separates them from the under-capacity 1.2 M UNet (0.60).
COMPETENT = 0.8
#: "Where the simulator predicts implosion": the issue asks for a verdict at poison volumes of at least this.
LARGE_V = 3.0
FEEDS = ("the real-model runs of docs/empirical.md (python -m empirical.run --preset cpu ... --out "
         "docs/data/<experiment>), each poisoned point with its same-volume control")
REGIME = ("data_set", "scenario", "variant", "targets", "poison_type", "steps", "n_concepts")
POINT = ("poison_per_concept", "c_p", "benign_per_concept")


def regime_name(r: dict[str, Any]) -> str:
    """The regime of a poisoned row in words: T4's name (scenario, setting difference, target rule, poison type)
    without p, which is the volume's business here, and the poisoned phase's steps; the data set is a column of
    its own (:data:`REGIME`), so the fonts are not repeated here."""
    return _variant_name(r, int(r["poison_per_concept"]), data_set_column=True) + f", {r['steps']} steps"


def _base(r: dict[str, Any]) -> str:
    """The clean model a row descends from: its base seed (continuous, LoRA), or its own seed when it has none
    (scratch, whose clean model is the clean pretraining of that seed)."""
    b = r.get("base_seed")
    return f"base {b}" if b not in (None, "", "None") else f"seed {r['seed']}"


def _clean(emp: Empirical, r: dict[str, Any], bases: set[str]) -> list[float]:
    """Clean-model (C_P = 0) accuracies of the base models of a point, one per base model, always of the point's
    own data set: the same scenario and setting when measured, else the continuous clean model of those base seeds
    in the point's setting variant, else the preset's (what continued training and LoRA start from; not for a
    different UNet, which has its own clean model). A base model measured in several
    folders (every folder of a base seed evaluates the same clean pretraining) counts once, as the mean of its
    measurements, so that a well-measured base model does not outweigh the others."""
    def pick(scenario: str, variant: str) -> list[float]:
        by_base: dict[str, list[float]] = {}
        for c in emp.rows:
            if (c["c_p"] == "0" and c["preset"] == r["preset"] and c["scenario"] == scenario
                    and c["variant"] == variant and _base(c) in bases and c["n_concepts"] == r["n_concepts"]
                    and c.get("data_set") == r.get("data_set")):
                by_base.setdefault(_base(c), []).append(num(c["unpoisoned_acc"]))
        return [float(np.mean(v)) for _, v in sorted(by_base.items())]

    got = pick(r["scenario"], r["variant"])
    if not got and not r["variant"].startswith("unet."):
        got = pick("continuous", r["variant"]) or pick("continuous", "")
    return got


def _gap(poisoned: list[dict[str, Any]], controls: list[dict[str, Any]], column: str
         ) -> tuple[float, float, float, int]:
    """Mean, 95% CI half-width and two-sided paired t-test p of poisoned − own control in ``column`` (nan where
    undefined) and the number of seeds with both (:func:`empirical.report.paired_gaps`, ``gap_stats``)."""
    from empirical.report import gap_stats, paired_gaps

    return gap_stats([g[column] for g in paired_gaps([*poisoned, *controls], [column], pairing=PAIRING)])


def evaluation_se(rows: list[dict[str, Any]], concept_acc: dict[tuple, list[float]]) -> float:
    r"""The evaluation standard error of a point's mean unpoisoned accuracy over its S seeds, with the concept as
    the unit (the images of one concept are alike, so images are not independent readings): per seed,
    :math:`\mathrm{SE}_s = \operatorname{sd}_c(a_{sc})/\sqrt{n_s}` over its :math:`n_s` never-poisoned concepts'
    accuracies :math:`a_{sc}` (``per_concept.csv``, in ``concept_acc`` by :func:`_row_key`), or where the folder
    has no per-concept table its upper bound :math:`\sqrt{a_s(1-a_s)/n_s}` (values in [0, 1] with mean
    :math:`a_s` have at most that sd); :math:`\mathrm{SE} = \sqrt{\sum_s \mathrm{SE}_s^2}/S`. The noise of
    reading a finite set of concepts, not the spread between seeds."""
    var = 0.0
    for r in rows:
        got = concept_acc.get(_row_key(r))
        if got and len(got) > 1:
            var += float(np.var(got, ddof=1)) / len(got)
        else:
            a, n = num(r["unpoisoned_acc"]), num(r.get("n_unpoisoned"))
            if not np.isfinite(n):
                return float("nan")  # a row that does not say its number of concepts: no SE, no "on the line"
            var += a * (1 - a) / max(int(n), 1)
    return float(np.sqrt(var) / max(len(rows), 1))


def _row_key(r: dict[str, Any]) -> tuple:
    return (str(r["folder"]), *(str(r[k]) for k in ("seed", "scenario", "c_p", "kind", "poison_type",
                                                     "poison_per_concept", "targets", "steps")))


def unpoisoned_concept_accuracies(folders: set[str]) -> dict[tuple, list[float]]:
    """Per results row (:func:`_row_key`) of ``folders``: its never-poisoned concepts' accuracies from the folder's
    ``per_concept.csv`` (folders without one contribute nothing)."""
    from paper_figures.sources import read_csv

    out: dict[tuple, list[float]] = {}
    for folder in sorted(folders):
        path = Path(folder) / "per_concept.csv"
        if path.is_file():
            for c in read_csv(path):
                if c["poisoned"] == "0":
                    out.setdefault(_row_key({**c, "folder": folder}), []).append(num(c["acc"]))
    return out


def points(emp: Empirical) -> list[dict[str, Any]]:
    """One record per measured (regime, p, C_P, m) with C_P > 0 of the chosen preset, sorted by regime and V."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in emp.rows:
        if r["kind"] == "poisoned" and r["c_p"] != "0" and r["preset"] == emp.preset:
            groups.setdefault(tuple(str(r.get(k, "")) for k in REGIME + POINT), []).append(r)
    concept_acc = unpoisoned_concept_accuracies({str(r["folder"]) for rs in groups.values() for r in rs})
    out = []
    for key, rows in groups.items():
        first = rows[0]
        seeds = {_pair(r) for r in rows}
        ctrl_rows = [c for c in emp.rows if c["kind"] == "control" and c["preset"] == emp.preset
                     and _pair(c) in seeds
                     and all(str(c.get(k, "")) == v for k, v in zip(REGIME + POINT, key) if k != "poison_type")]
        m = int(num(first["benign_per_concept"]))  # filled in by Sources from the setting
        acc = [num(r["unpoisoned_acc"]) for r in rows]
        ctrl = [num(c["unpoisoned_acc"]) for c in ctrl_rows]
        clean = _clean(emp, first, {_base(r) for r in rows})
        implosion = implodes(acc, ctrl)
        clean_mean = float(np.mean(clean)) if clean else float("nan")
        se = evaluation_se(rows, concept_acc)
        line = f"on the line (0.5 within SE {se:.3f})" if abs(float(np.mean(acc)) - 0.5) <= se else ""
        if not implosion:
            verdict = "none" + (f", {line}" if line and ctrl else "")
        elif line:
            verdict = f"implosion, {line}"
        elif not clean:
            verdict = "implosion; clean model not in the data"
        elif clean_mean < COMPETENT:
            verdict = f"implosion; weak clean model ({clean_mean:.2f})"
        else:
            verdict = "implosion"
        out.append({"regime": regime_name(first), "data_set": first.get("data_set", ""),
                    "p": int(num(first["poison_per_concept"])),
                    "c_p": int(num(first["c_p"])), "m": m,
                    "volume": poison_volume(int(num(first["c_p"])), int(num(first["poison_per_concept"])),
                                            int(num(first["n_concepts"])), m),
                    "seeds": len(rows), "clean": clean_mean, "acc": mean_ci95(acc),
                    "control": mean_ci95(ctrl) if ctrl else (float("nan"), float("nan")),
                    "gap": _gap(rows, ctrl_rows, "unpoisoned_acc"), "kid": _gap(rows, ctrl_rows, "kid_unpoisoned"),
                    "meaningless": _gap(rows, ctrl_rows, "unpoisoned_meaningless"),
                    "off_render": _gap(rows, ctrl_rows, "unpoisoned_off_render"),
                    "no_standout": _gap(rows, ctrl_rows, "unpoisoned_no_standout"),
                    "attack": mean_ci95([num(r["attack_success"]) for r in rows]),
                    "implosion": implosion, "verdict": verdict, "evaluation_se": se,
                    "folders": sorted({Path(r["folder"]).name for r in rows})})
    return sorted(out, key=lambda d: (d["data_set"], d["regime"], d["volume"], d["p"]))


def scenario_verdicts(pts: list[dict[str, Any]], large: float = LARGE_V) -> list[dict[str, Any]]:
    """Per regime: the volumes measured (with their C_P, p and m where one V was measured at two), the first V whose
    verdict is implosion, the largest V without, and the verdict at V ≥ ``large`` ("reached at V = x",
    "not reached up to V = y", or "not measured at V ≥ large")."""
    out = []
    for data_set, regime in dict.fromkeys((p["data_set"], p["regime"]) for p in pts):
        sel = [p for p in pts if p["regime"] == regime and p["data_set"] == data_set]
        hit = [p["volume"] for p in sel if p["implosion"]]
        miss = [p["volume"] for p in sel if not p["implosion"]]
        big = [p for p in sel if p["volume"] >= large]
        big_hit = [p for p in big if p["implosion"]]
        if not big:
            verdict = f"not measured at V ≥ {large:g}"
        elif big_hit:
            first = min(big_hit, key=lambda p: p["volume"])
            verdict = f"reached at V = {first['volume']:.2f}" + first["verdict"][len("implosion"):]
        else:
            verdict = f"not reached up to V = {max(p['volume'] for p in big):.2f}"
        close = [f"{p['volume']:.2f}" for p in big if "on the line" in p["verdict"]]
        if close:
            verdict += f"; on the line at V = {', '.join(close)}"
        shared = {v for v in (round(p["volume"], 6) for p in sel) if sum(round(q["volume"], 6) == v for q in sel) > 1}

        def said(p: dict[str, Any]) -> str:  # a V measured at two (C_P, p, m) says which
            how = f" C_P {p['c_p']}, p {p['p']}, m {p['m']}:" if round(p["volume"], 6) in shared else ""
            return f"{p['volume']:.2f} ({how.lstrip()}{' ' if how else ''}{p['seeds']})"

        out.append({"regime": regime, "data_set": data_set, "volumes": ", ".join(said(p) for p in sel),
                    "first_implosion": f"{min(hit):.2f}" if hit else "none",
                    "largest_without": f"{max(miss):.2f}" if miss else "–", "verdict": verdict})
    return out


POINT_HEADER = ["data set", "regime", "p", "C_P", "m", "V", "seeds", "clean model", "unpoisoned acc", "control",
                "acc − control", "paired p", "KID − control", "meaningless − control", "off-render − control",
                "no-standout − control", "attack success", "verdict"]
SCENARIO_HEADER = ["data set", "regime", "V measured (seeds)", "first V with implosion", "largest V without",
                   f"verdict at V ≥ {LARGE_V:g}"]


def _point_row(p: dict[str, Any]) -> list[Any]:
    gm, gci, gp, _ = p["gap"]
    return [p["data_set"], p["regime"], p["p"], p["c_p"], p["m"], f"{p['volume']:.2f}", p["seeds"],
            "–" if not np.isfinite(p["clean"]) else f"{p['clean']:.3f}", fmt_ci(*p["acc"]), fmt_ci(*p["control"]),
            fmt_ci(gm, gci, sign=True), "–" if not np.isfinite(gp) else f"{gp:.3g}",
            fmt_ci(*p["kid"][:2], sign=True, digits=4), fmt_ci(*p["meaningless"][:2], sign=True),
            fmt_ci(*p["off_render"][:2], sign=True), fmt_ci(*p["no_standout"][:2], sign=True),
            fmt_ci(*p["attack"]), p["verdict"]]


def tab7(src: Sources, out: Path) -> Built:
    """The implosion verdict per measured point and per regime at V ≥ 3 (module docstring)."""
    emp = src.empirical()
    pts = points(emp)
    scen = scenario_verdicts(pts)
    point_rows = [_point_row(p) for p in pts]
    scen_rows = [[s["data_set"], s["regime"], s["volumes"], s["first_implosion"], s["largest_without"], s["verdict"]]
                 for s in scen]
    text = markdown_table(SCENARIO_HEADER, scen_rows) + "\n" + markdown_table(POINT_HEADER, point_rows)
    (out / "tab7.md").write_text(text, encoding="utf-8")
    write_csv(out / "tab7.csv", POINT_HEADER, point_rows)
    write_csv(out / "tab7-scenarios.csv", SCENARIO_HEADER, scen_rows)
    files = [out / "tab7.md", out / "tab7.csv", out / "tab7-scenarios.csv"]
    caption = (f"Implosion verdicts of the real model ({emp.preset or 'no'} preset), per data set (the fonts and the "
               f"number of concepts; empirical.data_set). Top: per regime, the volumes "
               f"measured (seeds), the first V = C_P·p/(K·m) at which the never-poisoned concepts imploded and the "
               f"verdict at V ≥ {LARGE_V:g}. Bottom: per point, the clean model of the same base seeds, the "
               f"poisoned runs and their same-volume controls (mean ± 95% CI over seeds), the gaps pairing each "
               f"seed with its own control (paired t-test), and the verdict: mean accuracy < 0.5 and below the "
               f"control by more than its CI (0.1 with one seed), with a clean model reading ≥ {COMPETENT:g}. The "
               f"meaningless rate (runs since 2026-12-07; – before) is calibrated on the clean renders and the "
               f"clean base model's own samples (T9, T12: it flags 0.02–0.05 of held-out clean samples and "
               f"0.11–0.12 of fine-tuned controls' images, so read it against the control); the off-render rate, "
               f"the rule "
               f"calibrated on clean renders alone (the meaningless rate of earlier runs), also flags a third or "
               f"more of the controls' images, which the judge reads right: its gap says the poisoned images are "
               f"farther from clean renders or read less surely, not how many are meaningless.")
    missing = [] if pts else [f"no poisoned point yet: {FEEDS}"]
    return Built(files, caption, sorted({f for p in pts for f in p["folders"]}), missing, text)
