"""The audit's sampled pass as block tasks: the same numbers whatever the block size, in worker processes and on a
Dask cluster; a rerun after a kill reuses the recorded blocks; bad rows are named by shard and row."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dataset_audit.config import AuditConfig
from dataset_audit.execution import Execution
from dataset_audit.pipeline import audit
from dataset_audit.passes import sampled_pass
from theory.ad import pair_attribution, partner_group, structure_blocks
from implosion_base.errors import InputError
from implosion_base.shards import open_shards
from implosion_base.tasks import Task, TaskRecord, run_tasks

ROOT = Path(__file__).resolve().parents[1]


def _npy_shards(folder: Path, n_shards: int = 3, per: int = 700, d: int = 16, seed: int = 0) -> list[str]:
    """LAION-style float16 shards of a clustered space (8 concepts, a few dirty-label pairs)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(8, d))
    for k in range(n_shards):
        c = rng.integers(0, 8, size=per)
        t = centres[c] + 0.3 * rng.normal(size=(per, d))
        shown = np.where(rng.random(per) < 0.05, (c + 1) % 8, c)
        v = centres[shown] + 0.5 * rng.normal(size=(per, d))
        np.save(folder / f"text_emb_{k:04d}.npy", t.astype(np.float16))
        np.save(folder / f"img_emb_{k:04d}.npy", v.astype(np.float16))
    return [str(folder / f"text_emb_{k:04d}.npy") for k in range(n_shards)]


def _same(a, b) -> None:
    assert np.array_equal(a.terms.cos, b.terms.cos)
    assert np.array_equal(a.structure.row_sums, b.structure.row_sums)
    assert np.array_equal(a.structure.row_se, b.structure.row_se)
    assert a.structure.d_stru == b.structure.d_stru and a.structure.d_stru_ci95 == b.structure.d_stru_ci95
    assert (a.concept is None and b.concept is None) or np.array_equal(a.concept, b.concept)


def test_block_layouts_give_identical_numbers_and_an_unbiased_estimate(tmp_path: Path):
    paths = _npy_shards(tmp_path)
    src = open_shards(paths)
    centres = np.eye(8, 16)
    runs = [sampled_pass(src, None, partners=40, seed=3, rows=rows, centres=centres) for rows in (64, 200, 5000)]
    assert [len(structure_blocks(src.n, r)) for r in (64, 200, 5000)] == [32, 11, 1]  # G = 66 at n = 2,100
    for other in runs[1:]:
        _same(runs[0], other)
    t, v = src.block(0, src.n)
    exact = pair_attribution(t.astype(np.float64), v.astype(np.float64), alpha=0.0).result.d_stru
    lo, hi = runs[0].structure.d_stru_ci95
    assert lo <= exact <= hi and hi - lo < 0.05 * exact


def test_worker_processes_and_a_dask_cluster_give_the_numbers_of_one_process(tmp_path: Path):
    distributed = pytest.importorskip("distributed")
    paths = _npy_shards(tmp_path)
    src = open_shards(paths)
    centres = np.eye(8, 16)
    here = sampled_pass(src, paths, partners=40, seed=1, rows=300, centres=centres)
    procs = sampled_pass(src, paths, partners=40, seed=1, rows=300, centres=centres, workers=2)
    assert procs.how["execution"] == "2 local processes" and procs.how["blocks"] == 8
    _same(here, procs)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as c:
        on_dask = sampled_pass(src, paths, partners=40, seed=1, rows=300, centres=centres, dask=c.scheduler_address)
    assert on_dask.how["execution"].startswith("Dask scheduler tcp://127.0.0.1")
    _same(here, on_dask)


