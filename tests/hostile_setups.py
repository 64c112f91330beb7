"""The setups of tests/test_hostile_inputs.py: each writes one hostile input (a damaged file, a folder where a
file goes, a model folder with impossible values, ...) into a scratch folder; ``_nothing`` writes nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]

__all__ = ["_npy_as_npz", "_pairs", "_bf16", "_zero_row", "_nan_row", "_object_array", "_file_not_folder", "_damaged_manifest", "_nothing", "BIG", "_folder_with_file", "_npz_member_twice", "_npz_shadow", "_sweep_table", "_sweep_header", "_sweep_ff", "_sweep_long_field", "_sweep_results_folder", "_sweep_deep_manifest", "_sweep_other_tool", "_sweep_abc", "TINY_SWEEP", "_report_folder", "_report_abc", "_report_ff", "_report_long_field", "_report_other_tool", "_report_results_folder", "_audit_blocks_of_user", "_concept_2d", "_mix", "_mix_poisoned_out_of_range", "_mix_negative_concepts", "_export_source_inside", "_export_onto_user_folder", "_export_onto_symlink", "_symlink_to_folder", "_defence_other_setting", "_defence_without_manifest", "_clip_config_list", "_clip_truncated", "_judge_folder", "_judge_list", "_judge_missing_fields", "_judge_extra_fields", "_tiny_sd", "_sd_no_channels", "_sd_max_length", "_sd_no_timesteps", "_sd_index_list"]


def _npy_as_npz(tmp: Path) -> None:
    np.save(tmp / "x.npy", np.ones((4, 3)))
    (tmp / "x.npy").rename(tmp / "x.npz")


def _pairs(tmp: Path) -> None:
    rng = np.random.default_rng(0)
    np.savez(tmp / "ok.npz", text=rng.normal(size=(10, 4)), image=rng.normal(size=(10, 4)))


def _bf16(tmp: Path) -> None:
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file

    t = torch.ones(6, 4, dtype=torch.bfloat16)
    save_file({"text": t, "image": t.clone()}, str(tmp / "bf16.safetensors"))


def _zero_row(tmp: Path) -> None:
    t = np.ones((5, 3))
    t[2] = 0
    np.savez(tmp / "zero.npz", text=t, image=np.ones((5, 3)))


def _nan_row(tmp: Path) -> None:
    t = np.ones((5, 3))
    t[1, 1] = np.nan
    np.savez(tmp / "nan.npz", text=t, image=np.ones((5, 3)))


def _object_array(tmp: Path) -> None:
    np.savez(tmp / "pickled.npz", text=np.array([{"a": 1}], dtype=object), image=np.ones((1, 3)))


def _file_not_folder(tmp: Path) -> None:
    (tmp / "afile").write_text("x")


def _damaged_manifest(tmp: Path) -> None:
    (tmp / "out").mkdir()
    (tmp / "out" / "manifest.json").write_text("[1]")
    (tmp / "out" / "results.csv").write_text("c_p,seed\n")


def _nothing(tmp: Path) -> None:
    pass


# --- Reliability II (one setup per defect; see the ids in CASES_II) ---------------------------------------------

BIG = str(2**63)  # one past int64


def _folder_with_file(tmp: Path) -> None:
    """H4: a *folder* named like the CSV to write, holding a user's file."""
    _pairs(tmp)
    (tmp / "old.csv").mkdir()
    (tmp / "old.csv" / "keep.txt").write_text("mine")


def _npz_member_twice(tmp: Path) -> None:
    """M2: two members named text.npy; np.load reads the second (huge header), the old check read the first."""
    import io
    import zipfile

    def member(arr: np.ndarray) -> bytes:
        buf = io.BytesIO()
        np.save(buf, arr)
        return buf.getvalue()

    import warnings

    huge = io.BytesIO()
    np.lib.format.write_array_header_1_0(huge, {"descr": "<f8", "fortran_order": False, "shape": (10**7, 10**6)})
    with zipfile.ZipFile(tmp / "twice.npz", "w") as zf, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile's own "Duplicate name": the point of the file
        zf.writestr("text.npy", member(np.ones((4, 3))))
        zf.writestr("text.npy", huge.getvalue())
        zf.writestr("image.npy", member(np.ones((4, 3))))


def _npz_shadow(tmp: Path) -> None:
    """M2: a bare member 'text' shadowing 'text.npy' (np.load reads the bare one)."""
    import io
    import zipfile

    buf = io.BytesIO()
    np.save(buf, np.ones((4, 3)))
    with zipfile.ZipFile(tmp / "shadow.npz", "w") as zf:
        zf.writestr("text.npy", buf.getvalue())
        zf.writestr("text", buf.getvalue())
        zf.writestr("image.npy", buf.getvalue())


