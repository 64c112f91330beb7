"""``python -m empirical.run`` end to end at micro size: files, schema, resume, and every bad input."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("diffusers")

from empirical.layout import COLUMNS  # noqa: E402

from empirical.run import main  # noqa: E402
from implosion_base.errors import InputError  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _rows(out: Path) -> list[dict[str, str]]:
    with open(out / "results.csv", newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


def test_micro_run_writes_schema_and_resumes(tmp_path: Path, cache: Path, capsys):
    out = tmp_path / "out"
    args = ["--preset", "micro", "--poisoned-concepts", "0,2", "--seed", "0", "--out", str(out),
            "--cache", str(cache), "--quiet", "--threads", "2"]
    assert main(args) == 0
    rows = _rows(out)
    _check_results(out, rows)
    _check_point_files(out, rows)
    capsys.readouterr()

    # rerun: nothing is recomputed; one more C_P adds only its points
    assert main(args) == 0
    assert len(_rows(out)) == 3
    assert json.loads((out / "manifest.json").read_text())["points_skipped_as_done"] == 3
    assert main(args[:2] + ["--poisoned-concepts", "0,2,3", *args[4:], "--no-control"]) == 0
    rows = _rows(out)
    assert [(r["c_p"], r["kind"]) for r in rows][3:] == [("3", "poisoned")]
    # the manifest keeps every command that filled the folder, in order; the top level names the latest
    manifest = json.loads((out / "manifest.json").read_text())
    assert [i["poisoned_concepts"] for i in manifest["invocations"]] == [[0, 2], [0, 2], [0, 2, 3]]
    assert manifest["command"] == manifest["invocations"][-1]["command"]
    assert manifest["started"] == manifest["invocations"][0]["started"]


def _check_results(out: Path, rows: list[dict[str, str]]) -> None:
    """The micro run's results.csv (schema, points, sizes, measures in range) and manifest."""
    assert list(rows[0].keys()) == list(COLUMNS)
    assert [(r["c_p"], r["kind"]) for r in rows] == [("0", "poisoned"), ("2", "poisoned"), ("2", "control")]
    n_clean = 4 * 6
    assert [int(r["n_pairs"]) for r in rows] == [n_clean, n_clean + 2 * 4, n_clean + 2 * 4]
    poisoned = {r["kind"]: r for r in rows if r["c_p"] == "2"}
    # dirty-label pairs are contradictions in the judge's joint space; correct extra pairs are not
    assert float(poisoned["poisoned"]["d_fea"]) > float(poisoned["control"]["d_fea"])
    for r in rows:
        for k in ("ad", "d_fea", "d_stru", "unpoisoned_acc", "unpoisoned_prob", "score", "unpoisoned_own_sim",
                  "unpoisoned_margin", "unpoisoned_salience"):
            assert np.isfinite(float(r[k]))
        assert all(0 <= float(r[k]) <= 1 for k in ("unpoisoned_acc", "unpoisoned_meaningless", "unpoisoned_off_render"))
        assert -1 <= float(r["unpoisoned_margin"]) <= float(r["unpoisoned_own_sim"]) + 1
    manifest = json.loads((out / "manifest.json").read_text())
    for key in ("command", "preset", "versions", "git_commit", "assets", "finished"):
        assert key in manifest
    assert 0 <= manifest["assets"]["judge_heldout_acc"] <= 1
    # the rules it used: meaningless from the clean model's 4 × 2 samples and the renders, off-render from renders
    rules = manifest["assets"]["meaningless_rule"], manifest["assets"]["off_render_rule"]
    assert [(r["calibrated_on"], r["n"], r["quantile"]) for r in rules] == [("recon+samples", 8, 0.05), ("renders", 8, 0.01)]
    assert any(len(r["ad"].split(".")[-1]) > 6 for r in rows)  # full precision, not 4 decimals
    # every row names the data set it used, as the manifest (and each invocation) records it, recomputed here
    from empirical.data_set import identity

    assets = manifest["assets"]
    expected = identity(assets["concepts"], ["openmoji", "noto"])
    assert {(r["data_set"], r["data_set_id"]) for r in rows} == {(expected.label, expected.id)}
    assert expected.label == "emoji-openmoji+noto-4" and assets["data_set_id"] == expected.id
    assert set(assets["font_files"]) == {"openmoji", "noto"}
    assert [i["data_set"] for i in manifest["invocations"]] == [expected.label]