@pytest.mark.slow
def test_a_local_ray_instance_gives_the_numbers_of_one_process(tmp_path: Path):
    """The Ray adapter (implosion_base.tasks, --ray local): every block on a Ray instance started for the run,
    bit-identical to this process; and the whole audit from the command line."""
    pytest.importorskip("ray")
    paths = _npy_shards(tmp_path)
    src = open_shards(paths)
    centres = np.eye(8, 16)
    here = sampled_pass(src, paths, partners=40, seed=1, rows=300, centres=centres)
    on_ray = sampled_pass(src, paths, partners=40, seed=1, rows=300, centres=centres, ray="local")
    assert on_ray.how["execution"] == "Ray at local" and on_ray.how["blocks"] == 8
    _same(here, on_ray)
    for flag, out in (([], "one"), (["--ray", "local"], "ray")):
        r = subprocess.run([sys.executable, "-m", "dataset_audit", *paths, "--out", str(tmp_path / out), "--no-predict",
                            "--n-concepts", "8", "--exact-max", "50", *flag], cwd=ROOT, capture_output=True, text=True,
                           timeout=300)
        assert r.returncode == 0, r.stderr
    assert (tmp_path / "one" / "pairs.csv").read_bytes() == (tmp_path / "ray" / "pairs.csv").read_bytes()


def test_a_rerun_reuses_the_recorded_blocks_and_gets_the_same_numbers(tmp_path: Path):
    paths = _npy_shards(tmp_path)
    src = open_shards(paths)
    record = tmp_path / "blocks"
    ident = {"shards": src.names}
    full = sampled_pass(src, None, partners=40, seed=2, rows=300, record_dir=record, identity=ident)
    files = sorted(record.glob("rows-*.npz"))
    assert len(files) == full.how["blocks"] == 8
    for f in files[2:5]:  # as if killed before these three blocks finished
        f.unlink()
    said = []
    again = sampled_pass(src, None, partners=40, seed=2, rows=5000, record_dir=record, identity=ident, log=said.append)
    assert again.how["blocks_resumed"] == 5 and again.how["blocks"] == 8  # the record's layout, not rows=5000
    assert said == [f"resumed: 5 of 8 blocks were recorded in {record}"]
    _same(full, again)
    with pytest.raises(InputError, match="records tasks of another computation .*seed"):
        sampled_pass(src, None, partners=40, seed=9, rows=300, record_dir=record, identity=ident)


def test_a_failed_task_keeps_the_finished_ones_and_the_rerun_runs_only_the_rest(tmp_path: Path):
    calls = []

    def task(i: int, fail: bool) -> dict:
        calls.append(i)
        if fail and i == 3:
            raise RuntimeError("killed")
        return {"x": np.full(2, i)}

    record = TaskRecord(tmp_path / "r", {"what": "test"})
    with pytest.raises(RuntimeError):
        run_tasks([Task(f"t{i}", task, (i, True)) for i in range(6)], record=record)
    assert record.done() == {"t0", "t1", "t2"}
    calls.clear()
    out = run_tasks([Task(f"t{i}", task, (i, False)) for i in range(6)], record=TaskRecord(tmp_path / "r", {"what": "test"}))
    assert calls == [3, 4, 5] and [int(out[f"t{i}"]["x"][0]) for i in range(6)] == list(range(6))


def test_the_audit_report_is_the_same_with_workers(tmp_path: Path):
    paths = _npy_shards(tmp_path)
    src = open_shards(paths)
    cfg = AuditConfig(predict=False, exact_max=100, partners=40, n_concepts=8)
    one = audit(src, cfg)
    two = audit(src, cfg, execution=Execution(workers=2, paths=tuple(paths)))
    for key in ("score", "flagged", "rank", "concept", "cos"):
        assert np.array_equal(one["pairs"][key], two["pairs"][key]), key
    assert {k: v for k, v in one["summary"].items() if k != "ad_why"} == \
        {k: v for k, v in two["summary"].items() if k != "ad_why"} | {"execution": one["summary"]["execution"]}