def _sweep_table(tmp: Path, body: bytes | None = None, *, manifest: str | None = None) -> None:
    out = tmp / "out"
    out.mkdir()
    if body is not None:
        (out / "results.csv").write_bytes(body)
    if manifest is not None:
        (out / "manifest.json").write_text(manifest)


def _sweep_header() -> bytes:
    from simulate.engine import COLUMNS

    return (",".join(COLUMNS) + "\n").encode()


def _sweep_ff(tmp: Path) -> None:
    _sweep_table(tmp, _sweep_header() + b"0,0,ridge,\xff\n")


def _sweep_long_field(tmp: Path) -> None:
    _sweep_table(tmp, _sweep_header() + b"0,0,ridge," + b"9" * 200_000 + b"\n")


def _sweep_results_folder(tmp: Path) -> None:
    _sweep_table(tmp)
    (tmp / "out" / "results.csv").mkdir()


def _sweep_deep_manifest(tmp: Path) -> None:
    _sweep_table(tmp, manifest="[" * 200_000 + "]" * 200_000)


def _sweep_other_tool(tmp: Path) -> None:
    _sweep_table(tmp, b"seed,scenario,c_p,kind\n0,continuous,0,poisoned\n", manifest='{"config": {}}')


def _sweep_abc(tmp: Path) -> None:
    """M12: a numeric cell 'abc' in an otherwise valid sweep folder (made by a real tiny sweep)."""
    subprocess.run([sys.executable, "-m", "simulate.sweep", *TINY_SWEEP, "--out", str(tmp / "out")], check=True,
                   capture_output=True, cwd=tmp)
    path = tmp / "out" / "results.csv"
    lines = path.read_text().splitlines()
    head = lines[0].split(",")
    cells = lines[1].split(",")
    cells[head.index("unpoisoned_acc")] = "abc"
    lines[1] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")


TINY_SWEEP = ["--poisoned-concepts", "0,2", "--n-concepts", "10", "--seeds", "0", "--dim", "8", "--quiet",
              "--no-plot"]


def _report_folder(tmp: Path, edit: Callable[[list[str]], list[str]] | None = None) -> None:
    """A copy of a committed empirical.run folder's results (docs/data/emp-cpu), optionally edited."""
    src = ROOT / "docs" / "data" / "emp-cpu"
    out = tmp / "run"
    out.mkdir()
    lines = (src / "results.csv").read_text().splitlines()
    (out / "results.csv").write_text("\n".join(edit(lines) if edit else lines) + "\n")


def _report_abc(tmp: Path) -> None:
    def edit(lines: list[str]) -> list[str]:
        head = lines[0].split(",")
        cells = lines[1].split(",")
        cells[head.index("unpoisoned_acc")] = "abc"
        return [lines[0], ",".join(cells), *lines[2:]]

    _report_folder(tmp, edit)


def _report_ff(tmp: Path) -> None:
    _report_folder(tmp)
    with open(tmp / "run" / "results.csv", "ab") as fh:
        fh.write(b"\xff\xfe\n")


def _report_long_field(tmp: Path) -> None:
    _report_folder(tmp)
    with open(tmp / "run" / "results.csv", "a") as fh:
        fh.write("0," + "x" * 200_000 + "\n")


def _report_other_tool(tmp: Path) -> None:
    (tmp / "run").mkdir()
    header = _sweep_header()
    row = ",".join(["0"] * len(header.decode().split(","))) + "\n"
    (tmp / "run" / "results.csv").write_bytes(header + row.encode())


def _report_results_folder(tmp: Path) -> None:
    (tmp / "run" / "results.csv").mkdir(parents=True)


def _audit_blocks_of_user(tmp: Path) -> None:
    """H2: the report folder holds a user's own blocks/ folder."""
    _pairs(tmp)
    (tmp / "rep" / "blocks").mkdir(parents=True)
    (tmp / "rep" / "blocks" / "mine.txt").write_text("mine")


def _concept_2d(tmp: Path) -> None:
    rng = np.random.default_rng(0)
    np.savez(tmp / "clean.npz", text=rng.normal(size=(12, 4)), image=rng.normal(size=(12, 4)),
             concept=np.zeros((12, 2), np.int64))


def _mix(tmp: Path, *, poisoned: list[int], concept_shift: int = 0) -> None:
    rng = np.random.default_rng(0)
    n = 12
    np.savez(tmp / "mix.npz", text=rng.normal(size=(n, 4)), image=rng.normal(size=(n, 4)),
             caption=np.array([f"c{i}" for i in range(n)]), is_poison=np.r_[np.zeros(n - 2, bool), [True, True]],
             poisoned=np.array(poisoned, np.int64), poison_type=np.array("dirty"), names=np.array(["a", "b", "c"]),
             concept=np.arange(n, dtype=np.int64) % 3 - concept_shift)


