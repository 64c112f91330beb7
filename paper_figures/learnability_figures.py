"""T10/F17 and T11/F18: the learnability predictor's registered predictions scored on held-out settings.

Two predictors (:data:`LINEAR`: the linear form, calibrated on docs/data/learnability; :data:`GAUGED`: the
gauged form, calibrated on docs/data/learnability-gauged, registered in two folders; :mod:`simulate.learnability`),
each scored the same way.
Each registered prediction (``docs/predictions/<registration>/<setting>/prediction.json``, written by
``python -m simulate.predict --calibration <folder> ... --out`` before any run of its setting) is
matched to the measured runs of that setting: the same scenario, LoRA rank, UNet channels and data set, K, m, p
and C_P, dirty-label poisons with targets among the poisoned concepts, at the preset's poisoned-phase length.
Scoring, fixed with the registration: the measured value is the mean unpoisoned accuracy over the setting's
poisoned runs (all its seeds and base models); a **hit** is |measured − predicted| ≤ 0.10. Baselines scored the
same way: the constant and the function of V alone registered with each prediction (fitted on the calibration
runs), and the post-hoc attack-success line (acc = a + b · attack success, least squares over the calibration
runs, applied to the held-out runs' *measured* attack success: a fit that needs the run, not a prediction).
A setting measured on fewer runs than registered (``runs.csv`` there, the registration's "runs" column read by
machine) is scored all the same and marked *partial*; the summary says how many settings are complete.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from paper_figures.built import Built
from paper_figures.sources import Empirical, Sources, num

HIT = 0.10
ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Registration:
    """One predictor's registrations: its folder (relative to the repository: what the figures' index says) and
    any later ones that add settings with the same calibration and form (``also``: each committed before its own
    runs), the calibration folder under the results its predictor was fitted on, the keys of its table and figure,
    and the predictor's form (simulate.learnability)."""

    name: str
    calibration: str
    table: str
    figure: str
    form: str
    also: tuple[str, ...] = ()

    @property
    def folder(self) -> Path:
        return ROOT / self.name

    @property
    def registrations(self) -> tuple[str, ...]:
        """Every registration folder of this predictor (relative to the repository), the first first."""
        return (self.name, *self.also)

    @property
    def folders(self) -> list[Path]:
        return [ROOT / n for n in self.registrations]

    @property
    def feeds(self) -> str:
        return (f"the held-out runs of {' and '.join(f'{n}/README.md' for n in self.registrations)} "
                f"(python -m empirical.run ... --out results/<setting>), each with its control")


LINEAR = Registration("docs/predictions/2026-12-07-learnability", "learnability", "tab10", "fig17", "linear")
GAUGED = Registration("docs/predictions/2026-12-07-gauged", "learnability-gauged", "tab11", "fig18", "gauged",
                      also=("docs/predictions/2026-12-07-gauged-rank64-scratch",
                            "docs/predictions/2026-12-08-gauged-k100"))


def registered_runs(folder: Path = LINEAR.folder) -> dict[str, int]:
    """The number of poisoned runs registered per setting (``runs.csv``; empty when the folder has none)."""
    path = folder / "runs.csv"
    if not path.is_file():
        return {}
    with open(path, newline="", encoding="utf-8") as fh:
        return {r["setting"]: int(r["registered_runs"]) for r in csv.DictReader(fh)}