def _check_point_files(out: Path, rows: list[dict[str, str]]) -> None:
    """The micro run's plan, grids, attention table and maps, per-concept table, loss log; no checkpoint left."""
    plan = json.loads((out / "plans" / "plan-seed0-poisoned.json").read_text())
    assert len(plan["order"]) == 4
    tags = ["continuous-s0-cp0-poisoned", "continuous-s0-cp2-control", "continuous-s0-cp2-poisoned"]
    assert sorted(p.name for p in (out / "grids").glob("*.png")) == sorted(
        [f"{t}.png" for t in tags] + [f"{t}-attention.png" for t in tags])
    # cross-attention statistics per point and group: the clean point has no poisoned group
    with open(out / "attention.csv", newline="") as fh:
        att = list(csv.DictReader(fh))
    assert [(a["c_p"], a["kind"], a["group"]) for a in att] == [
        ("0", "poisoned", "unpoisoned"), ("2", "poisoned", "unpoisoned"), ("2", "poisoned", "poisoned"),
        ("2", "control", "unpoisoned"), ("2", "control", "poisoned")]
    assert [int(a["n_prompts"]) for a in att] == [8, 4, 4, 4, 4]
    for a in att:
        assert 0 < float(a["attn_entropy"]) <= 1 and 0 < float(a["attn_concept_share"]) <= 1
    with np.load(out / "points" / "continuous-s0-cp2-poisoned-attention.npz") as z:
        assert z["maps"].shape[0] == z["images"].shape[0] == len(z["concepts"]) > 0
        assert z["maps"].shape[1:] == z["images"].shape[1:3]
    point = json.loads((out / "points" / "continuous-s0-cp2-poisoned.json").read_text())
    assert len(point["poisoned"]) == 2 and point["poisoned"] == plan["order"][:2]
    # per_concept.csv: every concept of every point; its unpoisoned mean is the point's unpoisoned accuracy
    with open(out / "per_concept.csv", newline="") as fh:
        per = list(csv.DictReader(fh))
    assert len(per) == 3 * 4
    for r in rows:
        mine = [c for c in per if (c["c_p"], c["kind"]) == (r["c_p"], r["kind"])]
        assert sum(int(c["poisoned"]) for c in mine) == int(r["c_p"])
        clean = [float(c["acc"]) for c in mine if c["poisoned"] == "0"]
        assert np.mean(clean) == pytest.approx(float(r["unpoisoned_acc"]), abs=1e-12)
    loss = (out / "points" / "continuous-s0-cp2-poisoned-loss.csv").read_text().splitlines()
    assert loss[0] == "step,loss" and [int(x.split(",")[0]) for x in loss[1:]] == list(range(1, int(rows[1]["steps"]) + 1))
    assert all(np.isfinite(float(x.split(",")[1])) for x in loss[1:])
    assert not (out / "checkpoints").exists() or not any((out / "checkpoints").iterdir())


def test_scratch_scenario_runs(tmp_path: Path, cache: Path):
    out = tmp_path / "s"
    assert main(["--preset", "micro", "--scenario", "scratch", "--poisoned-concepts", "1", "--no-control",
                 "--out", str(out), "--cache", str(cache), "--quiet"]) == 0
    (row,) = _rows(out)
    assert row["scenario"] == "scratch" and row["c_p"] == "1" and row["steps"] == "6"
    for k in ("ad", "d_fea", "unpoisoned_acc", "unpoisoned_prob", "score", "fd_unpoisoned", "kid_unpoisoned",
              "unpoisoned_salience"):
        assert np.isfinite(float(row[k])), k  # measured, not a row of NaN
    assert float(row["d_fea"]) > 0 and 0 <= float(row["unpoisoned_acc"]) <= 1


