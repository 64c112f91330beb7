"""What the sweep's tests share: the small universe, reading a results table, comparing two runs' numbers."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from simulate.engine import COLUMNS

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--n-concepts", "60", "--dim", "16", "--poison-per-concept", "8", "--benign-per-concept", "3"]


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path / "results.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def _by_key(rows):
    return {(int(r["c_p"]), int(r["seed"])): r for r in rows}


def _assert_same_numbers(a: list[dict[str, str]], b: list[dict[str, str]], tol: float = 1e-12) -> None:
    """Same (c_p, seed) keys, every numeric column equal to ``tol`` (NaN equals NaN); timings excluded."""
    ka, kb = _by_key(a), _by_key(b)
    assert len(a) == len(ka) and len(b) == len(kb) and ka.keys() == kb.keys()
    for key in ka:
        for col in COLUMNS:
            if col in ("seconds", "solver"):
                continue
            assert float(ka[key][col]) == pytest.approx(float(kb[key][col]), abs=tol, nan_ok=True), (key, col)
