"""``python -m simulate.sweep --workers / --dask``: the same numbers as one process, every finished point kept when
the run is killed, no orphaned worker, no more workers than seeds."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from simulate.sweep import main
from sweep_helpers import ROOT, SMALL, _assert_same_numbers, _rows


def test_workers_give_the_same_numbers(tmp_path: Path):
    base = [*SMALL, "--concepts", "0..20:10", "--seeds", "0,1", "--quiet", "--no-plot"]
    assert main([*base, "--out", str(tmp_path / "serial")]) == 0
    assert main([*base, "--out", str(tmp_path / "par"), "--workers", "2"]) == 0
    _assert_same_numbers(_rows(tmp_path / "serial"), _rows(tmp_path / "par"))

def test_dask_local_cluster_gives_the_same_numbers(tmp_path: Path):
    distributed = pytest.importorskip("dask.distributed")
    base = [*SMALL, "--concepts", "0..20:10", "--seeds", "0,1", "--quiet", "--no-plot"]
    assert main([*base, "--out", str(tmp_path / "serial")]) == 0
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as cluster:
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
        assert main([*base, "--out", str(tmp_path / "dask"), "--dask", cluster.scheduler_address]) == 0
    _assert_same_numbers(_rows(tmp_path / "serial"), _rows(tmp_path / "dask"))

def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(x) for x in (task / "children").read_text().split()]
        except OSError:
            pass
    return out

#: The killed runs' command (the output folder is appended).
KILLED = [sys.executable, "-m", "simulate.sweep", "--concepts", "0..400:4", "--n-concepts", "500", "--seeds", "0,1",
          "--dim", "64", "--no-plot", "--quiet"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict:
    """The rows of one uninterrupted sequential run of :data:`KILLED` (both signals compare with it)."""
    seq = tmp_path_factory.mktemp("seq")
    assert subprocess.run([*KILLED, "--workers", "1", "--out", str(seq)], cwd=ROOT, capture_output=True,
                          timeout=300).returncode == 0
    return {(int(r["c_p"]), int(r["seed"])): {k: v for k, v in r.items() if k != "seconds"}
            for r in csv.DictReader(open(seq / "results.csv"))}


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize("sig", ["INT", "KILL"])
def test_workers_keep_finished_points_and_leave_no_orphans(tmp_path: Path, sig, uninterrupted):
    """--workers 2 killed mid-run (Ctrl-C or SIGKILL): the rows finished so far are in results.csv, the workers
    exit, and a rerun completes to exactly the numbers of an uninterrupted sequential run."""
    import signal
    import time

    out = tmp_path / "w"
    cmd = [*KILLED, "--workers", "2", "--out", str(out)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    table = out / "results.csv"
    deadline = time.time() + 60
    while time.time() < deadline and (not table.exists() or len(table.read_text().splitlines()) < 6):
        time.sleep(0.05)
    kids = _children(proc.pid)
    assert len(kids) >= 2 and proc.poll() is None
    proc.send_signal(signal.SIGINT if sig == "INT" else signal.SIGKILL)
    proc.wait(timeout=60)
    kept = len(table.read_text().splitlines()) - 1
    assert kept >= 5
    deadline = time.time() + 20
    while time.time() < deadline and any(Path(f"/proc/{k}").exists() and
                                         "Z" not in Path(f"/proc/{k}/stat").read_text().split()[2] for k in kids):
        time.sleep(0.1)
    assert not any(Path(f"/proc/{k}").exists() and "Z" not in Path(f"/proc/{k}/stat").read_text().split()[2]
                   for k in kids), "orphaned workers"
    assert subprocess.run(cmd, cwd=ROOT, capture_output=True, timeout=300).returncode == 0
    got = {(int(r["c_p"]), int(r["seed"])): {k: v for k, v in r.items() if k != "seconds"}
           for r in csv.DictReader(open(table))}
    assert got == uninterrupted

@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")
def test_workers_are_capped_at_the_seeds_to_run(tmp_path: Path):
    """--workers 16 for 2 seeds starts 2 worker processes, not 16."""
    import time

    out = tmp_path / "w"
    cmd = [sys.executable, "-m", "simulate.sweep", "--concepts", "0..400:4", "--n-concepts", "500", "--seeds", "0,1",
           "--dim", "64", "--workers", "16", "--no-plot", "--quiet", "--out", str(out)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    table = out / "results.csv"
    deadline = time.time() + 60
    most = 0
    while time.time() < deadline and proc.poll() is None:
        most = max(most, len(_children(proc.pid)))
        if table.exists() and len(table.read_text().splitlines()) > 3:
            break
        time.sleep(0.05)
    proc.kill()
    proc.wait(timeout=60)
    assert 1 <= most <= 2
