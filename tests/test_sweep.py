"""``python -m simulate.sweep``: numbers, files, resume after a kill, and bad input (workers and Dask:
test_sweep_workers.py)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from simulate.concepts import ConceptConfig, make_space
from simulate.poison import PoisonConfig, benign_pairs, plan_for_space, poison_pairs
from simulate.engine import COLUMNS, SweepConfig, run_seed
from simulate.sweep import main
from theory.ad import alignment_difficulty

from sweep_helpers import ROOT, SMALL, _assert_same_numbers, _by_key, _rows


def _cli(*args: str, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "simulate.sweep", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=timeout, env={**os.environ, **(env or {})})


# ------------------------------------------------------------------------------------------- numbers


def test_each_point_equals_a_from_scratch_computation():
    """Incremental sweep = rebuilding the training set at that C_P and computing AD and ridge from scratch."""
    cfg = SweepConfig(concepts=ConceptConfig(n_concepts=30, dim=12), poison=PoisonConfig(poison_per_concept=6),
                      benign_per_concept=4)
    rows = _by_key(run_seed(cfg, 1, [0, 4, 9, 15]))
    space = make_space(cfg.concepts, 1)
    plan = plan_for_space(space, cfg.poison, 1)
    bt, bv, _ = benign_pairs(space, 4, 1)
    for c_p in (4, 15):
        extra = [poison_pairs(space, plan, cfg.poison, int(c), 1) for c in plan.poisoned(c_p)]
        t = np.concatenate([bt] + [e[0] for e in extra])
        v = np.concatenate([bv] + [e[1] for e in extra])
        ref = alignment_difficulty(t, v)
        assert rows[(c_p, 1)]["ad"] == pytest.approx(ref.ad, abs=1e-12)
        assert rows[(c_p, 1)]["n_pairs"] == t.shape[0]
        lam = 1e-3 * np.trace(t.T @ t) / 12
        w = np.linalg.solve(t.T @ t + lam * np.eye(12), t.T @ v)
        assert rows[(c_p, 1)]["align_loss"] == pytest.approx(np.mean(np.sum((t @ w - v) ** 2, axis=1)), rel=1e-6)


def test_points_do_not_depend_on_the_grid():
    cfg = SweepConfig(concepts=ConceptConfig(n_concepts=30, dim=12), poison=PoisonConfig(poison_per_concept=5))
    dense = _by_key(run_seed(cfg, 0, list(range(0, 21))))
    sparse = _by_key(run_seed(cfg, 0, [20]))
    for key in ("ad", "unpoisoned_acc", "attack_success", "distortion", "align_loss"):
        assert sparse[(20, 0)][key] == pytest.approx(dense[(20, 0)][key], abs=1e-9)


def test_replace_keeps_the_volume_and_add_grows_it():
    base = dict(concepts=ConceptConfig(n_concepts=20, dim=8), benign_per_concept=4)
    add = run_seed(SweepConfig(poison=PoisonConfig(poison_per_concept=3), **base), 0, [0, 5])
    rep = run_seed(SweepConfig(poison=PoisonConfig(poison_per_concept=3, placement="replace"), **base), 0, [0, 5])
    assert [r["n_pairs"] for r in add] == [80, 95]
    assert [r["n_pairs"] for r in rep] == [80, 80]


def test_default_regime_implodes_and_ad_grows():
    """The main job's regime, at reduced size: AD rises with C_P and unpoisoned accuracy collapses."""
    cfg = SweepConfig(concepts=ConceptConfig(n_concepts=200))
    rows = run_seed(cfg, 0, [0, 20, 60, 100])
    ad = [r["ad"] for r in rows]
    acc = [r["unpoisoned_acc"] for r in rows]
    assert all(b > a for a, b in zip(ad, ad[1:]))
    assert acc[0] == 1.0 and acc[-1] < 0.6
    assert all(r["attack_success"] > 0.9 for r in rows[1:])


# ------------------------------------------------------------------------------------------- files, resume


