"""The learnability predictor (simulate.learnability, ``python -m simulate.predict --calibration``) on calibration
folders whose truth is known: runs drawn from the model with chosen coefficients."""

from __future__ import annotations

import csv
import json
import math
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from implosion_base.calibration_files import CALIBRATION_COLUMNS
from implosion_base.errors import InputError
from simulate.learnability import Probe, choose_probe, fit, load_calibration, load_probes, predictions
from simulate.predict import main

TRUE = {"gamma": (0.02, 0.08, 0.0), "alpha": (0.02, 0.04, 0.1), "beta": 0.2}
PROBES = {"full": ("continuous", None, 0.6, 0.93), "lora8": ("lora", 8, 0.05, 0.90), "lora64": ("lora", 64, 0.3, 0.92),
          "small": ("continuous", None, 0.2, 0.60)}


def _truth(scenario: str, v: float, lam: float, a0: float) -> float:
    s = ("continuous", "lora", "scratch").index(scenario)
    return a0 * math.exp(-TRUE["gamma"][s] - v * (TRUE["alpha"][s] + TRUE["beta"] * (1 - lam)))


def _folder(tmp: Path, noise: float = 0.0, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    cal = tmp / "cal"
    for name, (scenario, rank, lam, comp) in PROBES.items():
        (cal / "probes" / name).mkdir(parents=True)
        channels = [32, 64] if name == "small" else [64, 128]
        (cal / "probes" / name / "probe.json").write_text(json.dumps(
            {"scenario": scenario, "lora_rank": rank, "unet_channels": channels, "data_set": "emoji-x-150",
             "learnability": lam, "competence": comp}))
    rows = []
    for name, (scenario, _, lam, comp) in PROBES.items():
        for v in (0.5, 1.33, 2.67, 4.0, 6.67):
            rows.append({"probe": name, "scenario": scenario, "volume": v,
                         "unpoisoned_acc": _truth(scenario, v, lam, comp) + noise * rng.normal()})
    for v in (1.33, 4.0):  # scratch: the full UNet's probe, its own clean model (C_P = 0 rows)
        rows.append({"probe": "full", "scenario": "scratch", "volume": v,
                     "unpoisoned_acc": _truth("scratch", v, 0.6, 0.91) + noise * rng.normal()})
    rows += [{"probe": "full", "scenario": "scratch", "volume": 0.0, "unpoisoned_acc": 0.91}]
    with open(cal / "calibration.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, CALIBRATION_COLUMNS)
        w.writeheader()
        for i, r in enumerate(rows):
            c_p = 0 if r["volume"] == 0 else 100
            w.writerow({"folder": f"run{i}", "seed": 0, "base_seed": 0, "data_set": "emoji-x-150", "c_p": c_p,
                        "p": 240, "m": 40, "k": 150, "control_acc": "nan", "attack_success": "nan", **r})
    return cal


def test_the_fit_recovers_the_model_it_was_drawn_from(tmp_path: Path):
    cal = _folder(tmp_path)
    fitted = fit(load_calibration(cal), load_probes(cal), "linear")
    assert np.allclose(fitted.coef, [*TRUE["gamma"], *TRUE["alpha"], TRUE["beta"]], atol=1e-9)
    assert fitted.half_width < 1e-6 and fitted.clean_scratch == {"emoji-x-150": 0.91}
    probes = load_probes(cal)
    got = predictions(fitted, probes["lora8"], "lora", 150, 40, 240, [25, 50, 100])
    assert [r["unpoisoned_acc"] for r in got] == pytest.approx(
        [_truth("lora", c * 240 / 6000, 0.05, 0.90) for c in (25, 50, 100)], abs=1e-9)
    # a model that learns the remappings loses less at the same volume than one that cannot
    learns = predictions(fitted, probes["full"], "continuous", 150, 40, 240, [100])[0]["unpoisoned_acc"]
    cannot = predictions(fitted, probes["small"], "continuous", 150, 40, 240, [100])[0]["unpoisoned_acc"]
    assert learns / 0.93 > cannot / 0.60


def test_the_interval_is_the_leave_one_out_error_and_narrow_when_the_runs_are(tmp_path: Path):
    cal = _folder(tmp_path, noise=0.03, seed=1)
    fitted = fit(load_calibration(cal), load_probes(cal), "linear")
    assert 0.02 < fitted.half_width < 0.15
    assert fitted.half_width == pytest.approx(np.quantile(np.abs(fitted.loo_errors), 0.9))
    r = predictions(fitted, load_probes(cal)["lora64"], "lora", 150, 40, 240, [100])[0]
    assert r["low"] == pytest.approx(max(0, r["unpoisoned_acc"] - fitted.half_width))
    assert r["high"] - r["low"] <= 2 * fitted.half_width + 1e-12


def test_the_command_answers_in_json_one_object_per_c_p_fast(tmp_path: Path, capsys):
    cal = _folder(tmp_path, noise=0.02)
    t0 = time.perf_counter()
    assert main(["--calibration", str(cal), "--scenario", "lora", "--lora-rank", "8", "--n-concepts", "150",
                 "--benign-per-concept", "40", "--poison-per-concept", "240", "--poisoned-concepts", "50,100",
                 "--form", "linear", "--json", "--out", str(tmp_path / "pred")]) == 0
    assert time.perf_counter() - t0 < 60
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["c_p"] for x in lines] == [50, 100]
    assert all(x["low"] <= x["unpoisoned_acc"] <= x["high"] and x["high"] - x["low"] <= 0.3 for x in lines)
    assert lines[1]["unpoisoned_acc"] < lines[0]["unpoisoned_acc"]
    doc = json.loads((tmp_path / "pred" / "prediction.json").read_text())
    assert doc["predictions"][1]["unpoisoned_acc"] == lines[1]["unpoisoned_acc"] and doc["git_commit"] is not None


LINEAR_FOLDER = "docs/predictions/2026-12-07-learnability"
GAUGED_FOLDER = "docs/predictions/2026-12-07-gauged"
RANK64_FOLDER = "docs/predictions/2026-12-07-gauged-rank64-scratch"
K100_FOLDER = "docs/predictions/2026-12-08-gauged-k100"
GAUGED = {"gamma": (0.05, 0.10), "a": 0.6, "eta": 2.5}
#: data set -> (gauge competence c_D, {probe: (scenario, rank, λ, a0)}); "emoji-z-150" is never in a calibration.
DATA_SETS = {"emoji-x-150": (0.85, {"full": ("continuous", None, 0.5, 0.85), "lora8": ("lora", 8, 0.1, 0.9),
                                    "lora64": ("lora", 64, 0.3, 0.91), "small": ("continuous", None, 0.2, 0.6)}),
             "emoji-y-150": (0.95, {"full": ("continuous", None, 0.6, 0.95), "lora8": ("lora", 8, 0.03, 0.97)}),
             "emoji-z-150": (0.90, {"full": ("continuous", None, 0.4, 0.90), "lora8": ("lora", 8, 0.2, 0.93)})}


def _gauged_truth(scenario: str, v: float, lam: float, a0: float, c_d: float) -> float:
    s = ("continuous", "lora").index(scenario)
    return a0 * math.exp(-(GAUGED["gamma"][s] + GAUGED["a"] * v * math.exp(-GAUGED["eta"] * lam))
                         / math.log(c_d / (1 - c_d)))


def _gauged_folder(tmp: Path) -> Path:
    """Probes of three data sets (their widest continuous probe is the gauge), runs of the first two drawn from
    the gauged form exactly."""
    cal = tmp / "gcal"
    rows = []
    for ds, (c_d, probes) in DATA_SETS.items():
        for name, (scenario, rank, lam, comp) in probes.items():
            folder = cal / "probes" / f"{ds}-{name}"
            folder.mkdir(parents=True)
            folder.joinpath("probe.json").write_text(json.dumps(
                {"scenario": scenario, "lora_rank": rank, "unet_channels": [32, 64] if name == "small" else [64, 128],
                 "data_set": ds, "learnability": lam, "competence": comp}))
            for v in (0.5, 1.33, 2.67, 4.0) if ds != "emoji-z-150" else ():
                rows.append({"folder": f"run{len(rows)}", "seed": 0, "base_seed": 0, "data_set": ds, "c_p": 100,
                             "p": 240, "m": 40, "k": 150, "control_acc": "nan", "attack_success": "nan",
                             "probe": f"{ds}-{name}", "scenario": scenario, "volume": v,
                             "unpoisoned_acc": _gauged_truth(scenario, v, lam, comp, c_d)})
    with open(cal / "calibration.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, CALIBRATION_COLUMNS)
        w.writeheader()
        w.writerows(rows)
    return cal


def test_the_gauged_form_recovers_its_model_and_carries_it_to_an_unseen_data_set(tmp_path: Path):
    cal = _gauged_folder(tmp_path)
    probes = load_probes(cal)
    fitted = fit(load_calibration(cal), probes, "gauged")
    assert fitted.eta == GAUGED["eta"] and fitted.half_width < 1e-9
    assert np.allclose(fitted.coef, [*GAUGED["gamma"], 0.0, GAUGED["a"]], atol=1e-9)  # no scratch run: γ = 0
    assert fitted.gauges["emoji-x-150"] == pytest.approx(math.log(0.85 / 0.15))  # the 64,128 probe, not small
    for ds in ("emoji-y-150", "emoji-z-150"):  # z: no calibration run, only its probes
        c_d, z_probes = DATA_SETS[ds]
        got = predictions(fitted, probes[f"{ds}-lora8"], "lora", 150, 40, 240, [25, 100])
        lam, comp = z_probes["lora8"][2:]
        assert [r["unpoisoned_acc"] for r in got] == pytest.approx(
            [_gauged_truth("lora", c * 0.04, lam, comp, c_d) for c in (25, 100)], abs=1e-9)
        assert got[0]["form"] == "gauged" and got[0]["gauge"] == pytest.approx(math.log(c_d / (1 - c_d)))
    # the same poison costs a data set rendered near-perfectly (larger clean logit) less
    same = Probe("q", "lora", 8, (64, 128), "emoji-y-150", 0.1, 0.9)
    assert fitted.predict("lora", 4.0, same, 0.9) > fitted.predict("lora", 4.0, replace(same, data_set="emoji-x-150"),
                                                                     0.9)


def test_a_prediction_is_an_accuracy_even_where_the_fitted_exponent_is_negative(tmp_path: Path):
    """A model whose fitted damage is negative at small V (γ < 0) is predicted at most 1, never above."""
    cal = _folder(tmp_path)
    fitted = fit(load_calibration(cal), load_probes(cal), "linear")
    gift = replace(fitted, coef=np.array([-0.5, -0.5, -0.5, 0.0, 0.0, 0.0, 0.0]))
    got = predictions(gift, load_probes(cal)["full"], "continuous", 150, 40, 240, [1])[0]
    assert 0.93 * math.exp(0.5) > 1 and got["unpoisoned_acc"] == 1.0 and got["high"] == 1.0


def test_the_gauged_form_refuses_a_data_set_without_its_gauge(tmp_path: Path):
    cal = _gauged_folder(tmp_path)
    fitted = fit(load_calibration(cal), load_probes(cal), "gauged")
    orphan = Probe("o", "lora", 8, (64, 128), "emoji-w-150", 0.1, 0.9)
    with pytest.raises(InputError, match="data set emoji-w-150 has no gauge probe"):
        predictions(fitted, orphan, "lora", 150, 40, 240, [100])
    with pytest.raises(InputError, match="unknown form 'cubic'"):
        fit(load_calibration(cal), load_probes(cal), "cubic")


@pytest.mark.parametrize("which, count", [("LINEAR", 15), ("GAUGED", 26)])
def test_each_registration_is_reproduced_from_its_committed_calibration_folder(which: str, count: int):
    """Each form refitted on its committed calibration folder gives the numbers registered (before any of their
    runs) in docs/predictions/2026-12-07-learnability, -gauged, -gauged-rank64-scratch and 2026-12-08-gauged-k100:
    the registrations are reproducible, and a calibration folder rewritten after its registration (its held-out
    runs added, say) fails here."""
    from paper_figures import learnability_figures

    reg = getattr(learnability_figures, which)
    cal = learnability_figures.ROOT / "docs" / "data" / reg.calibration
    probes = load_probes(cal)
    fitted = fit(load_calibration(cal), probes, reg.form)
    docs = sorted(path for folder in reg.folders for path in folder.glob("*/prediction.json"))
    assert len(docs) == count
    for path in docs:
        doc = json.loads(path.read_text(encoding="utf-8"))
        assert np.allclose(doc["coefficients"], fitted.coef, atol=1e-12) and doc.get("eta", 0.0) == fitted.eta
        for rec in doc["predictions"]:
            s = doc["setting"]
            again = predictions(fitted, probes[rec["probe"]], s["scenario"], s["n_concepts"], s["benign_per_concept"],
                                s["poison_per_concept"], [rec["c_p"]])[0]
            assert again["unpoisoned_acc"] == pytest.approx(rec["unpoisoned_acc"], abs=1e-12)
            assert again["low"] == pytest.approx(rec["low"], abs=1e-12)


def test_a_setting_without_its_probe_is_refused_by_name(tmp_path: Path):
    cal = _folder(tmp_path)
    probes = load_probes(cal)
    with pytest.raises(InputError, match="0 probes match lora rank 2"):
        choose_probe(probes, "lora", 2, None, None, None)
    with pytest.raises(InputError, match="2 probes match continuous .*full, small"):
        choose_probe(probes, "continuous", None, None, None, None)
    assert choose_probe(probes, "scratch", None, (64, 128), None, None).name == "full"
    with pytest.raises(InputError, match="no probe 'nope'"):
        choose_probe(probes, "lora", None, None, None, "nope")
    fitted = fit(load_calibration(cal), probes)
    other = probes["full"].__class__("o", "continuous", None, (64, 128), "emoji-y-150", 0.5, 0.9)
    with pytest.raises(InputError, match="clean scratch run of data set emoji-y-150"):
        predictions(fitted, other, "scratch", 150, 40, 240, [100])
    with pytest.raises(InputError, match="exceeds --n-concepts"):
        main(["--calibration", str(cal), "--scenario", "lora", "--n-concepts", "10", "--benign-per-concept", "4",
              "--poison-per-concept", "4", "--poisoned-concepts", "20"])


def test_registered_predictions_are_scored_against_their_setting_s_runs_only(tmp_path: Path):
    """paper_figures' scoring (T10): a registered LoRA rank-8 prediction at C_P = 100, p = 240 is matched to the
    committed rank-8 run of that point (measured 0.3467), not to the rank-16 run beside it; hit within ±0.10. A
    predictor registered in two folders (a later one adding settings) is scored over both, each folder's runs.csv
    saying its own settings' runs, and over each folder alone."""
    import shutil

    from paper_figures.learnability_figures import Registration, scored
    from paper_figures.sources import Sources

    root = Path(__file__).resolve().parents[1] / "docs" / "data"
    results = tmp_path / "results"
    for name in ("emp-cpu-lora8-p240-b0", "emp-cpu-lora16-p240-b0"):
        shutil.copytree(root / name, results / name)
    first, later = tmp_path / "registered", tmp_path / "registered-later"
    for folder, name, predicted, runs in ((first, "near", 0.40, 2), (later, "far", 0.60, 1)):
        (folder / name).mkdir(parents=True)
        (folder / name / "prediction.json").write_text(json.dumps({
            "setting": {"scenario": "lora", "lora_rank": 8, "unet_channels": None, "n_concepts": 150,
                        "benign_per_concept": 40, "poison_per_concept": 240},
            "predictions": [{"c_p": 100, "volume": 4.0, "unpoisoned_acc": predicted, "low": predicted - 0.1,
                             "high": predicted + 0.1, "data_set": "emoji-openmoji+noto-150",
                             "baseline_constant": 0.7, "baseline_v_alone": 0.5}]}))
        (folder / "runs.csv").write_text(f"setting,registered_runs,base_models\n{name},{runs},0\n")
    reg = Registration(str(first), "none", "t", "f", "linear", also=(str(later),))
    recs = {r["name"]: r for r in scored(Sources(results=results, data=tmp_path / "d", verbose=False), reg)}
    assert recs["near"]["runs"] == 1 and recs["near"]["measured"] == pytest.approx(0.3467)
    assert recs["near"]["partial"] and not recs["far"]["partial"]  # one of two registered runs measured
    assert recs["near"]["hit"] and not recs["far"]["hit"]
    assert [r["name"] for r in scored(Sources(results=results, data=tmp_path / "d", verbose=False),
                                      Registration(str(first), "none", "t", "f", "linear"))] == ["near"]
    from paper_figures.learnability_figures import score_rows
    scores = {(r[0], r[1]): r[2:] for r in score_rows(list(recs.values()))}
    assert scores[("all measured", "learnability")] == ["1 of 2", f"{(abs(0.3467 - 0.4) + abs(0.3467 - 0.6)) / 2:.3f}"]
    assert scores[("registered in registered", "learnability")] == ["1 of 1", f"{abs(0.3467 - 0.4):.3f}"]
    assert scores[("registered in registered-later", "learnability")] == ["0 of 1", f"{abs(0.3467 - 0.6):.3f}"]
    assert ("emoji-openmoji+noto-150", "learnability") not in scores  # one data set: no per-data-set scope
    assert recs["far"]["errors"]["constant"] == pytest.approx(0.3467 - 0.7)
    assert not np.isfinite(recs["far"]["errors"]["attack-success line"])  # no calibration table here


@pytest.mark.parametrize("folder, count", [(LINEAR_FOLDER, 15), (GAUGED_FOLDER, 12), (RANK64_FOLDER, 2),
                                           (K100_FOLDER, 12)])
def test_the_registered_run_counts_are_the_registration_s(folder: str, count: int):
    """runs.csv (read by T10/T11 to mark partial settings) says what each registration's README fixed, row by row
    (its table's eighth column: two base models or one)."""
    from paper_figures.learnability_figures import ROOT, registered_runs

    path = ROOT / folder
    fixed = {}
    for line in (path / "README.md").read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("| `") and len(cells) >= 12:  # the settings table (a probes table may precede it)
            fixed[cells[0].strip("`")] = 2 if "0 and 1" in cells[7] else 1
    assert len(fixed) == count and registered_runs(path) == fixed
    assert set(fixed) == {p.parent.name for p in path.glob("*/prediction.json")}
