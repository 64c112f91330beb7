"""Hostile inputs, one line each: every command answers bad input with one stderr line naming the problem and
exit 2 (never a traceback), and writes nothing. Adding a case is adding a row to ``CASES``.

Each row: (id, module, argument list with ``{tmp}`` for a scratch folder, a setup that writes hostile files into
it, the expected exit status, a phrase the error line must hold). Commands that would start real work are given
``--dry-run`` where the hostile part is checked before work starts.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


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


# (id, module, args, setup, exit status, phrase in the one error line)
CASES: list[tuple[str, str, list[str], Callable[[Path], None], int, str]] = [
    ("ad-missing", "theory.ad", ["{tmp}/nope.npz"], _nothing, 2, "no such file"),
    ("ad-npy-as-npz", "theory.ad", ["{tmp}/x.npz"], _npy_as_npz, 2, "x.npz"),
    ("ad-pickle", "theory.ad", ["{tmp}/pickled.npz"], _object_array, 2, "pickled.npz"),
    ("ad-bf16", "theory.ad", ["{tmp}/bf16.safetensors"], _bf16, 2, "BF16"),
    ("ad-zero-row", "theory.ad", ["{tmp}/zero.npz"], _zero_row, 2, "row 2"),
    ("ad-nan-row", "theory.ad", ["{tmp}/nan.npz"], _nan_row, 2, "NaN"),
    ("ad-bad-seed", "theory.ad", ["{tmp}/ok.npz", "--sample", "10", "--seed", "-1"], _pairs, 2, "--seed"),
    ("ad-device-nope", "theory.ad", ["{tmp}/ok.npz", "--backend", "torch", "--device", "nope"], _pairs, 2,
     "not a torch device"),
    ("ad-device-cuda", "theory.ad", ["{tmp}/ok.npz", "--backend", "torch", "--device", "cuda:9"], _pairs, 2,
     "CUDA"),
    ("ad-alpha-nan", "theory.ad", ["{tmp}/ok.npz", "--alpha", "nan"], _pairs, 2, "alpha"),
    ("ad-scores-folder", "theory.ad", ["{tmp}/ok.npz", "--scores", "{tmp}"], _pairs, 2, "*.csv"),
    ("sweep-ridge-inf", "simulate.sweep", ["--ridge-reg", "inf", "--dry-run"], _nothing, 2, "ridge"),
    ("sweep-spread-inf", "simulate.sweep", ["--text-spread", "inf", "--dry-run"], _nothing, 2, "text"),
    ("sweep-huge", "simulate.sweep", ["--poisoned-concepts", "0..1000000000", "--dry-run"], _nothing, 2,
     "more than 1,000,000 values"),
    ("sweep-huge-k", "simulate.sweep", ["--n-concepts", "2000000000", "--dry-run"], _nothing, 2, ""),
    ("sweep-seeds-word", "simulate.sweep", ["--seeds", "three", "--dry-run"], _nothing, 2, "--seeds"),
    ("sweep-empty-out", "simulate.sweep", ["--out", "", "--dry-run"], _nothing, 2, "empty"),
    ("sweep-out-file", "simulate.sweep", ["--poisoned-concepts", "0,1", "--n-concepts", "10", "--seeds", "1",
                                          "--out", "{tmp}/afile", "--quiet", "--no-plot"], _file_not_folder, 2,
     "not a folder"),
    ("sweep-dask-garbage", "simulate.sweep", ["--poisoned-concepts", "0,1", "--n-concepts", "10", "--seeds", "1",
                                              "--dask", "garbage://x", "--out", "{tmp}/o"], _nothing, 2, "Dask"),
    ("sweep-manifest-list", "simulate.sweep", ["--poisoned-concepts", "0,1", "--n-concepts", "10", "--seeds", "1",
                                               "--out", "{tmp}/out"], _damaged_manifest, 2, "manifest"),
    ("predict-dim-2", "simulate.predict", ["--n-concepts", "10", "--benign-per-concept", "2",
                                           "--poison-per-concept", "4", "--poisoned-concepts", "1", "--dim", "2"],
     _nothing, 2, "--dim"),
    ("predict-targets", "simulate.predict", ["--n-concepts", "10", "--benign-per-concept", "2",
                                             "--poison-per-concept", "4", "--poisoned-concepts", "1", "--dim", "8",
                                             "--targets", "closest"], _nothing, 2, "--targets"),
    ("experiments-workers-0", "simulate.experiments", ["phase", "--workers", "0"], _nothing, 2, "--workers"),
    ("run-threads-huge", "empirical.run", ["--preset", "micro", "--threads", "100000", "--dry-run"], _nothing, 2,
     "--threads"),
    ("run-empty-out", "empirical.run", ["--preset", "micro", "--out", ""], _nothing, 2, "empty"),
    ("run-device-nope", "empirical.run", ["--preset", "micro", "--device", "nope", "--dry-run"], _nothing, 2,
     "not a torch device"),
    ("run-preset", "empirical.run", ["--preset", "huge", "--dry-run"], _nothing, 2, "preset"),
    ("run-manifest-list", "empirical.run", ["--preset", "micro", "--poisoned-concepts", "0", "--out", "{tmp}/out",
                                            "--cache", "{tmp}/c"], _damaged_manifest, 2, "manifest"),
    ("run-own-data-missing", "empirical.run", ["--preset", "micro", "--train-data-dir", "{tmp}/nope",
                                               "--caption-template", "a {}", "--dry-run"], _nothing, 2,
     "does not exist"),
    ("embed-out-folder", "empirical.embed", ["--builtin", "--out", "{tmp}"], _nothing, 2, "--out"),
    ("embed-both", "empirical.embed", ["{tmp}", "--builtin", "--out", "{tmp}/e.npz"], _nothing, 2, "not both"),
    ("defence-type", "empirical.defence", ["--preset", "micro", "--poison-type", "acid", "--dry-run"], _nothing, 2,
     "poison type"),
    ("pretrained-on-file", "empirical.pretrained", ["tiny", "{tmp}/afile"], _file_not_folder, 2, "is a file"),
    ("pretrained-seed", "empirical.pretrained", ["tiny", "{tmp}/t", "--seed", "99999999999"], _nothing, 2,
     "--seed"),
    ("report-missing", "empirical.report", ["{tmp}/nothing"], _nothing, 2, "does not exist"),
    ("figures-unknown", "paper_figures", ["fig99", "--dry-run"], _nothing, 2, "unknown figure"),
    ("figures-results-file", "paper_figures", ["fig3", "--results", "{tmp}/afile", "--out", "{tmp}/o"],
     _file_not_folder, 2, "not a folder"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_hostile_input_is_one_line(case, tmp_path: Path):
    _, module, args, setup, status, phrase = case
    setup(tmp_path)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args]
    proc = subprocess.run([sys.executable, "-m", module, *argv], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == status, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and len(lines) == 1, proc.stderr[-2000:]
    assert phrase in lines[0], lines[0]
    after = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert after == before, f"{module} wrote {set(after) - set(before)}"