def test_continuous_seeds_share_the_base_model_and_settings_do_not_mix(tmp_path: Path, cache: Path):
    from empirical.presets import get_preset
    from empirical.assets import prepare_assets, pretrained_state

    out = tmp_path / "b"
    base = ["--preset", "micro", "--poisoned-concepts", "0", "--out", str(out), "--cache", str(cache), "--quiet"]
    assert main([*base, "--seed", "0,1"]) == 0
    assert [r["seed"] for r in _rows(out)] == ["0", "1"]
    assert json.loads((out / "manifest.json").read_text())["setting"]["base_seed"] == 0
    # one pretraining serves both seeds (every test of this module uses seed 0 for its base model): one EMA file
    assets = prepare_assets(get_preset("micro"), cache)
    state = pretrained_state(assets, 0, cache)
    assert len(list(cache.glob("pretrain-*/ema-*.safetensors"))) == 1 and state
    # another base model or another UNet in the same folder is refused: rows of one folder share one setting
    with pytest.raises(InputError, match="another setting .*base_seed: 0 -> 1"):
        main([*base, "--seed", "0", "--base-seed", "1"])
    with pytest.raises(InputError, match="another setting .*unet.channels"):
        main([*base, "--seed", "0", "--unet-channels", "8,16"])
    # a folder written before a preset field existed stays resumable (the new field is not a difference)
    manifest = json.loads((out / "manifest.json").read_text())
    del manifest["setting"]["lora"]
    (out / "manifest.json").write_text(json.dumps(manifest))
    assert main([*base, "--seed", "0,1"]) == 0
    # a smaller UNet in its own folder runs and records its channels
    small = tmp_path / "small"
    assert main([*base[:-5], "--out", str(small), "--cache", str(cache), "--quiet", "--unet-channels", "8,16"]) == 0
    assert json.loads((small / "manifest.json").read_text())["preset"]["unet"]["channels"] == [8, 16]


