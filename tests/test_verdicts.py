"""T7, the implosion verdicts: the pre-registered rule, the clean model's competence, pairing, the V ≥ 3 summary."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from paper_figures.prediction_figures import implodes
from paper_figures.sources import Empirical, Sources
from paper_figures.verdicts import points, scenario_verdicts, tab7
from simulate.phase import poison_volume

BASE = {"preset": "cpu", "scenario": "continuous", "targets": "poisoned", "steps": "500", "variant": "",
        "poison_per_concept": "240", "poison_type": "dirty", "n_concepts": "150", "benign_per_concept": "40",
        "c_p": "100", "attack_success": "0.5", "unpoisoned_meaningless": "0.01", "kid_unpoisoned": "0.001",
        "folder": "f"}


def row(kind: str, seed: int, acc: float, **kw) -> dict[str, str]:
    r = dict(BASE, kind=kind, seed=str(seed), base_seed=str(seed), unpoisoned_acc=str(acc))
    r.update(kw)
    if kind == "control" or r["c_p"] == "0":
        r["poison_type"] = "none"
    return r


def clean(seed: int, acc: float, **kw) -> dict[str, str]:
    return row("poisoned", seed, acc, c_p="0", **kw)


def test_rule_is_below_half_and_beyond_the_controls_ci():
    assert implodes([0.3, 0.35, 0.4], [0.9, 0.92, 0.88])
    assert not implodes([0.55, 0.6], [0.9, 0.9])  # above 0.5
    assert not implodes([0.45, 0.45], [0.5, 0.52])  # below 0.5 but within the control's reach
    assert implodes([0.45], [0.56]) and not implodes([0.45], [0.54])  # one seed: beyond by 0.1
    assert not implodes([0.2], [])  # no control, no verdict


def test_points_pair_each_seed_with_its_own_control_and_test_the_gaps():
    acc, ctrl = {0: 0.30, 1: 0.40, 2: 0.35}, {0: 0.90, 1: 0.92, 2: 0.85}
    rows = [row("poisoned", s, a) for s, a in acc.items()] + [row("control", s, a) for s, a in ctrl.items()]
    rows += [clean(s, 0.93) for s in acc] + [row("control", 7, 0.10)]  # a control of another seed: never paired
    (pt,) = points(Empirical(rows=rows))
    gaps = [acc[s] - ctrl[s] for s in acc]
    assert pt["gap"][0] == pytest.approx(np.mean(gaps))
    assert pt["gap"][2] == pytest.approx(stats.ttest_1samp(gaps, 0).pvalue)
    assert pt["control"][0] == pytest.approx(np.mean(list(ctrl.values())))
    assert pt["volume"] == pytest.approx(poison_volume(100, 240, 150, 40)) == pytest.approx(4.0)
    assert pt["clean"] == pytest.approx(0.93) and pt["verdict"] == "implosion"


def test_a_weak_clean_model_qualifies_the_verdict_and_lora_borrows_its_base():
    rows = [row("poisoned", 0, 0.24, variant="unet.channels: [64, 128] -> [32, 64]"),
            row("control", 0, 0.51, variant="unet.channels: [64, 128] -> [32, 64]"),
            clean(0, 0.60, variant="unet.channels: [64, 128] -> [32, 64]"),
            row("poisoned", 0, 0.35, scenario="lora"), row("control", 0, 0.90, scenario="lora"),
            clean(0, 0.93)]  # the continuous clean model: LoRA's base, not the small UNet's
    got = {p["regime"].split(",")[0] + (" small" if "unet" in p["regime"] else ""): p
           for p in points(Empirical(rows=rows))}
    assert got["continuous small"]["verdict"] == "implosion; weak clean model (0.60)"
    (small,) = scenario_verdicts([got["continuous small"]])
    assert small["verdict"] == "reached at V = 4.00; weak clean model (0.60)"
    assert got["lora"]["clean"] == pytest.approx(0.93) and got["lora"]["verdict"] == "implosion"


def test_the_clean_model_is_of_the_point_s_own_data_set():
    """A one-font LoRA point is never credited with the two-font clean model: its own data set's continuous clean
    model when measured, else none (the verdict says so)."""
    one = dict(data_set="emoji-openmoji-150")  # the same variant as the two-font clean model: only the data set differs
    rows = [row("poisoned", 0, 0.35, scenario="lora", **one), row("control", 0, 0.95, scenario="lora", **one),
            clean(0, 0.93, data_set="emoji-openmoji+noto-150")]
    (pt,) = points(Empirical(rows=rows))
    assert np.isnan(pt["clean"]) and pt["verdict"] == "implosion; clean model not in the data"
    (pt,) = points(Empirical(rows=[*rows, clean(0, 0.98, **one)]))
    assert pt["clean"] == pytest.approx(0.98) and pt["verdict"] == "implosion"


def test_scratch_clean_models_are_matched_by_seed():
    rows = [row("poisoned", s, 0.4, scenario="scratch", steps="3000", base_seed="None") for s in (0, 1)]
    rows += [row("control", s, 0.7, scenario="scratch", steps="3000", base_seed="None") for s in (0, 1)]
    rows += [clean(0, 0.92, scenario="scratch", steps="3000", base_seed="None"),
             clean(5, 0.10, scenario="scratch", steps="3000", base_seed="None")]  # another seed's clean model
    (pt,) = points(Empirical(rows=rows))
    assert pt["clean"] == pytest.approx(0.92) and pt["verdict"] == "implosion"


def test_a_base_model_measured_in_several_folders_counts_once():
    # base model 0 evaluated in three folders (0.90 each), base model 1 once (0.80): the clean column is the
    # mean over base models, 0.85, not the mean over rows, 0.875
    rows = [row("poisoned", s, 0.3) for s in (0, 1)] + [row("control", s, 0.9) for s in (0, 1)]
    rows += [clean(0, 0.90, folder=f) for f in ("a", "b", "c")] + [clean(1, 0.80)]
    (pt,) = points(Empirical(rows=rows))
    assert pt["clean"] == pytest.approx(0.85)


def test_scenario_verdict_names_the_first_large_volume_that_implodes(tmp_path):
    rows = []
    for p, acc in ((80, 0.80), (160, 0.52), (240, 0.35), (400, 0.18)):
        rows += [row("poisoned", 0, acc, scenario="lora", poison_per_concept=str(p)),
                 row("control", 0, 0.92, scenario="lora", poison_per_concept=str(p))]
    rows += [row("poisoned", 0, 0.55), row("control", 0, 0.9), clean(0, 0.93)]
    pts = points(Empirical(rows=rows))
    by = {s["regime"]: s for s in scenario_verdicts(pts)}
    assert by["lora, 500 steps"]["verdict"] == "reached at V = 4.00"
    assert by["lora, 500 steps"]["largest_without"] == "2.67"
    assert by["continuous, 500 steps"]["verdict"] == "not reached up to V = 4.00"
    small = [p for p in pts if p["volume"] < 3]
    assert scenario_verdicts(small)[0]["verdict"] == "not measured at V ≥ 3"
    src = Sources(results=tmp_path / "r", data=tmp_path / "d", quick=False, verbose=False)
    src._emp = Empirical(rows=rows)
    built = tab7(src, tmp_path)
    table = list(csv.DictReader(open(tmp_path / "tab7.csv")))
    assert len(table) == 5 and not built.missing
    assert [r["verdict"] for r in table if r["regime"] == "lora, 500 steps"] == ["none", "none", "implosion",
                                                                                  "implosion"]
    assert Path(tmp_path / "tab7-scenarios.csv").is_file() and "reached at V = 4.00" in built.markdown
    assert by["lora, 500 steps"]["volumes"] == "1.33 (1), 2.67 (1), 4.00 (1), 6.67 (1)"  # one V each: no C_P, p


def test_two_points_at_one_volume_are_told_apart_in_the_regime_s_volumes():
    rows = []
    for c_p, p, acc in (("50", "240", 0.77), ("100", "120", 0.67)):
        rows += [row("poisoned", 0, acc, c_p=c_p, poison_per_concept=p),
                 row("control", 0, 0.9, c_p=c_p, poison_per_concept=p)]
    rows += [row("poisoned", 0, 0.4), row("control", 0, 0.9)]
    (got,) = scenario_verdicts(points(Empirical(rows=rows)))
    assert got["volumes"] == "2.00 (C_P 100, p 120, m 40: 1), 2.00 (C_P 50, p 240, m 40: 1), 4.00 (1)"


def test_a_poisoned_row_is_paired_with_its_own_folders_control_before_a_borrowed_one():
    """Two folders hold a control for seed 0 (each run draws its control's extra pairs from its own stream): each
    folder's poisoned rows are measured against their own; a folder without a control borrows one."""
    from paper_figures.tables import _controls

    a = [row("poisoned", 0, 0.70, folder="a"), row("control", 0, 0.90, folder="a")]
    b = [row("poisoned", 0, 0.60, folder="b", targets="all"), row("control", 0, 0.80, folder="b", targets="all")]
    c = [row("poisoned", 0, 0.50, folder="c", targets="nearest")]
    for order in (a + b + c, b + a + c, c + b + a):
        emp = Empirical(rows=order)
        assert [x["folder"] for x in _controls([a[0]], emp)] == ["a"]
        assert [x["folder"] for x in _controls([b[0]], emp)] == ["b"]
        assert len(_controls([c[0]], emp)) == 1  # borrowed: the setting's control of that seed


def test_the_evaluation_se_has_the_concept_as_its_unit_and_marks_verdicts_on_the_line():
    """SE over seeds of a point's mean accuracy: per seed sd of its concepts' accuracies / √n (per_concept.csv),
    else the bound √(a(1−a)/n); a mean within one SE of 0.5 is "on the line"."""
    import math

    from paper_figures.verdicts import _row_key, evaluation_se

    row = {"folder": "f", "seed": "0", "scenario": "lora", "c_p": "100", "kind": "poisoned", "poison_type": "dirty",
           "poison_per_concept": "240", "targets": "poisoned", "steps": "500", "unpoisoned_acc": "0.52",
           "n_unpoisoned": "50"}
    assert evaluation_se([row], {}) == pytest.approx(math.sqrt(0.52 * 0.48 / 50))  # the bound: 0.071 > 0.02
    per = [1.0] * 26 + [0.0] * 24  # the same mean from 0/1 concepts: the bound is reached
    assert evaluation_se([row], {_row_key(row): per}) == pytest.approx(np.std(per, ddof=1) / math.sqrt(50))
    other = {**row, "seed": "1"}
    two = evaluation_se([row, other], {})
    assert two == pytest.approx(math.sqrt(2 * 0.52 * 0.48 / 50) / 2)  # two seeds: √2 smaller
    assert math.isnan(evaluation_se([{k: v for k, v in row.items() if k != "n_unpoisoned"}], {}))
