"""Reliability II beyond one command line: two writers of one folder, what a tool may remove, consoles that
cannot show our characters, hostile image folders, a report given one folder twice, the audit's resume stamp and
one-line warnings. Each test is a defect of the replay, shown failing before its fix."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from implosion_base.errors import InputError
from implosion_base.files import LOCK_NAME, atomic_path, atomic_write_text, hold_output

ROOT = Path(__file__).resolve().parents[1]
SWEEP = ["--poisoned-concepts", "0..200:10", "--n-concepts", "200", "--seeds", "0..3", "--quiet", "--no-plot"]


def _run(module: str, *args: str, env: dict | None = None, cwd: Path | None = None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})}, cwd=cwd, **kw)


# --- H1/M14: one writer per output folder ---------------------------------------------------------------------

def test_a_held_folder_refuses_a_second_writer_naming_the_holder(tmp_path: Path):
    out = tmp_path / "out"
    with hold_output(out):
        proc = _run("simulate.sweep", "--poisoned-concepts", "0,1", "--n-concepts", "10", "--seeds", "0",
                    "--dim", "8", "--quiet", "--no-plot", "--out", str(out))
        assert proc.returncode == 2, proc.stderr
        line, = proc.stderr.strip().splitlines()
        assert "in use by another run" in line and f"pid {os.getpid()}" in line
        assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]  # the refused run wrote nothing
    assert not out.joinpath(LOCK_NAME).exists()  # the holder removes its lock


def test_two_sweeps_at_once_never_mix(tmp_path: Path):
    """The replay's H1: --dim 32 and --dim 24 into one --out at the same moment. One runs; the other is refused
    (held folder, or once the first has written results, another configuration) — 84 rows of one configuration."""
    out = tmp_path / "out"
    procs = [subprocess.Popen([sys.executable, "-m", "simulate.sweep", *SWEEP, "--dim", d, "--out", str(out)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for d in ("32", "24")]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    codes = sorted(rc for rc, _ in results)
    assert codes == [0, 2], results
    refused = next(err for rc, err in results if rc == 2)
    assert "in use by another run" in refused or "different configuration" in refused
    rows = (out / "results.csv").read_text().splitlines()[1:]
    assert len(rows) == 21 * 4 and len({tuple(r.split(",")[:2]) for r in rows}) == 84
    manifest = json.loads((out / "manifest.json").read_text())
    winner = "32" if results[0][0] == 0 else "24"
    assert manifest["config"]["concepts"]["dim"] == int(winner) and manifest["status"] == "complete"


def test_the_same_sweep_twice_at_once_records_each_point_once(tmp_path: Path):
    out = tmp_path / "out"
    procs = [subprocess.Popen([sys.executable, "-m", "simulate.sweep", *SWEEP, "--dim", "16", "--out", str(out)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    codes = sorted(p.wait(timeout=300) for p in procs)
    assert codes[0] == 0 and codes[1] in (0, 2)  # the second either waited its turn and resumed, or was refused
    rows = (out / "results.csv").read_text().splitlines()[1:]
    assert len(rows) == 84 == len({tuple(r.split(",")[:2]) for r in rows})
    rerun = _run("simulate.sweep", *SWEEP, "--dim", "16", "--out", str(out))
    assert rerun.returncode == 0, rerun.stderr  # and a rerun needs no hand editing


def test_a_killed_writers_lock_is_taken_over(tmp_path: Path):
    out = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom implosion_base.files import hold_output\n"
                               f"with hold_output(__import__('pathlib').Path({str(out)!r})):\n"
                               "    print('held', flush=True); time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    holder.kill()
    holder.wait()
    assert (out / LOCK_NAME).exists()  # a SIGKILL leaves the file, but the lock died with the process
    proc = _run("simulate.sweep", "--poisoned-concepts", "0,1", "--n-concepts", "10", "--seeds", "0", "--dim", "8",
                "--quiet", "--no-plot", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "no longer runs" in proc.stderr and "taken over" in proc.stderr
    assert not (out / LOCK_NAME).exists()


def test_every_writer_takes_the_folder(tmp_path: Path):
    """A held folder refuses each writer of the replay's list, exit 2, one line (defence, audit, predict,
    export, embed and run included)."""
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "ok.npz", text=rng.normal(size=(10, 4)), image=rng.normal(size=(10, 4)))
    run = tmp_path / "run1"
    run.mkdir()
    (run / "results.csv").write_text("seed,c_p\n0,0\n")
    out = tmp_path / "held"
    commands = {
        "empirical.defence": ["--preset", "micro", "--poison-type", "dirty", "--poisoned-concepts", "2", "--out",
                              str(out), "--cache", str(tmp_path / "c")],
        "dataset_audit": [str(tmp_path / "ok.npz"), "--out", str(out), "--no-predict"],
        "simulate.predict": ["--n-concepts", "10", "--benign-per-concept", "2", "--poison-per-concept", "4",
                             "--poisoned-concepts", "1", "--dim", "8", "--out", str(out)],
        "paper_figures.export": [str(run), "--into", str(out)],
        "empirical.run": ["--preset", "micro", "--poisoned-concepts", "0", "--out", str(out), "--cache",
                          str(tmp_path / "c"), "--quiet"],
    }
    with hold_output(out):
        for module, args in commands.items():
            proc = _run(module, *args)
            assert proc.returncode == 2, (module, proc.stderr[-800:])
            assert "in use by another run" in proc.stderr.strip().splitlines()[-1], (module, proc.stderr[-800:])
        assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME], module
    target = tmp_path / "e.npz"
    with hold_output(target, folder=False):
        proc = _run("empirical.embed", "--builtin", "--preset", "micro", "--out", str(target), "--cache",
                    str(tmp_path / "c"), "--quiet")
        assert proc.returncode == 2 and "in use by another run" in proc.stderr, proc.stderr[-800:]


# --- H2/H4: never remove what we did not create ---------------------------------------------------------------

def test_atomic_path_never_replaces_a_users_folder(tmp_path: Path):
    mine = tmp_path / "old.csv"
    mine.mkdir()
    (mine / "keep.txt").write_text("mine")
    with pytest.raises(InputError, match="did not make"):
        atomic_write_text(mine, "x")
    assert (mine / "keep.txt").read_text() == "mine"
    ours = tmp_path / "model"
    with atomic_path(ours) as tmp:
        tmp.mkdir()
        (tmp / "w").write_text("1")
    with atomic_path(ours) as tmp:  # a folder this toolkit made is replaced whole
        tmp.mkdir()
        (tmp / "w").write_text("2")
    assert (ours / "w").read_text() == "2"
    with pytest.raises(InputError, match="a file is never written over it"):
        atomic_write_text(ours, "x")
    assert (ours / "w").read_text() == "2"


def test_the_audit_removes_only_its_own_blocks(tmp_path: Path):
    """H2 in sampled mode: the audit's own record of blocks goes once the report is written."""
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "ok.npz", text=rng.normal(size=(40, 4)), image=rng.normal(size=(40, 4)))
    proc = _run("dataset_audit", str(tmp_path / "ok.npz"), "--out", str(tmp_path / "rep"), "--exact-max", "10",
                "--no-predict", "--n-concepts", "2")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "rep" / "report.md").is_file() and not (tmp_path / "rep" / "blocks").exists()


