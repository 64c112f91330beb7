"""``python -m theory.check``: every verdict passes; a failing check makes the exit status non-zero."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import theory.check as check

ROOT = Path(__file__).resolve().parents[1]


def test_all_checks_pass_one_line_each():
    proc = subprocess.run([sys.executable, "-m", "theory.check"], capture_output=True, text=True, cwd=ROOT,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.strip().splitlines()
    verdicts = lines[:-1]
    assert len(verdicts) == len(check.CHECKS)
    assert all(" PASS " in line for line in verdicts)
    assert lines[-1] == f"{len(check.CHECKS)}/{len(check.CHECKS)} checks passed"


def test_failure_gives_exit_1(monkeypatch, capsys):
    monkeypatch.setattr(check, "CHECKS", [check.check_perfect_alignment,
                                          lambda: check.Verdict("deliberately failing", False, "x")])
    assert check.main([]) == 1
    out = capsys.readouterr().out
    assert "deliberately failing" in out and "FAIL" in out and "1/2 checks passed" in out


def test_bad_usage_exit_2():
    proc = subprocess.run([sys.executable, "-m", "theory.check", "--bogus"], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
