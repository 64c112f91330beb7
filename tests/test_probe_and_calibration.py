"""The learnability probe (empirical.probe) and the calibration table that matches runs to probes
(empirical.calibration_table), on the micro preset."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "2")

from empirical.calibration_table import main as table_main, model_of  # noqa: E402
from empirical.probe import PROBE, main as probe_main, probe_args, probe_point  # noqa: E402
from empirical.run import main as run_main  # noqa: E402
from implosion_base.errors import InputError  # noqa: E402


def test_the_probe_point_is_fixed_by_k_and_m_and_cannot_be_changed(tmp_path: Path):
    assert probe_point(150, 40) == (20, 120) and probe_point(4, 6) == (1, 18)
    args = probe_args(["--preset", "cpu", "--out", str(tmp_path)])
    assert args[-9:] == ["--poisoned-concepts", "20", "--poison-per-concept", "120", "--steps", "200", "--seeds",
                         "0", "--no-control"]
    assert "--poison-per-concept" in probe_args(["--preset", "cpu", "--benign-per-concept", "10", "--out", "x"])
    assert probe_args(["--preset", "cpu", "--benign-per-concept", "10", "--out", "x"])[-6] == "30"
    with pytest.raises(InputError, match="a probe's point is fixed .* drop --poisoned-concepts, --steps"):
        probe_args(["--preset", "cpu", "--steps", "9", "--poisoned-concepts", "3", "--out", "x"])
    with pytest.raises(InputError, match="scratch has no model to probe"):
        probe_args(["--preset", "cpu", "--scenario", "scratch", "--out", "x"])
    with pytest.raises(InputError, match="give --out"):
        probe_args(["--preset", "cpu"])


def test_a_probe_records_learnability_and_competence_and_the_table_finds_its_runs(tmp_path: Path, capsys,
                                                                                 monkeypatch):
    monkeypatch.setitem(PROBE, "steps", 20)  # the protocol's 200 steps, shortened for the test's tiny model
    cache, cal, runs = tmp_path / "cache", tmp_path / "cal", tmp_path / "runs"
    common = ["--preset", "micro", "--cache", str(cache), "--quiet", "--threads", "2"]
    assert probe_main([*common, "--out", str(cal / "probes" / "full")]) == 0
    record = json.loads((cal / "probes" / "full" / "probe.json").read_text())
    assert record["probe"] == {**PROBE, "c_p": 1, "p": 18} and record["scenario"] == "continuous"
    with open(cal / "probes" / "full" / "results.csv", newline="") as fh:
        row = next(csv.DictReader(fh))
    assert record["learnability"] == float(row["attack_success"]) and record["competence"] == float(
        row["unpoisoned_acc"])
    assert record["data_set"] == "emoji-openmoji+noto-4" and int(row["steps"]) == PROBE["steps"]
    assert "learnability" in capsys.readouterr().out
    # runs of the probed model (any base seed, any m) are matched to it; another UNet is not
    assert run_main([*common, "--poisoned-concepts", "0,1", "--base-seed", "1", "--out", str(runs / "a")]) == 0
    shutil.copytree(runs / "a", runs / "other-unet")  # the same rows, recorded as another UNet's
    manifest = json.loads((runs / "other-unet" / "manifest.json").read_text())
    manifest["setting"]["unet"]["channels"] = [8, 16]
    (runs / "other-unet" / "manifest.json").write_text(json.dumps(manifest))
    shutil.copytree(cal / "probes", runs / "not-a-run-but-probes")  # the probe's own folder is no calibration run
    assert table_main(["--runs", str(runs), "--calibration", str(cal)]) == 0
    with open(cal / "calibration.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {(r["folder"], r["c_p"], r["probe"]) for r in rows} == {("a", "0", "full"), ("a", "1", "full")}
    one = next(r for r in rows if r["c_p"] == "1")
    assert float(one["volume"]) == pytest.approx(1 * 4 / (4 * 6)) and one["control_acc"] != "nan"
    assert "other-unet" in capsys.readouterr().err
    assert model_of({"scenario": "scratch", "unet": 1}) == model_of({"scenario": "continuous", "unet": 1})
