"""T2/T4's regimes on committed runs: folders of different settings never pool, and each poisoned run is paired
with the control of its own seed *and* base model."""

from __future__ import annotations

from pathlib import Path

import pytest

from empirical.layout import differences, first_difference

DATA = Path(__file__).resolve().parents[1] / "docs" / "data"


def _collect(*names: str):
    from paper_figures.sources import collect

    return collect([DATA / n for n in names], [])


def test_differences_lists_every_key_and_first_difference_is_its_first():
    old = {"a": 1, "b": {"c": [64, 128], "d": 2}, "e": "x"}
    new = {"a": 1, "b": {"c": [32, 64], "d": 3}, "e": "y", "added_later": 5}
    assert list(differences(old, new)) == [("b.c", [64, 128], [32, 64]), ("b.d", 2, 3), ("e", "x", "y")]
    assert first_difference(old, new) == ("b.c", [64, 128], [32, 64])
    assert first_difference(old, old) is None and list(differences(old, old)) == []


def test_a_small_unet_at_m20_is_not_the_full_unet_at_m20():
    """g10 (channels [32, 64] and m = 20) once read as h09 (m = 20) because only its first difference was named."""
    from paper_figures.tables import _regimes

    emp = _collect("h09-full-m20-v4-b0", "h09-full-m20-v4-b1", "g10-small-m20-v4-b0")
    groups = {name: {r["folder"].rsplit("/", 1)[1] for r in rows} for (name, _), rows in _regimes(emp).items()}
    assert sorted(groups.values(), key=len) == [{"g10-small-m20-v4-b0"}, {"h09-full-m20-v4-b0", "h09-full-m20-v4-b1"}]
    small = next(n for n, f in groups.items() if f == {"g10-small-m20-v4-b0"})
    assert "unet.channels: [64, 128] -> [32, 64]" in small and "benign_per_concept: None -> 20" in small


def test_runs_of_another_concept_list_are_labelled_and_kept_apart():
    """Noto alone with 100 concepts is another data set than Noto alone with 150: the same command otherwise."""
    from paper_figures.tables import _regimes

    emp = _collect("g02-noto-lora8-v4-b0", "k02-noto100-lora8-v4-b0")
    names = sorted(name for name, _ in _regimes(emp))
    assert len(names) == 2 and sum("K=100" in n for n in names) == 1


@pytest.mark.parametrize("names", [("k02-noto100-lora8-v4-b0", "k02-noto100-lora8-v4-b1")])
def test_each_base_model_s_run_meets_its_own_control(names):
    """Both runs are seed 0, on base models 0 and 1: two controls, each paired with its own run."""
    import csv

    from paper_figures.tables import _controls, _paired_gap

    emp = _collect(*names)
    poisoned = [r for r in emp.rows if r["kind"] == "poisoned"]
    controls = _controls(poisoned, emp)
    assert sorted(c["base_seed"] for c in controls) == ["0", "1"]
    by_hand = []
    for n in names:
        rows = {r["kind"]: float(r["unpoisoned_acc"]) for r in csv.DictReader(open(DATA / n / "results.csv"))}
        by_hand.append(rows["poisoned"] - rows["control"])
    assert _paired_gap(poisoned, controls, "unpoisoned_acc").startswith(f"{sum(by_hand) / 2:+.3f}")
