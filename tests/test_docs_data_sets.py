"""Every empirical run committed under docs/data names the data set it used: the fonts it rendered with (or that it
was a user's data) and the concept list, and an emoji run used exactly the fonts its setting asks for — a folder
that fell back to fewer fonts than it claims (the old silent fallback) fails here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUNS = sorted(p.parent for p in (ROOT / "docs" / "data").rglob("manifest.json")
              if isinstance(json.loads(p.read_text(encoding="utf-8")).get("setting"), dict)
              and (p.parent / "results.csv").is_file())


def data_set_problem(manifest: dict) -> str:
    """What is missing or contradictory in a run manifest's record of its data set ("" when nothing)."""
    assets, setting = manifest.get("assets") or {}, manifest["setting"]
    used = assets.get("fonts")
    if not isinstance(used, list) or not used:
        return "no record of the fonts it used"
    if not isinstance(assets.get("concepts"), list) or len(assets["concepts"]) < 2:
        return "no concept list"
    if used == ["user data"]:
        return "" if setting.get("train_data") else "a user's data without its content key"
    if used != setting["render"]["fonts"]:
        return f"rendered with {used} but its setting says {setting['render']['fonts']}"
    if len(assets["concepts"]) != setting["render"]["concepts"]:
        return f"{len(assets['concepts'])} concepts where its setting says {setting['render']['concepts']}"
    return ""


def test_there_are_committed_runs_to_check():
    assert len(RUNS) >= 40  # the runs behind T4–T7 and F9–F15


@pytest.mark.parametrize("run", RUNS, ids=[r.name for r in RUNS])
def test_a_committed_run_names_its_data_set(run: Path):
    manifest = json.loads((run / "manifest.json").read_text(encoding="utf-8"))
    assert data_set_problem(manifest) == "", run.name


def test_a_silent_fallback_and_a_missing_record_are_caught():
    good = json.loads((RUNS[0] / "manifest.json").read_text(encoding="utf-8"))
    fell_back = {**good, "assets": {**good["assets"], "fonts": ["openmoji"]}}
    assert "rendered with ['openmoji']" in data_set_problem(fell_back)
    assert data_set_problem({**good, "assets": {}}) == "no record of the fonts it used"
    user = {**good, "assets": {**good["assets"], "fonts": ["user data"]}, "setting": {**good["setting"]}}
    assert data_set_problem(user) == "a user's data without its content key"


@pytest.mark.parametrize("run", RUNS, ids=[r.name for r in RUNS])
def test_every_result_row_of_a_committed_run_names_the_data_set_its_manifest_records(run: Path):
    """Zero result rows without a data-set identity: each row's data_set and data_set_id equal the identity
    recomputed from the manifest's concept list and fonts (or the user's data key)."""
    import csv

    from empirical.data_set import of_manifest

    expected = of_manifest(json.loads((run / "manifest.json").read_text(encoding="utf-8")))
    assert expected is not None, run.name
    with open(run / "results.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert rows and all((r.get("data_set"), r.get("data_set_id")) == (expected.label, expected.id) for r in rows)