def test_cli_writes_table_manifest_plot_and_resumes(tmp_path: Path, capsys):
    out = tmp_path / "sweep"
    assert main([*SMALL, "--concepts", "0..20:5", "--seeds", "0,1", "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "AD (mean ± 95% CI)" in printed and "Spearman" in printed
    rows = _rows(out)
    assert list(rows[0]) == COLUMNS
    assert sorted(_by_key(rows)) == [(c, s) for c in (0, 5, 10, 15, 20) for s in (0, 1)]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["config"]["concepts"]["n_concepts"] == 60
    assert {"numpy", "python"} <= set(manifest["versions"]) and "git_commit" in manifest
    assert (out / "ad_vs_cp.png").stat().st_size > 10_000
    before = (out / "results.csv").read_text()
    # same command again: nothing recomputed
    assert main([*SMALL, "--concepts", "0..20:5", "--seeds", "0,1", "--out", str(out), "--quiet"]) == 0
    assert (out / "results.csv").read_text() == before
    # more points and seeds in the same folder: only the new ones are computed
    assert main([*SMALL, "--concepts", "0..30:5", "--seeds", "0..2", "--out", str(out), "--quiet"]) == 0
    rows = _rows(out)
    assert len(rows) == 7 * 3 and len(_by_key(rows)) == 21
    assert (out / "results.csv").read_text().startswith(before)


def test_resume_after_kill_matches_an_uninterrupted_run(tmp_path: Path):
    args = ["--n-concepts", "400", "--dim", "32", "--poison-per-concept", "20", "--benign-per-concept", "3",
            "--concepts", "0..400", "--seeds", "1", "--quiet", "--no-plot"]
    killed, full = tmp_path / "killed", tmp_path / "full"
    proc = subprocess.Popen([sys.executable, "-m", "simulate.sweep", *args, "--out", str(killed)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    table = killed / "results.csv"
    deadline = time.time() + 120
    while time.time() < deadline:
        if table.exists() and table.read_text().count("\n") > 60:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = table.read_text().count("\n") - 1
    assert 0 < partial < 401, "the kill must land mid-sweep"
    assert _cli(*args, "--out", str(killed)).returncode == 0
    assert _cli(*args, "--out", str(full)).returncode == 0
    a, b = _rows(killed), _rows(full)
    assert len(a) == len(b) == 401
    _assert_same_numbers(a, b)


def test_partial_last_line_is_repaired(tmp_path: Path):
    out = tmp_path / "s"
    assert main([*SMALL, "--concepts", "0..10:5", "--out", str(out), "--quiet", "--no-plot"]) == 0
    path = out / "results.csv"
    text = path.read_text()
    path.write_text(text + text.splitlines()[-1][:20])  # a kill in the middle of writing a line
    assert main([*SMALL, "--concepts", "0..10:5", "--out", str(out), "--quiet", "--no-plot"]) == 0
    assert path.read_text() == text


# ------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "args, message",
    [
        (["--concepts", "500..1"], "reversed"),
        (["--concepts", ""], "empty"),
        (["--concepts", "0..10:0"], "step"),
        (["--concepts", "-3"], "negative"),
        (["--concepts", "ten"], "not a whole number"),
        (["--concepts", "0..70"], "only 60 concepts"),
        (["--solver", "magic"], "invalid choice"),
        (["--seeds", "two"], "--seeds"),
        (["--seeds", "5..1"], "reversed"),
        (["--seeds", "4294967296"], "2**32"),
        (["--workers", "0"], "--workers"),
        (["--placement", "replace", "--poison-per-concept", "9"], "replace"),
        (["--alpha", "2"], "alpha"),
        (["--dim", "1"], "dim"),
        (["--concepts", "0..5", "--dask", "tcp://127.0.0.1:9"], "Dask scheduler"),
        (["--concepts", "0..5", "--dask", "garbage://x"], "Dask scheduler"),
    ],
)
def test_bad_input_one_line_exit_2_nothing_written(tmp_path: Path, args, message):
    if "--dask" in args:
        pytest.importorskip("dask.distributed")
    out = tmp_path / "never"
    # an unreachable scheduler is given up after Dask's own connect timeout, set short here
    proc = _cli(*SMALL, *args, "--out", str(out), timeout=120, env={"DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "3s"})
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert not out.exists() or not any(out.iterdir())


def test_unwritable_out_and_foreign_config(tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    proc = _cli(*SMALL, "--concepts", "0", "--out", str(blocker))
    assert proc.returncode == 2 and "not a folder" in proc.stderr
    out = tmp_path / "s"
    assert main([*SMALL, "--concepts", "0..5:5", "--out", str(out), "--quiet", "--no-plot"]) == 0
    before = (out / "results.csv").read_text()
    proc = _cli(*SMALL, "--concepts", "0..5:5", "--dim", "20", "--out", str(out))
    assert proc.returncode == 2 and "different configuration (concepts)" in proc.stderr
    assert (out / "results.csv").read_text() == before
    if os.geteuid() != 0:  # root can write anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        proc = _cli(*SMALL, "--concepts", "0", "--out", str(locked / "x"))
        assert proc.returncode == 2


@pytest.mark.parametrize("args, message", [
    (["--ridge-reg", "inf"], "ridge reg must be a number, finite"),
    (["--ridge-reg", "nan"], "ridge reg must be a number, finite"),
    (["--ridge-reg", "0"], "ridge reg must be in (0, inf]"),
    (["--text-spread", "inf"], "text_spread must be a number, finite"),
    (["--template-weight", "1.5"], "template_weight must be in [0, 1]"),
    (["--shift", "nan"], "shift must be a number, finite"),
    (["--capacity-budget", "-1", "--solver", "capacity"], "capacity budget must be in (0, inf]"),
])
def test_non_finite_knobs_are_refused(tmp_path: Path, args, message):
    """Every knob goes through implosion_base.validate.check_scalar: inf and NaN are refused by name, never run."""
    out = tmp_path / "o"
    proc = _cli("--concepts", "0,1", "--n-concepts", "10", "--out", str(out), *args, timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert message in proc.stderr, proc.stderr
    assert not out.exists()


@pytest.mark.parametrize("damage, message", [
    ("abc\n", "is damaged (1 fields"),
    ("1,2,3\n", "is damaged (3 fields"),
    (None, "recorded twice"),
    ("x" + ",0" * 20 + "\n", "not whole numbers"),
])
def test_damaged_results_table_is_named_not_a_traceback(tmp_path: Path, damage, message):
    """A results.csv damaged by hand after a run: one line naming the file and line, exit 2, nothing rewritten."""
    out = tmp_path / "o"
    base = ["--concepts", "0,1", "--n-concepts", "10", "--seeds", "1", "--no-plot", "--quiet", "--out", str(out)]
    assert _cli(*base, timeout=120).returncode == 0
    table = out / "results.csv"
    lines = table.read_text().splitlines(keepends=True)
    if damage is None:
        damage = lines[-1]
    elif damage.startswith("x"):
        damage = "x" + lines[-1][lines[-1].index(","):]
    table.write_text("".join(lines) + damage)
    before = table.read_bytes()
    proc = _cli(*base, timeout=120)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and message in proc.stderr, proc.stderr
    assert "results.csv line 4" in proc.stderr
    assert table.read_bytes() == before


@pytest.mark.parametrize("text", ["[1]", "{not json", "\"x\""])
def test_manifest_that_is_not_an_object_is_refused(tmp_path: Path, text):
    out = tmp_path / "o"
    out.mkdir()
    (out / "manifest.json").write_text(text)
    proc = _cli("--concepts", "0,1", "--n-concepts", "10", "--out", str(out), timeout=120)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "manifest.json" in proc.stderr
    assert (out / "manifest.json").read_text() == text and not (out / "results.csv").exists()


@pytest.mark.parametrize("args, message", [
    (["--seeds", "0..999999", "--concepts", "0..20"], "rows; at most"),
    (["--n-concepts", "100000", "--dim", "4096", "--concepts", "0,1"], "GiB"),
    (["--benign-per-concept", "100000000", "--concepts", "0,1"], "GiB"),
])
def test_sweeps_too_large_for_the_machine_are_refused_up_front(tmp_path: Path, args, message):
    out = tmp_path / "o"
    proc = _cli(*args, "--out", str(out), timeout=120)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and message in proc.stderr, proc.stderr
    assert not out.exists()


@pytest.mark.parametrize("module", ["simulate.sweep", "simulate.experiments", "empirical.run", "paper_figures"])
def test_empty_out_is_a_usage_error_not_the_current_directory(tmp_path: Path, module):
    extra = {"simulate.experiments": ["phase"], "paper_figures": ["fig1"]}.get(module, [])
    proc = subprocess.run([sys.executable, "-m", module, *extra, "--out", ""], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    # the option named by its spellings (empirical.run's --out is also diffusers' --output-dir)
    assert proc.returncode == 2 and re.search(r"argument --out(/--output-dir)?: must not be empty$",
                                              proc.stderr.strip()), proc.stderr
    assert not any(tmp_path.iterdir())


def test_a_manifest_without_results_does_not_lock_the_folder(tmp_path: Path):
    """A start that failed after writing its manifest (no result rows) must not refuse the corrected command."""
    out = tmp_path / "o"
    first = _cli(*SMALL, "--concepts", "0,1", "--dim", "16", "--out", str(out), timeout=120)
    assert first.returncode == 0
    (out / "results.csv").unlink()
    again = _cli(*SMALL, "--concepts", "0,1", "--dim", "24", "--out", str(out), timeout=120)
    assert again.returncode == 0, again.stderr
    assert json.loads((out / "manifest.json").read_text())["config"]["concepts"]["dim"] == 24
    # with results it is locked, naming the difference
    refused = _cli(*SMALL, "--concepts", "0,1", "--dim", "16", "--out", str(out), timeout=120)
    assert refused.returncode == 2 and "different configuration (concepts)" in refused.stderr


def test_seeds_are_a_list_and_an_old_count_gets_a_note(tmp_path: Path):
    """``--seeds`` is a list (``0..2``, ``0,2``, ``7``); a lone number above 1, once a count, runs that seed alone
    and says so on stderr in one line."""
    out = tmp_path / "s"
    assert main([*SMALL, "--concepts", "0,5", "--seeds", "0,2", "--out", str(out), "--quiet", "--no-plot"]) == 0
    assert sorted(_by_key(_rows(out))) == [(0, 0), (0, 2), (5, 0), (5, 2)]
    proc = _cli(*SMALL, "--concepts", "0,5", "--seeds", "3", "--out", str(tmp_path / "t"), "--dry-run")
    assert proc.returncode == 0 and "seeds: [3]" in proc.stdout, proc.stdout
    assert proc.stderr.strip().splitlines() == ["note: --seeds 3 runs seed 3 alone (--seeds is a list: --seeds 0..2 "
                                                "for 3 seeds)"], proc.stderr


def test_solvers_generate_their_own_options(monkeypatch):
    """Every solver field is an option --<solver>-<field> (typed, Literal fields with choices); a new solver in
    SOLVERS gets its options with no other change."""
    from dataclasses import dataclass

    from simulate import align
    from simulate.align import CapacitySolver, RidgeSolver
    from simulate.sweep import _config, _parser

    cfg = _config(_parser().parse_args(["--solver", "capacity", "--capacity-budget", "0.25",
                                        "--capacity-method", "fista"]))
    assert cfg.solver == CapacitySolver(budget=0.25, method="fista")
    assert _config(_parser().parse_args([])).solver == RidgeSolver()

    @dataclass(frozen=True)
    class ToySolver(RidgeSolver):
        scale_up: float = 2.0
        name = "toy"  # a class attribute, as in every solver

    monkeypatch.setitem(align.SOLVERS, "toy", ToySolver)
    args = _parser().parse_args(["--solver", "toy", "--toy-scale-up", "3.5"])
    assert _config(args).solver == ToySolver(scale_up=3.5)
    with pytest.raises(SystemExit):
        _parser().parse_args(["--capacity-method", "magic"])