def test_export_into_its_own_parent_keeps_the_run(tmp_path: Path):
    run = tmp_path / "results" / "run1"
    (run / "models").mkdir(parents=True)
    (run / "models" / "unet.safetensors").write_bytes(b"weights")
    (run / "results.csv").write_text("seed,c_p\n0,0\n")
    proc = _run("paper_figures.export", str(run), "--into", str(tmp_path / "results"))
    assert proc.returncode == 2 and "its source" in proc.stderr
    assert (run / "models" / "unet.safetensors").read_bytes() == b"weights"


# --- M7: consoles that cannot encode our output ---------------------------------------------------------------

@pytest.mark.parametrize("env", [{"PYTHONIOENCODING": "ascii"}, {"LC_ALL": "C", "LANG": "C"}],
                         ids=["ascii", "C-locale"])
def test_a_non_utf8_console_never_fails_a_run(tmp_path: Path, env: dict):
    sweep = _run("simulate.sweep", "--poisoned-concepts", "0,2", "--n-concepts", "10", "--seeds", "0,1", "--dim",
                 "8", "--quiet", "--out", str(tmp_path / "s"), env=env)
    assert sweep.returncode == 0, sweep.stderr
    assert json.loads((tmp_path / "s" / "manifest.json").read_text(encoding="utf-8"))["status"] == "complete"
    assert (tmp_path / "s" / "ad_vs_cp.png").is_file()
    predict = _run("simulate.predict", "--n-concepts", "10", "--benign-per-concept", "2", "--poison-per-concept",
                   "4", "--poisoned-concepts", "1", "--dim", "8", "--seeds", "0", "--out", str(tmp_path / "p"),
                   env=env)
    assert predict.returncode == 0, predict.stderr
    assert (tmp_path / "p" / "prediction.json").is_file()
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "ok.npz", text=rng.normal(size=(30, 4)), image=rng.normal(size=(30, 4)))
    audit = _run("dataset_audit", str(tmp_path / "ok.npz"), "--out", str(tmp_path / "a"), "--n-concepts", "2",
                 env=env)
    assert audit.returncode == 0, audit.stderr
    assert (tmp_path / "a" / "report.md").is_file() and (tmp_path / "a" / "scores.png").is_file()
    (tmp_path / "a" / "report.md").read_text(encoding="utf-8")  # files are UTF-8 whatever the console