def _mix_poisoned_out_of_range(tmp: Path) -> None:
    _mix(tmp, poisoned=[7])


def _mix_negative_concepts(tmp: Path) -> None:
    _mix(tmp, poisoned=[0], concept_shift=1)


def _export_source_inside(tmp: Path) -> None:
    """H3: a run folder with weights, to be exported into its own parent (INTO/<name> is the run itself)."""
    run = tmp / "results" / "run1"
    (run / "models").mkdir(parents=True)
    (run / "models" / "unet.safetensors").write_bytes(b"weights")
    (run / "results.csv").write_text("seed,c_p\n0,0\n")


def _export_onto_user_folder(tmp: Path) -> None:
    """H3: INTO/<name> exists and is a user's folder, not an earlier export."""
    run = tmp / "run1"
    run.mkdir()
    (run / "results.csv").write_text("seed,c_p\n0,0\n")
    (tmp / "data" / "run1").mkdir(parents=True)
    (tmp / "data" / "run1" / "notes.txt").write_text("mine")


def _export_onto_symlink(tmp: Path) -> None:
    run = tmp / "run1"
    run.mkdir()
    (run / "results.csv").write_text("seed,c_p\n0,0\n")
    (tmp / "elsewhere").mkdir()
    (tmp / "data").mkdir()
    (tmp / "data" / "run1").symlink_to(tmp / "elsewhere")


def _symlink_to_folder(tmp: Path) -> None:
    (tmp / "real").mkdir()
    (tmp / "link").symlink_to(tmp / "real")


def _defence_other_setting(tmp: Path) -> None:
    """H5: a defence folder of another setting (its manifest says so)."""
    (tmp / "out").mkdir()
    (tmp / "out" / "detection.csv").write_text("seed\n")
    (tmp / "out" / "manifest.json").write_text('{"setting": {"preset": "other"}}')


def _defence_without_manifest(tmp: Path) -> None:
    (tmp / "out").mkdir()
    (tmp / "out" / "detection.csv").write_text("seed\n")
    (tmp / "out" / "pr-dirty-cp4-s0.csv").write_text("precision,recall\n")


def _clip_config_list(tmp: Path) -> None:
    (tmp / "clip").mkdir()
    (tmp / "clip" / "config.json").write_text("[]")
    (tmp / "clip" / "model.safetensors").write_bytes(b"")


def _clip_truncated(tmp: Path) -> None:
    from empirical.pretrained import make_tiny_clip

    make_tiny_clip(tmp / "clip")
    weights = next((tmp / "clip").glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:1000])


def _judge_folder(tmp: Path, meta: str) -> None:
    folder = tmp / "imgs"
    folder.mkdir()
    (folder / "metadata.jsonl").write_text('{"file_name": "a.png", "text": "a"}\n')
    (tmp / "judge").mkdir()
    (tmp / "judge" / "judge.json").write_text(meta)
    (tmp / "judge" / "judge.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")


def _judge_list(tmp: Path) -> None:
    _judge_folder(tmp, "[]")


def _judge_missing_fields(tmp: Path) -> None:
    _judge_folder(tmp, '{"config": {}}')


def _judge_extra_fields(tmp: Path) -> None:
    _judge_folder(tmp, '{"config": {"no_such_field": 1}, "names": ["a"], "log_temp": 0, "text_dim": 8}')


def _tiny_sd(tmp: Path, part: str, key: str, value) -> None:
    import json

    from empirical.pretrained import make_tiny_sd

    make_tiny_sd(tmp / "sd")
    path = tmp / "sd" / part
    config = json.loads(path.read_text())
    config[key] = value
    path.write_text(json.dumps(config))


def _sd_no_channels(tmp: Path) -> None:
    _tiny_sd(tmp, "vae/config.json", "block_out_channels", [])


def _sd_max_length(tmp: Path) -> None:
    _tiny_sd(tmp, "tokenizer/tokenizer_config.json", "model_max_length", -5)


def _sd_no_timesteps(tmp: Path) -> None:
    _tiny_sd(tmp, "scheduler/scheduler_config.json", "num_train_timesteps", 0)


def _sd_index_list(tmp: Path) -> None:
    from empirical.pretrained import make_tiny_sd

    make_tiny_sd(tmp / "sd")
    (tmp / "sd" / "model_index.json").write_text("[1, 2]")
