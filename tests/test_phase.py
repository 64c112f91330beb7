"""simulate.phase: the cells of the grid, rows equal to the sweep engine's, reachable volumes only, thresholds."""

from __future__ import annotations

import math

import pytest

from simulate.phase import PhaseGrid, cells, run_cell, run_grid, thresholds
from simulate.engine import run_seed
from implosion_base.errors import InputError

SMALL = PhaseGrid(n_concepts=(80,), dims=(24, 64), dominance=(1.0, 10.0), volumes=(0.5, 1.0, 3.0, 8.0),
                  budgets=(0.5,), budget_concepts=40, budget_dim=24, seeds=(0, 1))


def test_cells_reach_only_feasible_volumes():
    for cell in cells(SMALL):
        k = cell.config.concepts.n_concepts
        assert cell.points[0] == 0 and all(c < k for c in cell.points)
        m, p = cell.config.benign_per_concept, cell.config.poison.poison_per_concept
        assert max(cell.points) * p / (k * m) <= cell.dominance + 1e-9  # V <= p/m since C_P <= K


def test_rows_are_the_sweep_engines_rows():
    cell = next(c for c in cells(SMALL) if c.solver == "ridge" and c.dominance == 10.0 and c.capacity == 24)
    rows = run_cell(cell)
    direct = {r["c_p"]: r for r in run_seed(cell.config, cell.seed, list(cell.points), track_ad=False)}
    for r in rows:
        assert r["unpoisoned_acc"] == direct[r["c_p"]]["unpoisoned_acc"]
        assert r["volume"] == pytest.approx(r["c_p"] * r["poison_per_concept"] / (80 * 5))


def test_grid_thresholds_and_workers_agree():
    rows = run_grid(SMALL)
    assert repr(run_grid(SMALL, workers=2)) == repr(rows)  # NaN-aware equality
    marks = {(m["solver"], m["capacity"], m["dominance"]): m for m in thresholds(rows)}
    # p = m: the poison never outweighs a concept's own data; unpoisoned concepts survive in every capacity
    assert math.isinf(marks[("ridge", 64.0, 1.0)]["v_acc_below_half"])
    # dominant poison at low capacity breaks the model, earlier than at high capacity
    low, high = marks[("ridge", 24.0, 10.0)], marks[("ridge", 64.0, 10.0)]
    assert low["v_acc_below_half"] < 8.0 and low["v_acc_below_half"] <= high["v_acc_below_half"]
    assert all(m["clean_acc"] > 0.5 for m in marks.values())


def test_bad_grid():
    with pytest.raises(InputError, match="dims"):
        PhaseGrid(dims=(0,))
    with pytest.raises(InputError, match="volumes"):
        PhaseGrid(volumes=(float("inf"),))


def test_experiments_cli_refuses_bad_workers(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    proc = subprocess.run([sys.executable, "-m", "simulate.experiments", "phase", "--workers", "0", "--out",
                           str(tmp_path / "x")], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "--workers" in proc.stderr
    assert not (tmp_path / "x").exists()