def registered(folder: Path = LINEAR.folder) -> list[dict[str, Any]]:
    """Every registered prediction record, one per (setting, C_P): the setting, the predicted numbers and the
    number of runs registered (None when not said)."""
    out = []
    runs = registered_runs(folder)
    for path in sorted(folder.glob("*/prediction.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        s = doc["setting"]
        for p in doc["predictions"]:
            out.append({"name": path.parent.name, "registration": folder.name,
                        "registered_runs": runs.get(path.parent.name),
                        "scenario": s["scenario"], "lora_rank": s.get("lora_rank"),
                        "unet_channels": s.get("unet_channels"), "data_set": p.get("data_set") or s.get("data_set"),
                        "k": s["n_concepts"], "m": s["benign_per_concept"], "p": s["poison_per_concept"], **p})
    return out


def _model(folder: str, cache: dict[str, dict]) -> dict:
    """(lora rank, UNet channels, m) of a run folder, from its manifest's setting."""
    if folder not in cache:
        setting = json.loads((Path(folder) / "manifest.json").read_text(encoding="utf-8"))["setting"]
        cache[folder] = {"lora_rank": setting["lora"]["rank"], "unet_channels": list(setting["unet"]["channels"]),
                         "m": setting.get("benign_per_concept") or setting["render"]["per_concept"]}
    return cache[folder]


def measured_rows(emp: Empirical, pred: dict[str, Any]) -> tuple[list[dict], list[dict]]:
    """(poisoned rows, control rows) of the registered setting ``pred`` (module docstring)."""
    from empirical.presets import get_preset

    cache: dict[str, dict] = {}
    found: tuple[list[dict], list[dict]] = ([], [])
    for r in emp.rows:
        if (r["scenario"] != pred["scenario"] or r["data_set"] != pred["data_set"] or r["targets"] != "poisoned"
                or r["poison_type"] not in ("dirty", "none") or int(r["c_p"]) != pred["c_p"]
                or int(r["poison_per_concept"]) != pred["p"] or int(r["n_concepts"]) != pred["k"]):
            continue
        pre = get_preset(r["preset"])
        if int(r["steps"]) != (pre.scratch if r["scenario"] == "scratch" else pre.continued).steps:
            continue
        model = _model(r["folder"], cache)
        if (model["m"] != pred["m"] or (pred["scenario"] == "lora" and model["lora_rank"] != pred["lora_rank"])
                or (pred["unet_channels"] and model["unet_channels"] != list(pred["unet_channels"]))):
            continue
        found[r["kind"] == "control"].append(r)
    return found


def calibration_rows(calibration: Path) -> list[dict[str, str]]:
    """The calibration runs (:func:`simulate.learnability.load_calibration`); none when the folder has no
    ``calibration.csv``."""
    from implosion_base.calibration_files import CALIBRATION_FILE
    from simulate.learnability import load_calibration

    return load_calibration(calibration) if (calibration / CALIBRATION_FILE).is_file() else []


def calibration_data_sets(calibration: Path) -> set[str]:
    """The data sets of the calibration runs (empty without them)."""
    return {r["data_set"] for r in calibration_rows(calibration)}


def attack_line(calibration: Path) -> tuple[float, float] | None:
    """(a, b) of acc = a + b · attack success over the calibration runs' poisoned rows (None without them)."""
    rows = [r for r in calibration_rows(calibration) if int(r["c_p"]) > 0 and np.isfinite(num(r["attack_success"]))]
    if len(rows) < 3:
        return None
    b, a = np.polyfit([num(r["attack_success"]) for r in rows], [num(r["unpoisoned_acc"]) for r in rows], 1)
    return float(a), float(b)


def scored(src: Sources, reg: Registration = LINEAR) -> list[dict[str, Any]]:
    """One record per registered (setting, C_P) of every folder of ``reg`` with measured runs: prediction,
    measurement, errors (the attack-success line fitted on its calibration folder under the results)."""
    emp = src.empirical()
    line = attack_line(src.results / reg.calibration)
    out = []
    for pred in (p for folder in reg.folders for p in registered(folder)):
        poisoned, controls = measured_rows(emp, pred)
        if not poisoned:
            continue
        acc = float(np.mean([num(r["unpoisoned_acc"]) for r in poisoned]))
        attack = float(np.mean([num(r["attack_success"]) for r in poisoned]))
        posthoc = line[0] + line[1] * attack if line else float("nan")
        out.append({**pred, "measured": acc, "runs": len(poisoned), "attack": attack,
                    "partial": pred["registered_runs"] is not None and len(poisoned) < pred["registered_runs"],
                    "control": float(np.mean([num(r["unpoisoned_acc"]) for r in controls])) if controls else np.nan,
                    "error": acc - pred["unpoisoned_acc"], "hit": abs(acc - pred["unpoisoned_acc"]) <= HIT,
                    "inside": pred["low"] <= acc <= pred["high"],
                    "errors": {"learnability": acc - pred["unpoisoned_acc"],
                               "constant": acc - pred["baseline_constant"],
                               "V alone": acc - pred["baseline_v_alone"], "attack-success line": acc - posthoc}})
    return out


PREDICTORS = ("learnability", "constant", "V alone", "attack-success line")
SCORE_HEADER = ["settings", "predictor", "within ±0.10", "mean absolute error"]
SETTING_HEADER = ["setting", "data set", "C_P", "V", "predicted [90 % interval]", "measured (runs of registered)",
                  "control", "error", "±0.10"]


def score_rows(recs: list[dict[str, Any]]) -> list[list[str]]:
    """Per scope (all measured settings, then each registration folder and each data set when there are several)
    and per predictor: how many settings fall within ±HIT and the mean |error|."""
    scopes = [("all measured", recs)]
    registrations = list(dict.fromkeys(r.get("registration") for r in recs))  # in the order registered
    data_sets = sorted({r["data_set"] for r in recs})
    for label, field, values in (("registered in {}", "registration", registrations), ("{}", "data_set", data_sets)):
        if len(values) > 1:
            scopes += [(label.format(v), [r for r in recs if r.get(field) == v]) for v in values]
    out = []
    for scope, sel in scopes:
        for name in PREDICTORS:
            err = np.array([r["errors"][name] for r in sel if np.isfinite(r["errors"][name])])
            if len(err):
                out.append([scope, name, f"{int(np.sum(np.abs(err) <= HIT))} of {len(err)}",
                            f"{np.mean(np.abs(err)):.3f}"])
    return out


def score_table(reg: Registration, src: Sources, out: Path) -> Built:
    """The registered predictions scored: the hit rates and mean errors of the predictor and the baselines (over
    all measured settings and per data set), then each held-out setting."""
    from paper_figures.tables import markdown_table, write_csv

    recs = scored(src, reg)
    key = reg.table

    def runs(r: dict) -> str:
        return f"{r['runs']} of {r['registered_runs']}" if r["registered_runs"] is not None else str(r["runs"])

    rows = [[r["name"], r["data_set"], r["c_p"], f"{r['volume']:.2f}",
             f"{r['unpoisoned_acc']:.3f} [{r['low']:.3f}, {r['high']:.3f}]", f"{r['measured']:.3f} ({runs(r)})",
             "–" if not np.isfinite(r["control"]) else f"{r['control']:.3f}", f"{r['error']:+.3f}",
             ("hit" if r["hit"] else "miss") + (" (partial)" if r["partial"] else "")] for r in recs]
    scores = score_rows(recs)
    md = markdown_table(SCORE_HEADER, scores) + "\n" + markdown_table(SETTING_HEADER, rows)
    (out / f"{key}.md").write_text(md, encoding="utf-8")
    write_csv(out / f"{key}.csv", SETTING_HEADER, rows)
    write_csv(out / f"{key}-scores.csv", SCORE_HEADER, scores)
    files = [out / f"{key}.md", out / f"{key}.csv", out / f"{key}-scores.csv"]
    complete = sum(not r["partial"] for r in recs)
    total = sum(len(registered(f)) for f in reg.folders)
    caption = (f"The learnability predictor ({reg.form} form) on held-out settings, registered before their "
               f"runs ({' and '.join(reg.registrations)}): {len(recs)} of {total} registered settings measured, "
               f"{complete} with all their registered runs. Top: per predictor (the learnability predictor; the "
               "registered constant and V-alone baselines; the post-hoc attack-success line), how many settings are "
               f"within ±{HIT:g} and the mean absolute error, over all measured settings and per data set. Bottom: "
               "each setting (partial: fewer runs than registered).")
    return Built(files, caption, list(reg.registrations), [] if rows else [f"no held-out run yet: {reg.feeds}"], md)


def scatter(reg: Registration, src: Sources, out: Path) -> Built:
    """Predicted vs measured unpoisoned accuracy on every measured held-out setting, by scenario, with the
    ±0.10 band."""
    from implosion_base.plotting import COLUMN, pyplot, save

    recs = scored(src, reg)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(COLUMN, 3.0), layout="constrained")
    ax.fill_between([0, 1], [-HIT, 1 - HIT], [HIT, 1 + HIT], color="0.9", lw=0, label=f"±{HIT:g}")
    ax.plot([0, 1], [0, 1], color="0.4", lw=0.8)
    markers = {"continuous": "o", "lora": "s", "scratch": "^"}
    calibrated = calibration_data_sets(src.results / reg.calibration)
    for i, (scenario, marker) in enumerate(markers.items()):
        colour = f"C{i}"
        for seen in (True, False):
            sel = [r for r in recs if r["scenario"] == scenario and (r["data_set"] in calibrated) == seen]
            if sel:
                ax.errorbar([r["unpoisoned_acc"] for r in sel], [r["measured"] for r in sel],
                            xerr=[[r["unpoisoned_acc"] - r["low"] for r in sel],
                                  [r["high"] - r["unpoisoned_acc"] for r in sel]],
                            fmt=marker, ms=4, capsize=2, lw=0.8, color=colour, mfc=colour if seen else "white",
                            label=scenario if seen else f"{scenario}, unseen data set")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="predicted unpoisoned accuracy", ylabel="measured")
    ax.legend(fontsize=6, loc="lower right", frameon=False)  # the diagonal leaves that corner empty
    files = save(fig, out, reg.figure)
    caption = (f"The learnability predictor's ({reg.form} form) registered predictions (90 % interval) against "
               "the measured held-out "
               f"settings, by scenario (hollow: a data set none of its calibration runs used); grey: within "
               f"±{HIT:g}.")
    return Built(files, caption, list(reg.registrations), [] if recs else [f"no held-out run yet: {reg.feeds}"])


def tab10(src: Sources, out: Path) -> Built:
    """T10: :func:`score_table` of the linear form's registration."""
    return score_table(LINEAR, src, out)


def fig17(src: Sources, out: Path) -> Built:
    """F17: :func:`scatter` of the linear form's registration."""
    return scatter(LINEAR, src, out)


def tab11(src: Sources, out: Path) -> Built:
    """T11: :func:`score_table` of the gauged form's registration."""
    return score_table(GAUGED, src, out)


def fig18(src: Sources, out: Path) -> Built:
    """F18: :func:`scatter` of the gauged form's registration."""
    return scatter(GAUGED, src, out)
