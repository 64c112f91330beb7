"""A run whose stderr is a file says what it does: a line per phase, training progress, skipped points; the dry
run says the image size and an estimated duration; the closing table prints measures as numbers people read."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("diffusers")

ROOT = Path(__file__).resolve().parents[1]


def _run(args: list[str], log: Path) -> subprocess.CompletedProcess:
    with open(log, "w", encoding="utf-8") as err:  # a file, not a terminal: no bars
        return subprocess.run([sys.executable, "-m", "empirical.run", *args], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=err, text=True, timeout=600)


def test_a_run_redirected_to_a_file_logs_every_phase_and_the_skips(tmp_path: Path, capfd):
    args = ["--preset", "micro", "--poisoned-concepts", "0,1", "--seed", "0", "--out", str(tmp_path / "out"),
            "--cache", str(tmp_path / "cache"), "--threads", "1"]
    first = _run(args, tmp_path / "first.log")
    assert first.returncode == 0
    log = (tmp_path / "first.log").read_text(encoding="utf-8")
    for phase in ("vae", "judge", "clean pretraining (base seed 0)", "continuous training (seed 0)"):
        assert f"{phase}: started" in log, phase
        assert re.search(re.escape(phase) + r": done, \d+ steps in \d+s", log), phase
    assert "generating and judging 8 images" in log  # micro: 4 concepts x 2 images
    assert "\r" not in log  # no bar redrawn into the file
    # the closing table: the C_P = 0 model reads "clean"; measures at four decimals, never 17 digits
    table = first.stdout.splitlines()
    assert any(" clean " in line for line in table)
    assert not re.search(r"\d\.\d{5,}", first.stdout)

    from empirical.run import main

    capfd.readouterr()
    assert main(args) == 0  # the rerun in this process: stderr is captured, not a terminal
    log = capfd.readouterr().err
    assert log.count("already done, skipped") == 3  # clean, poisoned C_P = 1 and its control
    assert "training (seed 0): started" not in log


def test_dry_run_says_image_size_and_estimated_duration(tmp_path: Path, capsys):
    from empirical.run import main

    assert main(["--preset", "micro", "--scenario", "lora", "--poisoned-concepts", "0,2", "--out",
                 str(tmp_path / "o"), "--dry-run"]) == 0
    r = capsys.readouterr()
    assert "images: 16x16 px" in r.out
    m = re.search(r"estimated duration: about (\S+) of UNet training \(12 steps at ([\d.e-]+) s \+ 6 clean "
                  r"pretraining at ([\d.e-]+) s", r.out)
    assert m, r.out  # micro: (clean, C_P 2, control) x 4 lora steps; 6 pretraining steps
    assert float(m.group(2)) > 0 and float(m.group(3)) > 0
    assert not (tmp_path / "o").exists()


def test_the_estimate_is_steps_times_the_timed_step():
    from empirical.estimate import Estimate

    e = Estimate(point_step_s=0.5, pretrain_step_s=2.0, timed=3, point_steps=100, pretrain_steps=30)
    assert e.seconds == pytest.approx(110.0)
    assert e.text().startswith("about 1m50s of UNet training (100 steps at 0.5 s + 30 clean pretraining at 2 s")


def test_accelerate_cpu_with_several_processes_is_said_to_run_one():
    from empirical.presets import PRESETS, with_runtime

    # what `accelerate launch --cpu --num_processes 2` puts in the environment (accelerate 1.x): no WORLD_SIZE
    _, notes = with_runtime(PRESETS["micro"], environ={"ACCELERATE_USE_CPU": "True", "MASTER_ADDR": "127.0.0.1"})
    assert any("runs ONE process" in n and "--multi_gpu" in n for n in notes)
    _, notes = with_runtime(PRESETS["micro"], environ={"ACCELERATE_USE_CPU": "True"})  # --cpu alone: fine
    assert not any("ONE process" in n for n in notes)
    _, notes = with_runtime(PRESETS["micro"], environ={"MASTER_ADDR": "127.0.0.1", "WORLD_SIZE": "2"})
    assert notes == []  # --multi_gpu --num_processes 2: two processes


def test_print_summary_labels_the_clean_model_and_rounds():
    from empirical.experiment import print_summary

    row = {"scenario": "continuous", "seed": "0", "c_p": "0", "kind": "poisoned", "ad": "0.12345678901234567",
           "unpoisoned_acc": "1.0", "unpoisoned_prob": "0.5", "poisoned_acc": "nan", "attack_success": "nan",
           "fd_unpoisoned": "0.01"}
    buf = io.StringIO()
    print_summary([row, {**row, "c_p": "2", "ad": "0.5"}], "continuous", file=buf)
    lines = buf.getvalue().splitlines()
    assert lines[1].split()[:4] == ["0", "0", "clean", "0.1235"]
    assert lines[2].split()[:4] == ["0", "2", "poisoned", "0.5000"]
    assert "nan" in lines[1]


def test_print_summary_writes_to_the_standard_output_of_the_call(monkeypatch):
    """Its default stream is the one current when it is called: a stream bound at import (a test's capture,
    closed since) made every later run's summary fail with "I/O operation on closed file"."""
    from empirical.experiment import print_summary

    buf = io.StringIO()
    monkeypatch.setattr(sys, "stdout", buf)
    print_summary([{"scenario": "continuous", "seed": "0", "c_p": "0", "kind": "poisoned", "ad": "0.1",
                    "unpoisoned_acc": "1.0", "unpoisoned_prob": "0.5", "poisoned_acc": "nan",
                    "attack_success": "nan", "fd_unpoisoned": "0.01"}], "continuous")
    assert buf.getvalue().split()[:2] == ["seed", "c_p"]