# --- M8: hostile image folders: a line skipped, never the folder, never a hang ---------------------------------

def _image(path: Path) -> None:
    from PIL import Image

    Image.fromarray(np.full((8, 8, 3), 128, np.uint8)).save(path)


def test_hostile_folder_lines_are_skipped(tmp_path: Path):
    pytest.importorskip("PIL")
    from empirical.folder_data import load_image_folder

    folder = tmp_path / "f"
    folder.mkdir()
    _image(folder / "a.png")
    _image(folder / "b.png")
    os.mkfifo(folder / "fifo.png")
    (folder / "loop1.png").symlink_to(folder / "loop2.png")
    (folder / "loop2.png").symlink_to(folder / "loop1.png")
    lines = [json.dumps({"file_name": "a.png", "text": "a"}), json.dumps({"file_name": "fifo.png", "text": "f"}),
             json.dumps({"file_name": "loop1.png", "text": "l"}), "[" * 100_000 + "]" * 100_000,
             json.dumps({"file_name": "b.png", "text": "x" * 200_000}), json.dumps({"file_name": "b.png", "text": "b"})]
    (folder / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        images, texts, _ = load_image_folder(folder, size=8)
    assert time.perf_counter() - t0 < 30
    assert texts == ["a", "b"] and images.shape == (2, 8, 8, 3)
    joined = " | ".join(str(w.message) for w in caught)
    assert "no regular file" in joined and "no usable file" in joined and "not JSON objects" in joined
    assert "captions over" in joined


def test_csv_metadata_with_a_huge_caption_and_a_bom(tmp_path: Path):
    pytest.importorskip("PIL")
    from empirical.folder_data import load_image_folder

    folder = tmp_path / "f"
    folder.mkdir()
    _image(folder / "a.png")
    body = "file_name,text\n" + "a.png,ok\n" + "a.png," + "x" * 200_000 + "\n" + "a.png,fine\n"
    (folder / "metadata.csv").write_bytes(b"\xef\xbb\xbf" + body.encode())  # Excel's UTF-8 with a BOM
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        _, texts, _ = load_image_folder(folder, size=8)
    assert texts == ["ok", "fine"]


def test_side_metadata_with_a_bom_keeps_its_file_names(tmp_path: Path):
    from implosion_base.pairs_file import load_side_metadata

    path = tmp_path / "meta.csv"
    path.write_bytes(b"\xef\xbb\xbffile_name,caption\na.png,one\nb.png,two\n")
    labels = load_side_metadata(path, 2)
    assert list(labels["file_name"]) == ["a.png", "b.png"] and list(labels["caption"]) == ["one", "two"]


# --- M13: a folder named twice counts once ---------------------------------------------------------------------

def test_report_counts_a_folder_given_twice_once(tmp_path: Path):
    src = ROOT / "docs" / "data" / "emp-cpu"
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.csv").write_bytes((src / "results.csv").read_bytes())
    once = _run("empirical.report", str(run), "--no-plot", "--json", str(tmp_path / "once.json"))
    twice = _run("empirical.report", str(run), str(tmp_path / "." / "run"), "--no-plot", "--json",
                 str(tmp_path / "twice.json"))
    assert once.returncode == 0 and twice.returncode == 0, twice.stderr
    assert "counted once" in twice.stderr
    assert json.loads((tmp_path / "once.json").read_text()) == json.loads((tmp_path / "twice.json").read_text())
    assert once.stdout.replace(str(tmp_path / "once.json"), "") == twice.stdout.replace(str(tmp_path / "twice.json"), "")


# --- M15: an audit whose report folder lies inside the shard folder still resumes ------------------------------

def test_the_audit_stamp_ignores_the_report_folder_inside_the_shards(tmp_path: Path):
    from dataset_audit.execution import file_stamps as _file_stamps

    shards = tmp_path / "shards"
    shards.mkdir()
    rng = np.random.default_rng(0)
    np.savez(shards / "a.npz", text=rng.normal(size=(10, 4)), image=rng.normal(size=(10, 4)))
    before = _file_stamps([str(shards)])
    (shards / "report" / "blocks").mkdir(parents=True)
    (shards / "report" / "blocks" / "block-0.npz").write_bytes(b"x")
    (shards / ".lockish").write_text("x")
    assert _file_stamps([str(shards)]) == before


# --- Low: warnings are one line naming the problem ------------------------------------------------------------

def test_a_warning_is_one_line_without_its_source(tmp_path: Path):
    code = ("import warnings\nfrom implosion_base.cli import run_main\n"
            "def main(argv):\n    warnings.warn('first\\nsecond part', UserWarning)\n    return 0\n"
            "run_main(main, [], prog='p')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    assert proc.stderr.strip().splitlines() == ["warning: first second part"]