@pytest.mark.parametrize("extra, message", [
    (["--preset", "huge"], "unknown preset 'huge'"),
    (["--scenario", "lora2"], "unknown scenario 'lora2'"),
    (["--poisoned-concepts", "0,5"], "exceeds the number of concepts (4)"),
    (["--poisoned-concepts", "-1"], "--poisoned-concepts"),
    (["--poison-per-concept", "-3"], "--poison-per-concept must be in [0, inf], got -3"),
    (["--targets", "closest"], "unknown target mode"),
    (["--variant", "fp16"], "--variant chooses the weights of a --pretrained folder"),
    (["--device", "tpu"], "--device 'tpu'"),
    (["--device", "cuda:3"], "--device 'cuda:3'"),
    (["--mixed-precision", "fp16"], "fp16 mixed precision needs a GPU"),
    (["--mixed-precision", "fp8"], "invalid choice"),
    (["--concepts", "1"], "--n-concepts must be in [2, inf], got 1"),
    (["--n-concepts", "1"], "--n-concepts must be in [2, inf], got 1"),
    (["--steps", "0"], "--steps must be in [1, inf], got 0"),
    (["--base-seed", "-1"], "--base-seed must be in [0, inf], got -1"),
    (["--unet-channels", "16"], "--unet-channels needs 2 levels"),
    (["--unet-channels", "16,x"], "comma list of integers"),
    (["--unet-channels", "12,32"], "multiple of the group-norm groups"),
    (["--benign-per-concept", "0"], "--benign-per-concept must be in 1..6"),
    (["--threads", "100000"], "--threads must be in [1,"),
    (["--benign-per-concept", "7"], "--benign-per-concept must be in 1..6"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, extra, message):
    out = tmp_path / "bad"
    cmd = [sys.executable, "-m", "empirical.run", "--preset", "micro", "--out", str(out), "--cache",
           str(tmp_path / "c"), *extra]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert not out.exists()


def test_benign_per_concept_shrinks_the_mix_and_is_part_of_the_setting(tmp_path: Path, cache: Path):
    """--benign-per-concept M: the mix holds M clean pairs per concept plus the extras (so the poison volume
    C_P p / (K M) grows), and a folder written without it refuses a run with it (no mixed results)."""
    from empirical.assets import benign_subset

    labels = np.repeat(np.arange(3), 4)[::-1].copy()
    keep = benign_subset(labels, 2)
    assert sorted(np.bincount(labels[keep]).tolist()) == [2, 2, 2] and np.all(np.diff(keep) > 0)
    assert np.array_equal(benign_subset(labels, None), np.arange(12))
    base = ["--preset", "micro", "--poisoned-concepts", "2", "--no-control", "--seed", "0", "--cache", str(cache),
            "--quiet", "--threads", "2"]
    out = tmp_path / "m2"
    assert main([*base, "--benign-per-concept", "2", "--out", str(out)]) == 0
    (row,) = _rows(out)
    assert int(row["n_pairs"]) == 4 * 2 + 2 * 4  # K m + C_P p with m = 2, p = 4 (micro)
    # the detector is scored against the true poisons: the last C_P p pairs of the shrunk mix
    assert float(row["detect_base_rate"]) == pytest.approx(8 / 16)
    assert float(row["detect_ap"]) >= 0.5  # dirty-label poisons rank above chance
    assert json.loads((out / "manifest.json").read_text())["setting"]["benign_per_concept"] == 2
    full = tmp_path / "full"
    assert main([*base, "--out", str(full)]) == 0
    with pytest.raises(InputError, match="benign_per_concept: None -> 3"):
        main([*base, "--benign-per-concept", "3", "--out", str(full)])


@pytest.mark.parametrize("mode", ["nearest", "scatter"])
def test_target_modes_nearest_and_scatter_run_and_record_their_plans(tmp_path: Path, cache: Path, mode):
    """nearest: each poisoned concept shows its most judge-similar other concept, attack success is measured;
    scatter: no target, attack success NaN; both measure the kernel distance of unpoisoned images."""
    out = tmp_path / mode
    assert main(["--preset", "micro", "--poisoned-concepts", "2", "--no-control", "--targets", mode, "--seed", "0",
                 "--cache", str(cache), "--quiet", "--threads", "2", "--out", str(out)]) == 0
    (row,) = _rows(out)
    assert row["targets"] == mode
    assert np.isfinite(float(row["kid_unpoisoned"])) and np.isfinite(float(row["ad"]))
    assert np.isnan(float(row["attack_success"])) == (mode == "scatter")
    plan = json.loads((out / "plans" / f"plan-seed0-{mode}.json").read_text())
    targets = {p["target"] for p in plan["pairs"]}
    assert targets == {"(a random concept per pair)"} if mode == "scatter" else len(targets) > 1


@pytest.mark.slow
def test_two_process_ddp_run_writes_each_point_once(tmp_path):
    """torchrun with 2 processes: DDP training (gloo on CPU), process 0 alone evaluates and writes."""
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
                        "empirical.run", "--preset", "micro", "--poisoned-concepts", "0,1", "--quiet",
                        "--cache", str(tmp_path / "cache"), "--out", str(out)],
                       cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, env=env,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = (out / "results.csv").read_text().splitlines()
    keys = [tuple(line.split(",")[:4]) for line in lines[1:]]
    assert sorted(keys) == sorted(set(keys)) and len(keys) == 3  # C_P 0, C_P 1 and its control, once each
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["processes"] == 2 and manifest.get("finished")


def test_track_attention_records_every_checkpoint(tmp_path):
    out = tmp_path / "out"
    assert main(["--preset", "micro", "--poisoned-concepts", "0,1", "--no-control", "--track-attention", "--quiet",
                 "--threads", "1", "--cache", str(tmp_path / "cache"), "--out", str(out)]) == 0
    rows = list(csv.DictReader(open(out / "attention_track.csv")))
    # micro: 4 continued steps, a checkpoint every 2 -> steps 2 and 4; 4 concepts x 2 images per checkpoint
    assert {(r["c_p"], r["step"]) for r in rows} == {("0", "2"), ("0", "4"), ("1", "2"), ("1", "4")}
    assert len(rows) == 4 * 4 * 2
    plan = json.loads((out / "plans" / "plan-seed0-poisoned.json").read_text())
    first = plan["pairs"][0]["concept"]
    for r in rows:
        assert r["poisoned"] == ("1" if r["c_p"] == "1" and r["concept"] == first else "0")
        assert 0.0 <= float(r["prob_right"]) <= 1.0 and 0.0 <= float(r["attn_entropy"]) <= 1.0


@pytest.mark.parametrize("text", ["[1]", "{not json", "{\"setting\": 3}"])
def test_run_refuses_a_manifest_that_is_not_one(tmp_path: Path, text):
    out = tmp_path / "o"
    out.mkdir()
    (out / "manifest.json").write_text(text)
    proc = subprocess.run([sys.executable, "-m", "empirical.run", "--preset", "micro", "--out", str(out), "--cache",
                           str(tmp_path / "c")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "manifest.json" in proc.stderr
    assert (out / "manifest.json").read_text() == text


def test_attention_rows_of_an_unfinished_point_are_dropped_on_resume(tmp_path: Path, cache: Path):
    """A kill between attention.csv and results.csv leaves attention rows without their results row; the rerun
    recomputes that point and the table holds each point's attention rows once."""
    out = tmp_path / "att"
    args = ["--preset", "micro", "--poisoned-concepts", "0", "--seed", "0", "--out", str(out), "--cache", str(cache),
            "--quiet", "--threads", "2"]
    assert main(args) == 0
    att = out / "attention.csv"
    once = att.read_text()
    rows = list(csv.DictReader(open(att)))
    # the kill: the point's attention rows were written again, its results row was not
    lines = (out / "results.csv").read_text().splitlines(keepends=True)
    (out / "results.csv").write_text(lines[0])
    with open(att, "a") as fh:
        fh.write("".join(once.splitlines(keepends=True)[1:]))
    assert main(args) == 0
    again = list(csv.DictReader(open(att)))
    assert len(again) == len(rows) and len(_rows(out)) == 1


def test_precision_and_device_come_from_the_command_line_then_the_launcher_then_the_preset():
    from empirical.presets import PRESETS, with_runtime

    micro = PRESETS["micro"]
    same, notes = with_runtime(micro, environ={})
    assert same == micro and notes == []
    launched, notes = with_runtime(micro, environ={"ACCELERATE_MIXED_PRECISION": "bf16", "ACCELERATE_USE_CPU": "1"})
    assert {launched.pretrain.mixed_precision, launched.continued.mixed_precision,
            launched.scratch.mixed_precision} == {"bf16"}
    assert launched.device == "cpu" and notes == ["mixed precision bf16 (from the launcher)",
                                                  "device cpu (from the launcher)"]
    told, notes = with_runtime(micro, mixed_precision="no", environ={"ACCELERATE_MIXED_PRECISION": "bf16"})
    assert told.continued.mixed_precision == "no" and notes == []
    with pytest.raises(InputError, match="fp16 mixed precision needs a GPU"):
        with_runtime(micro, mixed_precision="fp16", environ={})
    with pytest.raises(InputError, match="must be one of"):
        with_runtime(micro, environ={"ACCELERATE_MIXED_PRECISION": "fp8"})


@pytest.mark.slow
def test_mixed_precision_request_trains_in_bf16_and_is_part_of_the_setting(tmp_path: Path, cache: Path):
    """A launcher's bf16 is honoured (not silently replaced by the preset's "no"), recorded in the setting, and
    a folder written at full precision refuses it."""
    base = ["--preset", "micro", "--poisoned-concepts", "1", "--no-control", "--seed", "0", "--cache", str(cache),
            "--quiet", "--threads", "2"]
    out = tmp_path / "bf16"
    env = {**os.environ, "ACCELERATE_MIXED_PRECISION": "bf16"}
    r = subprocess.run([sys.executable, "-m", "empirical.run", *base, "--out", str(out)], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    setting = json.loads((out / "manifest.json").read_text())["setting"]
    assert setting["continued"]["mixed_precision"] == "bf16" and setting["pretrain"]["mixed_precision"] == "bf16"
    assert np.isfinite(float(_rows(out)[0]["unpoisoned_acc"]))
    with pytest.raises(InputError, match="mixed_precision: bf16 -> no"):
        main([*base, "--mixed-precision", "no", "--out", str(out)])


def test_loss_log_keeps_one_loss_per_step_across_a_resume(tmp_path: Path):
    from empirical.point import LossLog

    path = tmp_path / "loss.csv"
    log = LossLog(path, every=2)
    for step in range(5):
        log(step, float(step))  # steps 1..5; the file is written at 2 and 4
    assert path.read_text().splitlines()[-1] == "4,3.0"
    with open(path, "a") as fh:
        fh.write("5,0.12")  # a line cut by a kill (no newline), then a resume from the checkpoint at step 4
    again = LossLog(path, every=2)
    for step in range(4, 6):
        again(step, 10.0 + step)
    again.write()
    lines = path.read_text().splitlines()
    assert lines[1:] == ["1,0.0", "2,1.0", "3,2.0", "4,3.0", "5,14.0", "6,15.0"]


def test_results_without_a_manifest_are_not_taken_for_this_run(tmp_path: Path, cache: Path):
    out = tmp_path / "o"
    args = ["--preset", "micro", "--poisoned-concepts", "0", "--seed", "0", "--out", str(out), "--cache", str(cache),
            "--quiet", "--threads", "2"]
    assert main(args) == 0
    (out / "manifest.json").unlink()
    with pytest.raises(InputError, match="without a manifest"):
        main(args)


def test_a_folder_of_the_old_layout_is_read_and_resumed_without_recomputation(tmp_path: Path, cache: Path):
    """tests/fixtures/old-layout-micro was written by the code before empirical.run was split into modules
    (commit 25c5b01: ``--preset micro --poisoned-concepts 0,1 --seed 0``). Today's code resumes it without
    training a single point (every row kept byte for byte) and paper_figures reads it as the preset's setting."""
    import shutil

    from paper_figures.sources import collect

    old = tmp_path / "old"
    shutil.copytree(ROOT / "tests" / "fixtures" / "old-layout-micro", old)
    before = _rows(old)
    assert main(["--preset", "micro", "--poisoned-concepts", "0,1", "--seeds", "0", "--out", str(old), "--cache",
                 str(cache), "--quiet"]) == 0
    after = _rows(old)  # every old cell kept as it was (the salience rate under its own name, no_standout); the
    # data-set columns added from the manifest's record, the meaningless rate checked on known truth NaN (not measured)
    moved = [{k: a["unpoisoned_no_standout" if k == "unpoisoned_meaningless" else k] for k in before[0]}
             for a in after]
    assert moved == before and {r[k] for r in after for k in ("unpoisoned_meaningless", "unpoisoned_off_render")} == {
        "nan"}
    assert {r["data_set"] for r in after} == {"emoji-openmoji+noto-4"}
    manifest = json.loads((old / "manifest.json").read_text())
    assert manifest["points_skipped_as_done"] == 3 and not (old / "checkpoints").exists()
    emp = collect([old], [])
    assert not emp.skipped and len(emp.rows) == 3 and {r["variant"] for r in emp.rows} == {""}
    assert {(r["c_p"], r["kind"]) for r in emp.rows} == {("0", "poisoned"), ("1", "poisoned"), ("1", "control")}
