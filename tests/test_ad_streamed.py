"""AD of pairs that do not fit in memory: shards on disk (npz, safetensors, memory-mapped .npy pairs) read block
by block give the in-memory numbers — exactly for the blocked kernel, within their intervals for the samplers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from theory.ad import pair_attribution, pair_attribution_streamed
from implosion_base.errors import InputError
from implosion_base.shards import open_shards
from implosion_base.pairs_file import save_pairs


def _data(n: int = 70, d: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = rng.normal(size=(n, d))
    v = t + 0.5 * rng.normal(size=(n, d))
    v[::9] = rng.normal(size=(len(v[::9]), d))  # some mismatched pairs
    return t, v


def _shards(tmp: Path, t: np.ndarray, v: np.ndarray, dtype=np.float64) -> list[Path]:
    """Three shards of one data set: an .npz, a .safetensors, and a memory-mapped .npy pair."""
    cuts = [0, 25, 40, len(t)]
    save_pairs(tmp / "a.npz", t[:25].astype(dtype), v[:25].astype(dtype))
    save_pairs(tmp / "b.safetensors", t[25:40].astype(dtype), v[25:40].astype(dtype))
    np.save(tmp / "text_emb_0003.npy", t[40:].astype(dtype))
    np.save(tmp / "img_emb_0003.npy", v[40:].astype(dtype))
    assert cuts[-1] == len(t)
    return [tmp / "a.npz", tmp / "b.safetensors", tmp / "img_emb_0003.npy"]


def test_streamed_attribution_equals_the_in_memory_one(tmp_path: Path):
    t, v = _data()
    src = open_shards(_shards(tmp_path, t, v))
    assert (src.n, src.d) == t.shape and list(src.offsets) == [0, 25, 40, 70]
    ref = pair_attribution(t, v, precision="float64")
    for rows in (7, 25, 1000):  # blocks inside, across and beyond shard borders
        got = pair_attribution_streamed(src, rows=rows, block=5, precision="float64")
        assert got.result.ad == pytest.approx(ref.result.ad, abs=1e-12)
        assert np.allclose(got.contribution, ref.contribution, atol=1e-14)
    bt, bv = src.block(20, 45)
    assert np.array_equal(bt, t[20:45]) and np.array_equal(bv, v[20:45])
    idx = np.array([69, 3, 30, 3, 41])
    tt, vv = src.take(idx)
    assert np.array_equal(tt, t[idx]) and np.array_equal(vv, v[idx])


def test_float16_npy_shards_are_read_on_demand_and_close(tmp_path: Path):
    """.npy shards are read row range by row range (never loaded whole, never memory-mapped), same numbers."""
    from implosion_base.npy_rows import NpyRows

    t, v = _data(40)
    np.save(tmp_path / "text_emb_0000.npy", t.astype(np.float16))
    np.save(tmp_path / "img_emb_0000.npy", v.astype(np.float16))
    src = open_shards([tmp_path])
    assert isinstance(src._text[0], NpyRows)
    assert np.array_equal(src.take(np.array([3, 4, 5, 30, 1]))[0], t.astype(np.float16)[[3, 4, 5, 30, 1]])
    got = pair_attribution_streamed(src, rows=16)
    ref = pair_attribution(t.astype(np.float16), v.astype(np.float16))
    assert got.result.ad == pytest.approx(ref.result.ad, abs=1e-6)


def test_sampled_row_sums_and_d_stru_are_unbiased_with_honest_intervals(tmp_path: Path):
    """Partners shared by a block of rows: over many seeds each pair's estimate averages to its exact row sum and
    D_stru to the exact one; the per-pair standard errors are calibrated and the block interval covers D_stru."""
    from theory.ad import structure_sampled

    t, v = _data(120, seed=2)
    src = open_shards(_shards(tmp_path, t, v))
    exact_att = pair_attribution(t, v, alpha=0.0)
    exact = exact_att.structure * 120 ** 2  # r_i
    runs = [structure_sampled(src, 30, seed=s, rows=20)[1] for s in range(200)]
    mean_est = np.mean([r.row_sums for r in runs], axis=0)
    assert np.max(np.abs(mean_est - exact) / exact) < 0.05
    z = np.concatenate([(r.row_sums - exact) / r.row_se for r in runs])
    assert 0.9 < np.mean(np.abs(z) < 1.96) < 0.99
    d = exact_att.result.d_stru
    assert abs(np.mean([r.d_stru for r in runs]) - d) < 0.003 * d
    covered = np.mean([r.d_stru_ci95[0] <= d <= r.d_stru_ci95[1] for r in runs])
    assert covered >= 0.9 and all(r.n_terms <= 120 * 30 for r in runs)


@pytest.mark.parametrize("damage, message", [
    ("partner", "missing (each text_emb_XXXX.npy needs its img_emb_XXXX.npy)"),
    ("width", "differs from the first shard's"),
    ("shape", "shapes differ"),
    ("name", "must be named text_emb_XXXX.npy"),
    ("empty-folder", "no embedding shards"),
    ("dtype", "text_emb_0001.npy is float16 but img_emb_0001.npy is float32"),
])
def test_bad_shards_are_named(tmp_path: Path, damage, message):
    t, v = _data(30)
    save_pairs(tmp_path / "a.npz", t, v)
    paths = [tmp_path / "a.npz"]
    if damage == "partner":
        np.save(tmp_path / "text_emb_0001.npy", t)
        paths.append(tmp_path / "text_emb_0001.npy")
    elif damage == "width":
        save_pairs(tmp_path / "b.npz", t[:, :3], v[:, :3])
        paths.append(tmp_path / "b.npz")
    elif damage == "shape":
        np.save(tmp_path / "text_emb_0002.npy", t)
        np.save(tmp_path / "img_emb_0002.npy", v[:10])
        paths.append(tmp_path / "text_emb_0002.npy")
    elif damage == "dtype":
        np.save(tmp_path / "text_emb_0001.npy", t.astype(np.float16))
        np.save(tmp_path / "img_emb_0001.npy", v.astype(np.float32))
        paths.append(tmp_path / "img_emb_0001.npy")
    elif damage == "name":
        np.save(tmp_path / "embeddings.npy", t)
        paths.append(tmp_path / "embeddings.npy")
    else:
        (tmp_path / "empty").mkdir()
        paths = [tmp_path / "empty"]
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        open_shards(paths)


def test_nan_rows_name_their_pairs(tmp_path: Path):
    t, v = _data(30)
    t[17, 2] = np.nan
    save_pairs(tmp_path / "a.npz", t, v)
    with pytest.raises(InputError, match="NaN"):
        pair_attribution_streamed(open_shards([tmp_path / "a.npz"]), rows=10)
