"""paper_figures.export: the small files of a run copied into docs/data, the image figures' points slimmed."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from empirical.layout import point_tag
from paper_figures.attention_figures import SHOWN_PER_PANEL
from paper_figures.export import export_run, main
from paper_figures.sources import load_point

CONCEPTS = ("bird", "fish", "turtle")
PER = 4  # samples per concept in a run's npz


def _fake_run(folder: Path, seeds=(1, 2)) -> dict[str, np.ndarray]:
    """A run folder as empirical.run leaves it: tables, plans, grids, a checkpoint, and per point a json and an
    npz of PER samples per concept. Returns each point tag's images."""
    rng = np.random.default_rng(0)
    rows = [dict(seed=s, scenario="continuous", c_p=c, kind=k, poison_type="dirty" if (k, c) != ("poisoned", 0)
                 else "none", poison_per_concept=80, targets="poisoned", steps=500)
            for s in seeds for c, k in ((0, "poisoned"), (2, "poisoned"), (2, "control"))]
    folder.mkdir(parents=True)
    with open(folder / "results.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    (folder / "manifest.json").write_text("{}")
    (folder / "attention.csv").write_text("seed\n1\n")
    (folder / "plans").mkdir()
    (folder / "plans" / "plan-seed1-poisoned.json").write_text('{"pairs": []}')
    (folder / "grids").mkdir()
    (folder / "grids" / "x.png").write_bytes(b"png")
    (folder / "checkpoints" / "t").mkdir(parents=True)
    (folder / "checkpoints" / "t" / "unet.safetensors").write_bytes(b"weights")
    (folder / "points").mkdir()
    images = {}
    for r in rows:
        tag = point_tag(r["scenario"], r["seed"], r["c_p"], r["kind"], r["poison_type"], r["targets"])
        names = np.array([c for c in CONCEPTS for _ in range(PER)])
        img = rng.integers(0, 256, (len(names), 8, 8, 3), dtype=np.uint8)
        maps = rng.random((len(names), 8, 8)).astype(np.float16)
        np.savez_compressed(folder / "points" / f"{tag}-attention.npz", images=img, maps=maps, concepts=names)
        (folder / "points" / f"{tag}.json").write_text(json.dumps(
            {"row": r, "poisoned": ["fish"] if r["c_p"] else [], "concepts": [{"concept": c} for c in CONCEPTS]}))
        (folder / "points" / f"{tag}-loss.csv").write_text("step,loss\n")
        images[tag] = img
    return images


def test_export_copies_tables_not_weights_and_slims_the_lowest_seeds_poisoned_points(tmp_path: Path):
    run = tmp_path / "runs" / "emp-x"
    images = _fake_run(run)
    dest, written = export_run(run, tmp_path / "data", figure_points=True)
    files = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert files == sorted(written)
    assert {"results.csv", "manifest.json", "attention.csv", "plans/plan-seed1-poisoned.json"} <= set(files)
    assert not any(f.startswith(("grids", "checkpoints")) or f.endswith("-loss.csv") for f in files)
    # only seed 1 (the lowest), only kind poisoned (the clean model C_P = 0 included), never the control
    points = sorted(f for f in files if f.startswith("points/"))
    assert points == sorted(f"points/continuous-s1-cp{c}-poisoned{ext}" for c in (0, 2)
                            for ext in (".json", "-attention.npz"))
    row = {"folder": str(dest), "scenario": "continuous", "seed": "1", "c_p": "2", "kind": "poisoned",
           "poison_type": "dirty", "targets": "poisoned"}
    pt = load_point(row)
    assert pt is not None and pt.poisoned == ["fish"]
    assert pt.images.shape[0] == SHOWN_PER_PANEL * len(CONCEPTS)
    full = images["continuous-s1-cp2-poisoned"]
    for k, c in enumerate(CONCEPTS):  # the first SHOWN_PER_PANEL samples of each concept, unchanged
        got, _ = pt.of(c)
        assert np.array_equal(got, full[k * PER:k * PER + SHOWN_PER_PANEL])
    assert "concepts" not in json.loads((dest / "points" / "continuous-s1-cp2-poisoned.json").read_text())


def test_reexport_replaces_the_folder_whole(tmp_path: Path):
    run = tmp_path / "emp-x"
    _fake_run(run)
    dest, _ = export_run(run, tmp_path / "data", figure_points=True)
    (dest / "stale.csv").write_text("old")
    dest, _ = export_run(run, tmp_path / "data")  # without points this time
    assert not (dest / "stale.csv").exists() and not (dest / "points").exists()
    assert not list((tmp_path / "data").glob(".*export-tmp"))


@pytest.mark.parametrize("setup, message", [
    (lambda t: [str(t / "missing")], "does not exist"),
    (lambda t: [str(t / "a" / "emp" / "results.csv")], "is not a folder"),
    (lambda t: [str(t)], "neither results.csv"),
    (lambda t: [str(t / "a" / "emp"), str(t / "b" / "emp")], "share a name"),
])
def test_bad_runs_are_one_line_and_exit_2(tmp_path: Path, capsys, setup, message):
    for sub in ("a", "b"):
        _fake_run(tmp_path / sub / "emp")
    with pytest.raises(SystemExit) as exc:
        from implosion_base.cli import run_main

        run_main(main, [*setup(tmp_path), "--into", str(tmp_path / "data")], prog="python -m paper_figures.export")
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "data").exists()
