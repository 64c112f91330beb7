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


def test_theorem_verdicts_name_their_domain():
    """Every Theorem 4.2 verdict states the block model's identical cross-modal structure and, in add mode, that
    poison is the minority (C_P*p < K*m): the implosion regime lies outside that domain."""
    theorem = [v for v in (c() for c in check.CHECKS) if v.name.startswith("Theorem 4.2")]
    assert len(theorem) == 4
    assert all("identical cross-modal structure" in v.name for v in theorem)
    assert all("C_P*p < K*m" in v.name for v in theorem if "(add/" in v.name)


def test_no_separation_check_can_fail(monkeypatch):
    """The no-separation check is falsifiable: with poisons as well aligned as benign pairs AD stays flat and the
    check (which asserts growth) fails."""
    original = check._instance

    def aligned(mode, targets, **kw):
        kw["poison_cos"] = kw.get("benign_cos", 0.35)
        return original(mode, targets, **kw)

    monkeypatch.setattr(check, "_instance", aligned)
    assert not check.check_not_separated().passed
