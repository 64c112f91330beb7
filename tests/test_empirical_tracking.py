"""Signals while a run trains: validation prompts at every checkpoint (files, a log line, the tracker) and
--report-to tensorboard event files holding loss, learning rate, validation readings and images."""

from __future__ import annotations

import csv
import json
import struct
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("diffusers")

from empirical.run import main  # noqa: E402
from empirical.tracking import check_report_to, flat_config  # noqa: E402
from empirical.validation import default_prompts, given_prompts, summary_line  # noqa: E402
from implosion_base.errors import InputError  # noqa: E402


def _events(folder: Path) -> dict[str, list]:
    """Every scalar (tag -> [(step, value)]) and image tag (tag -> [step]) in a run's tfevents files, read with
    the TFRecord framing (uint64 length, uint32 crc, payload, uint32 crc) and tensorboardX's protobuf."""
    from tensorboardX.proto import event_pb2

    found: dict[str, list] = {}
    for path in folder.rglob("events.out.tfevents.*"):
        data = path.read_bytes()
        i = 0
        while i < len(data):
            (n,) = struct.unpack("<Q", data[i:i + 8])
            event = event_pb2.Event.FromString(data[i + 12:i + 12 + n])
            i += 12 + n + 4
            for v in event.summary.value:
                found.setdefault(v.tag, []).append((event.step, v.simple_value) if v.HasField("simple_value")
                                                   else event.step)
    return found


def test_default_prompts_are_sentinels_and_poisoned_concepts():
    names = ["a", "b", "c", "d", "e"]
    order = [3, 0, 4, 1, 2]  # poisoned in this order; 1 and 2 last
    prompts = default_prompts(names, order, poisoned=[3, 0, 4], largest_c_p=3)
    assert [(p.role, p.concept) for p in prompts] == [("never poisoned", 2), ("never poisoned", 1),
                                                      ("poisoned", 3), ("poisoned", 0)]
    # a run that poisons all but one concept keeps one sentinel; a control's concepts got extra pairs
    prompts = default_prompts(names, order, poisoned=[3], largest_c_p=4, kind="control")
    assert [(p.role, p.concept) for p in prompts] == [("never poisoned", 2), ("extra pairs", 3)]
    animals = ["cat", "dog", "apple", "bird", "red apple"]
    given = given_prompts(["a photo of a dog", "a red apple on a table", "nothing", "a cat and a dog"], animals)
    assert [p.concept for p in given] == [1, 4, -1, -1]  # whole words; the longer name; two names: none
    line = summary_line(10, [{"role": "never poisoned", "prompt": "x", "prob_right": 0.5},
                             {"role": "never poisoned", "prompt": "x", "prob_right": 0.7},
                             {"role": "poisoned", "prompt": "y", "prob_right": 0.1}])
    assert line == "validation at step 10: never poisoned P(right) 0.60 (1 prompt); poisoned P(right) 0.10 (1 prompt)"


def test_report_to_is_checked_before_anything_runs(monkeypatch, tmp_path):
    assert check_report_to("none") == "none" and check_report_to("tensorboard") == "tensorboard"
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "wandb" else real(name, *a))
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(InputError, match="wandb is not configured"):
        check_report_to("wandb", environ={})
    assert check_report_to("wandb", environ={"WANDB_MODE": "offline"}) == "wandb"
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(InputError, match="pip install wandb"):
        check_report_to("wandb", environ={})
    with pytest.raises(InputError, match="tensorboardX"):
        check_report_to("tensorboard")
    assert flat_config({"a": {"b": 1, "c": [1, 2]}, "d": None}) == {"a/b": 1, "a/c": "[1, 2]", "d": "None"}


def test_tensorboard_gets_loss_lr_and_validation_at_every_checkpoint(tmp_path: Path, capfd):
    out = tmp_path / "out"
    assert main(["--preset", "micro", "--poisoned-concepts", "1", "--no-control", "--seed", "0", "--cache",
                 str(tmp_path / "cache"), "--out", str(out), "--threads", "1", "--report-to", "tensorboard",
                 "--lr-scheduler", "linear", "--lr-warmup-steps", "0", "--validation-images", "2"]) == 0
    err = capfd.readouterr().err
    # micro: 4 steps, a checkpoint every 2 -> validation at steps 2 and 4, one line each on stderr
    assert err.count("validation at step 2: never poisoned P(right)") == 1
    assert "validation at step 4: never poisoned P(right)" in err and "; poisoned P(right)" in err
    tag = "continuous-s0-cp1-poisoned"
    events = _events(out / "logs" / tag)
    assert [s for s, _ in events["train/loss"]] == [1, 2, 3, 4]
    lr = [v for _, v in sorted(events["train/lr"])]
    assert lr == pytest.approx([1e-3, 0.75e-3, 0.5e-3, 0.25e-3], rel=1e-5)  # diffusers' linear from 1e-3
    loss = np.loadtxt(out / "points" / f"{tag}-loss.csv", delimiter=",", skiprows=1)
    assert [v for _, v in sorted(events["train/loss"])] == pytest.approx(loss[:, 1].tolist(), rel=1e-6)
    assert [s for s, _ in events["validation/never_poisoned_prob_right"]] == [2, 4]
    assert events["validation"] == [2, 4]  # the images
    with open(out / "validation" / f"{tag}.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["step"] for r in rows} == {"2", "4"} and {r["role"] for r in rows} == {"never poisoned", "poisoned"}
    means = {s: np.mean([float(r["prob_right"]) for r in rows if r["step"] == str(s) and r["role"] ==
                         "never poisoned"]) for s in (2, 4)}
    assert [v for _, v in events["validation/never_poisoned_prob_right"]] == pytest.approx([means[2], means[4]],
                                                                                          rel=1e-6)
    assert (out / "validation" / f"{tag}-step4.png").is_file()


def test_validation_does_not_change_the_results(tmp_path: Path):
    common = ["--preset", "micro", "--poisoned-concepts", "1", "--no-control", "--seed", "0", "--cache",
              str(tmp_path / "cache"), "--quiet", "--threads", "1"]
    assert main([*common, "--out", str(tmp_path / "a"), "--validation-prompt", "a photo of a bird",
                 "--validation-images", "1"]) == 0
    assert main([*common, "--out", str(tmp_path / "b"), "--no-validation"]) == 0
    a, b = ((tmp_path / x / "results.csv").read_text().splitlines() for x in "ab")
    keep = [i for i, c in enumerate(a[0].split(",")) if c not in ("train_s", "eval_s")]
    assert [[r.split(",")[i] for i in keep] for r in a] == [[r.split(",")[i] for i in keep] for r in b]
    assert not (tmp_path / "b" / "validation").exists()
    assert main([*common, "--out", str(tmp_path / "d")]) == 0  # micro samples none unless asked
    assert not (tmp_path / "d" / "validation").exists()
    given = (tmp_path / "a" / "validation" / "continuous-s0-cp1-poisoned.csv").read_text()
    assert "a photo of a bird,given,bird" in given
    assert json.loads((tmp_path / "a" / "manifest.json").read_text())["setting"]  # the setting is unchanged
    with pytest.raises(InputError, match="contradict"):
        main([*common, "--out", str(tmp_path / "c"), "--no-validation", "--validation-prompt", "x"])