def test_bad_rows_are_named_by_shard_and_row(tmp_path: Path):
    paths = _npy_shards(tmp_path)
    t = np.load(tmp_path / "text_emb_0001.npy")
    t[5] = np.nan
    np.save(tmp_path / "text_emb_0001.npy", t)
    with pytest.raises(InputError, match=r"shard 0001: text row 5 \(pair 705\) is NaN or inf"):
        sampled_pass(open_shards(paths), None, partners=10, seed=0, rows=300)
    v = np.load(tmp_path / "img_emb_0002.npy")
    t[5] = 1.0
    np.save(tmp_path / "text_emb_0001.npy", t)
    v[0] = 0
    np.save(tmp_path / "img_emb_0002.npy", v)
    with pytest.raises(InputError, match=r"shard 0002: image row 0 \(pair 1400\) is a zero vector"):
        sampled_pass(open_shards(paths), None, partners=10, seed=0, rows=300)


@pytest.mark.parametrize("extra, message", [
    (["--workers", "-1"], "--workers must be in [0, inf], got -1"),
    (["--workers", "2", "--dask", "tcp://127.0.0.1:9"], "give --workers or --dask, not both"),
    (["--dask", "tcp://127.0.0.1:9"], "--dask tcp://127.0.0.1:9: cannot reach a Dask scheduler"),
    (["--ray", "local", "--dask", "tcp://127.0.0.1:9"], "give --dask or --ray, not both"),
])
def test_execution_options_refuse_bad_input_in_one_line(tmp_path: Path, extra, message):
    paths = _npy_shards(tmp_path, n_shards=1, per=200)
    r = subprocess.run([sys.executable, "-m", "dataset_audit", *paths, "--out", str(tmp_path / "out"), "--no-predict",
                        "--n-concepts", "8", "--exact-max", "50", *extra], cwd=ROOT, capture_output=True, text=True,
                       timeout=120, env={**os.environ, "DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "3s"})
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out" / "report.json").exists()


def test_partner_groups_depend_on_n_alone():
    assert partner_group(100) == 4 and partner_group(4_000_000) == 4096 and partner_group(2) == 1
    for n, rows in ((1000, 7), (1000, 100), (5000, 10**6)):
        blocks = structure_blocks(n, rows)
        assert blocks[0][0] == 0 and blocks[-1][1] == n
        assert all(a % partner_group(n) == 0 for a, _ in blocks)


def test_a_rewritten_shard_makes_the_record_another_computation_s(tmp_path: Path):
    """The CLI records blocks under the shard files' sizes and modification times: a shard rewritten with the same
    shape after a kill is refused, never silently mixed with blocks of the old content."""
    import os

    paths = _npy_shards(tmp_path, n_shards=2, per=400)
    out = tmp_path / "out"
    cfg = AuditConfig(predict=False, exact_max=100, partners=20, n_concepts=8)
    audit(open_shards(paths), cfg, execution=Execution(paths=tuple(paths), record_dir=out / "blocks"))
    assert any((out / "blocks").glob("rows-*.npz"))  # audit() keeps them; the CLI removes them after the report
    t = np.load(tmp_path / "text_emb_0001.npy")
    np.save(tmp_path / "text_emb_0001.npy", t[::-1].copy())
    os.utime(tmp_path / "text_emb_0001.npy", ns=(1, 1))
    with pytest.raises(InputError, match="records tasks of another computation .*files"):
        audit(open_shards(paths), cfg, execution=Execution(paths=tuple(paths), record_dir=out / "blocks"))


def test_the_cli_resumes_from_recorded_blocks_and_removes_them_after_the_report(tmp_path: Path):
    paths = _npy_shards(tmp_path, n_shards=2, per=400)
    out = tmp_path / "out"
    cfg = AuditConfig(predict=False, exact_max=100, partners=20, n_concepts=8)
    audit(open_shards(paths), cfg, execution=Execution(paths=tuple(paths), record_dir=out / "blocks"))
    blocks = sorted((out / "blocks").glob("rows-*.npz"))
    for f in blocks[1:]:  # as if killed after the first block
        f.unlink()
    r = subprocess.run([sys.executable, "-m", "dataset_audit", *paths, "--out", str(out), "--no-predict",
                        "--exact-max", "100", "--partners", "20", "--n-concepts", "8"], cwd=ROOT, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert f"resumed: 1 of {len(blocks)} blocks were recorded in {out / 'blocks'}" in r.stderr
    assert (out / "report.json").is_file() and not (out / "blocks").exists()
