"""``python -m empirical.report``: aggregation over seeds, t-intervals, Spearman ρ, plot, and bad input."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

import json

from empirical.report import aggregate, main, mean_ci, read_rows, spearman
from empirical.layout import COLUMNS


def _write(folder: Path, rows: list[dict]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "results.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS)
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k, "nan") for k in COLUMNS})


def _rows() -> list[dict]:
    rng = np.random.default_rng(0)
    rows = []
    for seed in range(3):
        for c_p in (0, 10, 20):
            for kind in ("poisoned", "control"):
                ad = 0.3 + 0.01 * c_p * (kind == "poisoned") + rng.normal(0, 0.01)
                rows.append({"seed": seed, "scenario": "continuous", "targets": "poisoned", "steps": 600,
                             "poison_per_concept": 80, "c_p": c_p, "kind": kind, "ad": ad,
                             "unpoisoned_prob": 1 - ad + rng.normal(0, 0.001), "unpoisoned_acc": 0.9})
    return rows


def test_mean_ci_matches_the_t_interval():
    x = [1.0, 2.0, 4.0]
    m, h = mean_ci(x)
    assert m == pytest.approx(7 / 3)
    assert h == pytest.approx(stats.t.ppf(0.975, 2) * np.std(x, ddof=1) / np.sqrt(3))
    assert mean_ci([5.0]) == (5.0, 0.0)
    assert np.isnan(mean_ci([float("nan")])[0])


def test_aggregate_groups_over_seeds_and_spearman_matches_scipy(tmp_path: Path):
    rows = [{k: str(v) for k, v in r.items()} for r in _rows()]
    recs = aggregate([{**{k: "nan" for k in COLUMNS}, "setting": "a", "poison_type": "dirty", **r} for r in rows])
    assert len(recs) == 6 and all(r["n_seeds"] == 3 for r in recs)
    poisoned20 = next(r for r in recs if r["c_p"] == "20" and r["kind"] == "poisoned")
    expect = np.mean([float(r["ad"]) for r in rows if r["c_p"] == "20" and r["kind"] == "poisoned"])
    assert poisoned20["ad"][0] == pytest.approx(expect)
    rho, n = spearman(rows, "unpoisoned_prob")
    assert n == 18
    assert rho == pytest.approx(stats.spearmanr([float(r["ad"]) for r in rows],
                                                [float(r["unpoisoned_prob"]) for r in rows]).statistic)
    assert rho < -0.9


def test_cli_prints_and_plots(tmp_path: Path, capsys):
    _write(tmp_path / "a", _rows())
    assert main([str(tmp_path / "a")]) == 0
    out = capsys.readouterr().out
    assert "Spearman rho(AD, unpoisoned_prob)" in out and (tmp_path / "a" / "report.png").stat().st_size > 1000


def test_folders_pool_by_recorded_setting_and_old_tables_read_as_dirty(tmp_path: Path, capsys):
    rows = _rows()
    for name, seeds, setting in (("a", (0,), {"unet": [64, 128]}), ("b", (1, 2), {"unet": [64, 128]}),
                                 ("small", (0,), {"unet": [32, 64]})):
        _write(tmp_path / name, [r for r in rows if r["seed"] in seeds])
        (tmp_path / name / "manifest.json").write_text(json.dumps({"setting": setting}))
    got = read_rows([tmp_path / "a", tmp_path / "b", tmp_path / "small"])
    assert {r["setting"] for r in got} == {"a", "small"}
    recs = aggregate(got)
    assert sorted({(r["setting"], r["n_seeds"]) for r in recs}) == [("a", 3), ("small", 1)]
    # a results.csv from before poison types: poisoned points read as dirty-label, the rest as none
    old = tmp_path / "old"
    old.mkdir()
    cols = [c for c in COLUMNS if c != "poison_type"]
    with open(old / "results.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader()
        for r in rows[:4]:
            w.writerow({k: r.get(k, "nan") for k in cols})
    assert [r["poison_type"] for r in read_rows([old])] == ["none", "none", "dirty", "none"]
    # attention statistics are summarised per concept group when present
    with open(tmp_path / "a" / "attention.csv", "w", newline="") as fh:
        fh.write("seed,scenario,c_p,kind,poison_type,poison_per_concept,targets,steps,group,n_prompts,"
                 "attn_concept_mass,attn_concept_share,attn_entropy,attn_concentration\n"
                 "0,continuous,0,poisoned,none,80,poisoned,600,unpoisoned,90,0.2,0.5,0.7,0.3\n")
    assert main([str(tmp_path / "a"), "--no-plot"]) == 0
    out = capsys.readouterr().out
    assert "cross-attention statistics" in out and "unpoisoned  1  0.200 (n = 1)  0.500 (n = 1)" in out
    assert "±0.000" not in out and "p nan" not in out  # one seed: no interval, no test
    assert " 0  clean " in out and " 0  poisoned " not in out  # the C_P = 0 model is the clean one


def test_paired_gaps_pair_each_seed_with_its_own_control_and_write_tables(tmp_path: Path, capsys):
    """The gap is computed seed by seed (not difference of means of unpaired rows): per-seed offsets shared by a
    poisoned point and its control cancel, so the CI is that of the differences; p from the paired t-test."""
    rows = []
    offsets = [0.0, 0.3, -0.2]
    for seed, off in enumerate(offsets):
        for c_p, kind, acc in ((0, "poisoned", 0.9), (20, "poisoned", 0.7 - 0.01 * seed), (20, "control", 0.9)):
            rows.append({"seed": seed, "scenario": "continuous", "targets": "poisoned", "steps": 600,
                         "poison_per_concept": 80, "c_p": c_p, "kind": kind, "ad": 0.3 + 0.01 * c_p,
                         "unpoisoned_acc": acc + off, "unpoisoned_prob": 0.5})
    _write(tmp_path / "a", rows)
    assert main([str(tmp_path / "a"), "--no-plot", "--csv", str(tmp_path / "t.csv"),
                 "--json", str(tmp_path / "t.json")]) == 0
    out = capsys.readouterr().out
    assert "poisoned - control" in out and "no rank correlation" not in out.split("Spearman")[0]
    doc = json.loads((tmp_path / "t.json").read_text())
    gaps = [g["unpoisoned_acc"] for g in doc["gaps"]]
    assert gaps == pytest.approx([-0.2, -0.21, -0.22])
    (row,) = [r for r in csv.DictReader(open(tmp_path / "t.csv")) if r["kind"] == "poisoned" and r["c_p"] == "20"]
    d = np.array(gaps)
    assert float(row["gap_unpoisoned_acc_mean"]) == pytest.approx(d.mean())
    assert float(row["gap_unpoisoned_acc_ci95"]) == pytest.approx(stats.t.ppf(0.975, 2) * d.std(ddof=1) / np.sqrt(3))
    assert float(row["gap_unpoisoned_acc_p"]) == pytest.approx(stats.ttest_rel(
        [r["unpoisoned_acc"] for r in rows if r["kind"] == "poisoned" and r["c_p"] == 20],
        [r["unpoisoned_acc"] for r in rows if r["kind"] == "control"]).pvalue)
    # the unpaired CI would be dominated by the seed offsets: the paired one is far narrower
    assert float(row["gap_unpoisoned_acc_ci95"]) < 0.2 * float(row["unpoisoned_acc_ci95"])
    corr = {c["measure"]: c for c in doc["correlations"]}
    assert np.isnan(corr["unpoisoned_prob"]["rho"]) and "unpoisoned_prob is the same in every run" in \
        corr["unpoisoned_prob"]["why_nan"]


def test_load_results_reads_numbers(tmp_path: Path):
    from empirical.report import load_results

    _write(tmp_path / "a", _rows())
    rows = load_results(tmp_path / "a")
    assert isinstance(rows, list) and all(isinstance(r, dict) for r in rows)  # one type, pandas or not
    assert len(rows) == 18 and isinstance(rows[0]["ad"], float) and rows[0]["kind"] in ("poisoned", "control")
    assert all(type(r["seed"]) is int and type(r["c_p"]) is int for r in rows)


def test_report_tables_refuse_a_folder_as_file(tmp_path: Path):
    _write(tmp_path / "a", _rows())
    with pytest.raises(Exception, match="is a folder"):
        main([str(tmp_path / "a"), "--no-plot", "--csv", str(tmp_path)])
