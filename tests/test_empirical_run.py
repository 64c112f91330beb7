"""``python -m empirical.run`` end to end at micro size: files, schema, resume, and every bad input."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("diffusers")

from empirical.run import COLUMNS, main  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _rows(out: Path) -> list[dict[str, str]]:
    with open(out / "results.csv", newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


def test_micro_run_writes_schema_and_resumes(tmp_path: Path, cache: Path, capsys):
    out = tmp_path / "out"
    args = ["--preset", "micro", "--poisoned-concepts", "0,2", "--seed", "0", "--out", str(out),
            "--cache", str(cache), "--quiet", "--threads", "2"]
    assert main(args) == 0
    rows = _rows(out)
    assert list(rows[0].keys()) == list(COLUMNS)
    assert [(r["c_p"], r["kind"]) for r in rows] == [("0", "poisoned"), ("2", "poisoned"), ("2", "control")]
    n_clean = 4 * 6
    assert [int(r["n_pairs"]) for r in rows] == [n_clean, n_clean + 2 * 4, n_clean + 2 * 4]
    poisoned = {r["kind"]: r for r in rows if r["c_p"] == "2"}
    # dirty-label pairs are contradictions in the judge's joint space; correct extra pairs are not
    assert float(poisoned["poisoned"]["d_fea"]) > float(poisoned["control"]["d_fea"])
    for r in rows:
        for k in ("ad", "d_fea", "d_stru", "unpoisoned_acc", "unpoisoned_prob", "score"):
            assert np.isfinite(float(r[k]))
        assert 0 <= float(r["unpoisoned_acc"]) <= 1
    manifest = json.loads((out / "manifest.json").read_text())
    for key in ("command", "preset", "versions", "git_commit", "assets", "finished"):
        assert key in manifest
    assert 0 <= manifest["assets"]["judge_heldout_acc"] <= 1
    plan = json.loads((out / "plans" / "plan-seed0-poisoned.json").read_text())
    assert len(plan["order"]) == 4
    assert sorted(p.name for p in (out / "grids").glob("*.png")) == [
        "continuous-s0-cp0-poisoned.png", "continuous-s0-cp2-control.png", "continuous-s0-cp2-poisoned.png"]
    point = json.loads((out / "points" / "continuous-s0-cp2-poisoned.json").read_text())
    assert len(point["poisoned"]) == 2 and point["poisoned"] == plan["order"][:2]
    assert not (out / "checkpoints").exists() or not any((out / "checkpoints").iterdir())
    capsys.readouterr()

    # rerun: nothing is recomputed; one more C_P adds only its points
    assert main(args) == 0
    assert len(_rows(out)) == 3
    assert json.loads((out / "manifest.json").read_text())["points_skipped_as_done"] == 3
    assert main(args[:2] + ["--poisoned-concepts", "0,2,3", *args[4:], "--no-control"]) == 0
    rows = _rows(out)
    assert [(r["c_p"], r["kind"]) for r in rows][3:] == [("3", "poisoned")]


def test_scratch_scenario_runs(tmp_path: Path, cache: Path):
    out = tmp_path / "s"
    assert main(["--preset", "micro", "--scenario", "scratch", "--poisoned-concepts", "1", "--no-control",
                 "--out", str(out), "--cache", str(cache), "--quiet"]) == 0
    (row,) = _rows(out)
    assert row["scenario"] == "scratch" and row["c_p"] == "1" and row["steps"] == "6"


@pytest.mark.parametrize("extra, message", [
    (["--preset", "huge"], "unknown preset 'huge'"),
    (["--scenario", "lora2"], "unknown scenario 'lora2'"),
    (["--poisoned-concepts", "0,5"], "exceeds the number of concepts (4)"),
    (["--poisoned-concepts", "-1"], "--poisoned-concepts"),
    (["--poison-per-concept", "-3"], "--poison-per-concept must be >= 0"),
    (["--targets", "nearest"], "unknown target mode"),
    (["--concepts", "1"], "--concepts must be >= 2"),
    (["--steps", "0"], "--steps must be >= 1"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, extra, message):
    out = tmp_path / "bad"
    cmd = [sys.executable, "-m", "empirical.run", "--preset", "micro", "--out", str(out), "--cache",
           str(tmp_path / "c"), *extra]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert not out.exists()
