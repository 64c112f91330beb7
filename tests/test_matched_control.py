"""The matched control (``--control matched``): the poison's very images, each captioned with the concept it shows —
the poison in everything but the label, whatever the target rule."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("OMP_NUM_THREADS", "2")

from empirical.poisons import control_pairs, harness_plan, poison_pairs  # noqa: E402
from empirical.run import main  # noqa: E402
from implosion_base.errors import InputError  # noqa: E402

NAMES = [f"c{i}" for i in range(12)]
LABELS = np.repeat(np.arange(12), 10)


@pytest.mark.parametrize("rule", ["poisoned", "random", "nearest", "scatter"])
def test_matched_control_shows_the_poison_images_with_their_true_captions(rule):
    sim = np.eye(12) + 0.01 * np.arange(144).reshape(12, 12) / 144
    plan = harness_plan(NAMES, rule, seed=3, similarity=sim if rule == "nearest" else None)
    idx, caption = poison_pairs(plan, 5, 7, LABELS, seed=3)
    m_idx, m_caption = control_pairs(plan, 5, 7, LABELS, seed=3, images="matched")
    assert np.array_equal(m_idx, idx)  # the very same images
    assert np.array_equal(m_caption, LABELS[idx])  # each captioned with what it shows
    assert np.all(m_caption != caption)  # every poison pair contradicts its caption; no control pair does
    # the own-image control shows only the poisoned concepts' images; the matched one shows what the poison shows
    o_idx, o_caption = control_pairs(plan, 5, 7, LABELS, seed=3)
    assert np.array_equal(LABELS[o_idx], o_caption) and set(o_caption) == set(plan.poisoned(5))
    shown = np.bincount(LABELS[idx], minlength=12)
    assert np.array_equal(np.bincount(LABELS[m_idx], minlength=12), shown)
    if rule == "poisoned":  # targets among the poisoned concepts: both controls show only poisoned concepts
        assert set(LABELS[idx]) <= set(plan.poisoned(5))
    with pytest.raises(InputError, match="--control must be one of own, matched"):
        control_pairs(plan, 5, 7, LABELS, seed=3, images="other")


def _rows(out: Path) -> list[dict[str, str]]:
    with open(out / "results.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_a_matched_control_run_is_its_own_setting(tmp_path: Path):
    out, cache = tmp_path / "out", tmp_path / "cache"
    args = ["--preset", "micro", "--poisoned-concepts", "2", "--targets", "random", "--seeds", "0", "--out",
            str(out), "--cache", str(cache), "--quiet", "--threads", "2"]
    assert main([*args, "--control", "matched"]) == 0
    rows = {r["kind"]: r for r in _rows(out)}
    assert rows["poisoned"]["n_pairs"] == rows["control"]["n_pairs"]
    # the same images, the captions made true: the control's pairs contradict nothing
    assert float(rows["control"]["d_fea"]) < float(rows["poisoned"]["d_fea"])
    assert json.loads((out / "manifest.json").read_text())["setting"]["control"] == "matched"
    with pytest.raises(InputError, match="another setting \\(control: matched -> None\\)"):
        main(args)  # the own-image control is another measurement: refused by name
    with pytest.raises(InputError, match="--control matched .* needs controls"):
        main([*args, "--control", "matched", "--no-control", "--out", str(tmp_path / "o2")])
    with pytest.raises(InputError, match="--poison-type dirty"):
        main([*args, "--control", "matched", "--poison-type", "nightshade", "--out", str(tmp_path / "o3")])
