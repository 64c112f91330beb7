"""``python -m theory.ad FILE``: output schema, agreement with the library, and one-line errors with exit 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from theory.ad import alignment_difficulty
from implosion_base.pairs_file import load_pairs, save_pairs

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "theory.ad", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)


@pytest.fixture()
def pairs_file(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    t = rng.normal(size=(120, 16)).astype(np.float32)
    return save_pairs(tmp_path / "emb.npz", t, (t + rng.normal(size=t.shape)).astype(np.float32))


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_json_output_matches_library(tmp_path: Path, suffix: str):
    rng = np.random.default_rng(1)
    t, v = rng.normal(size=(60, 8)), rng.normal(size=(60, 8))
    path = save_pairs(tmp_path / f"emb{suffix}", t, v)
    proc = _run(str(path), "--json", "--alpha", "0.6", "--no-laion-scale")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    ref = alignment_difficulty(t, v, alpha=0.6, laion_scale=False)
    assert out["n"] == 60
    assert set(out) == {"ad", "d_fea", "d_stru", "n", "alpha", "laion_scale"}
    for key in ("ad", "d_fea", "d_stru"):
        assert out[key] == pytest.approx(getattr(ref, key), abs=1e-12)


def test_sampled_json_has_ci(pairs_file: Path):
    proc = _run(str(pairs_file), "--json", "--sample", "20000", "--seed", "3")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    lo, hi = out["ci95"]
    assert lo < out["ad"] < hi
    assert out["n_samples"] == 20000
    exact = alignment_difficulty(*load_pairs(pairs_file))
    assert abs(out["ad"] - exact.ad) < 5 * (hi - lo)


def test_human_output_and_top(pairs_file: Path):
    proc = _run(str(pairs_file), "--top", "3")
    assert proc.returncode == 0, proc.stderr
    assert "AD" in proc.stdout and proc.stdout.count("share of AD") == 3


def _write_npz(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


BAD = {
    "missing": lambda d: (d / "nope.npz", "no such file"),
    "suffix": lambda d: ((d / "x.txt").write_text("1") and d / "x.txt", "unsupported file type"),
    "no-image": lambda d: (_write_npz(d / "a.npz", text=np.ones((3, 2))), "missing array(s) 'image'"),
    "mismatched-n": lambda d: (_write_npz(d / "b.npz", text=np.ones((3, 2)), image=np.ones((4, 2))),
                               "same number of pairs"),
    "mismatched-d": lambda d: (_write_npz(d / "c.npz", text=np.ones((3, 2)), image=np.ones((3, 3))),
                               "same dimension"),
    "nan": lambda d: (_write_npz(d / "e.npz", text=np.array([[1.0, np.nan], [1, 2]]), image=np.ones((2, 2))),
                      "NaN or inf"),
    "inf": lambda d: (_write_npz(d / "e2.npz", text=np.ones((2, 2)), image=np.array([[1.0, np.inf], [1, 2]])),
                      "NaN or inf"),
    "zero": lambda d: (_write_npz(d / "f.npz", text=np.array([[1.0, 1], [0, 0]]), image=np.ones((2, 2))),
                       "zero vector"),
    "n1": lambda d: (_write_npz(d / "g.npz", text=np.ones((1, 2)), image=np.ones((1, 2))), "at least 2 pairs"),
    "pickle": lambda d: (_write_npz(d / "h.npz", text=np.array([{"a": 1}], dtype=object), image=np.ones((1, 2))),
                         "cannot read"),
    "corrupt-npz": lambda d: ((d / "i.npz").write_bytes(b"not a zip") and d / "i.npz", "cannot read"),
    "corrupt-st": lambda d: ((d / "j.safetensors").write_bytes(b"\x00" * 3) and d / "j.safetensors",
                             "safetensors"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_files_one_line_exit_2(tmp_path: Path, case: str):
    path, message = BAD[case](tmp_path)
    proc = _run(str(path))
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert message in lines[0]
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--alpha", "1.5"], "alpha"),
        (["--alpha", "-0.1"], "alpha"),
        (["--alpha", "abc"], "invalid float"),
        (["--sample", "1"], "--sample"),
        (["--top", "-1"], "--top"),
        (["--top", "2", "--sample", "100"], "--top"),
        (["--scores", "x.csv", "--sample", "100"], "--scores"),
        (["--scores", "x.txt"], "name it *.csv"),
        (["--backend", "jax"], "invalid choice"),
    ],
)
def test_bad_options_one_line_exit_2(pairs_file: Path, args: list[str], message: str):
    proc = _run(str(pairs_file), *args)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr


def test_no_file_argument_is_usage_error():
    proc = _run()
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("device, message", [("nope", "is not a torch device"), ("cuda", "no CUDA device"),
                                             ("cuda:7", "CUDA")])
def test_bad_or_missing_device_is_one_line(tmp_path, device, message):
    pytest.importorskip("torch")
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    f = tmp_path / "e.npz"
    rng = np.random.default_rng(0)
    np.savez(f, text=rng.normal(size=(5, 3)), image=rng.normal(size=(5, 3)))
    proc = subprocess.run([sys.executable, "-m", "theory.ad", str(f), "--backend", "torch", "--device", device],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and message in proc.stderr, proc.stderr


def test_negative_sample_seed_is_one_line(tmp_path):
    f = tmp_path / "e.npz"
    np.savez(f, text=np.eye(4), image=np.eye(4))
    proc = subprocess.run([sys.executable, "-m", "theory.ad", str(f), "--sample", "10", "--seed", "-1"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 2 and proc.stderr.strip().endswith("--seed must be in [0, inf], got -1")


def _labelled(tmp_path: Path, n: int = 30, **labels) -> Path:
    rng = np.random.default_rng(4)
    t = rng.normal(size=(n, 6))
    v = t + 0.3 * rng.normal(size=t.shape)
    v[[3, 17]] = rng.normal(size=(2, 6))  # two mismatched pairs
    path = tmp_path / "labelled.npz"
    np.savez(path, text=t, image=v, **labels)
    return path


def test_top_names_the_pairs_file_names_and_captions(tmp_path: Path):
    names = np.array([f"img_{i:03d}.png" for i in range(30)])
    caps = np.array([f"a photo of thing {i}" for i in range(30)])
    path = _labelled(tmp_path, file_name=names, caption=caps)
    proc = _run(str(path), "--top", "2", "--json")
    assert proc.returncode == 0, proc.stderr
    top = json.loads(proc.stdout)["top"]
    assert {r["file_name"] for r in top} == {"img_003.png", "img_017.png"}
    assert all(r["caption"] == caps[r["index"]] for r in top)
    human = _run(str(path), "--top", "2").stdout
    assert "img_003.png" in human and "a photo of thing 17" in human


def test_scores_csv_holds_every_pair_and_sums_to_ad(tmp_path: Path):
    import csv

    from theory.ad import pair_attribution, pair_scores

    names = np.array([f"img_{i:03d}.png" for i in range(30)])
    path = _labelled(tmp_path, file_name=names)
    out = tmp_path / "scores.csv"
    proc = _run(str(path), "--scores", str(out))
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(open(out)))
    assert [int(r["index"]) for r in rows] == list(range(30)) and rows[5]["file_name"] == "img_005.png"
    assert list(rows[0]) == ["index", "file_name", "s_i", "feature_share", "structure_share", "share_of_ad", "rank"]
    with np.load(path) as z:
        t, v = z["text"], z["image"]
    att = pair_attribution(t, v)
    share = np.array([float(r["share_of_ad"]) for r in rows])
    assert share.sum() == pytest.approx(att.result.ad, abs=1e-12)  # full precision in the CSV
    cos = np.sum(t * v, 1) / np.linalg.norm(t, axis=1) / np.linalg.norm(v, axis=1)
    assert np.allclose([float(r["s_i"]) for r in rows], pair_scores(cos), atol=1e-12)
    ranks = {int(r["rank"]): int(r["index"]) for r in rows}
    assert sorted(ranks) == list(range(1, 31)) and {ranks[1], ranks[2]} == {3, 17}


def test_bad_labels_are_named(tmp_path: Path):
    path = _labelled(tmp_path, file_name=np.array(["a", "b"]))
    proc = _run(str(path), "--top", "1")
    assert proc.returncode == 2 and "'file_name' must hold one string per pair (30)" in proc.stderr
