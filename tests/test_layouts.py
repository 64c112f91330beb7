"""The layouts a data set's embeddings come in, each written as its tool writes it (file names, dtypes, parquet
schema) and audited: clip-retrieval's img_emb/ text_emb/ metadata/ siblings, DataComp's NAME.npz + NAME.parquet,
paired .npy in one folder (with parquet metadata), pairs files; shards in number order; bad shards named, exit 2,
nothing written."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from implosion_base.errors import InputError
from implosion_base.shards import open_shards

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
ROOT = Path(__file__).resolve().parents[1]


def _pairs(n: int, d: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n matched pairs of 4 concepts, float16 unit rows (as clip-retrieval writes them)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(4, d))
    c = np.arange(n) % 4
    t = centres[c] + 0.3 * rng.normal(size=(n, d))
    v = centres[c] + 0.3 * rng.normal(size=(n, d))
    unit = lambda x: (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float16)  # noqa: E731
    return unit(t), unit(v)


def _clip_retrieval(root: Path, sizes: list[int], d: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """``clip_inference``'s output: N zero-padded to the partition count, float16 .npy, parquet metadata with
    image_path, caption and the data set's own columns (url, key)."""
    width = int(math.log10(len(sizes))) + 1
    for sub in ("img_emb", "text_emb", "metadata"):
        (root / sub).mkdir(parents=True)
    texts, images = [], []
    for k, n in enumerate(sizes):
        t, v = _pairs(n, d, seed=k)
        tag = str(k).zfill(width)
        np.save(root / "img_emb" / f"img_emb_{tag}.npy", v)
        np.save(root / "text_emb" / f"text_emb_{tag}.npy", t)
        pq.write_table(pa.table({"image_path": [f"{k}/{i:05d}.jpg" for i in range(n)],
                                 "caption": [f"caption {k}-{i}" for i in range(n)],
                                 "url": [f"https://example.org/{k}/{i}" for i in range(n)],
                                 "key": [f"{k:05d}{i:04d}" for i in range(n)]}),
                       root / "metadata" / f"metadata_{tag}.parquet")
        texts.append(t)
        images.append(v)
    return np.concatenate(texts), np.concatenate(images)


def test_clip_retrieval_layout_is_read_in_partition_order_with_its_metadata(tmp_path: Path):
    t, v = _clip_retrieval(tmp_path / "emb", [30, 20, 25, 10, 15, 12, 9, 8, 7, 11, 13])  # 11 partitions: 00..10
    src = open_shards([tmp_path / "emb"])
    assert src.n == len(t) and src.d == 16 and src.dtype == np.float16
    a, b = src.block(0, src.n)
    assert np.array_equal(a, t) and np.array_equal(b, v)
    assert src.names[:3] == ["00", "01", "02"] and src.names[-1] == "10"
    assert src.labels["image_path"][30] == "1/00000.jpg" and src.labels["url"][0] == "https://example.org/0/0"
    assert src.layouts == ["clip-retrieval (img_emb/, text_emb/, metadata/)"]


def test_same_folder_npy_shards_are_read_in_number_order_not_by_name(tmp_path: Path):
    parts = {}
    for k in (9, 10, 2):
        t, v = _pairs(5 + k, seed=k)
        np.save(tmp_path / f"text_emb_{k}.npy", t)
        np.save(tmp_path / f"img_emb_{k}.npy", v)
        pq.write_table(pa.table({"caption": [f"c{k}-{i}" for i in range(5 + k)]}), tmp_path / f"metadata_{k}.parquet")
        parts[k] = t
    src = open_shards([tmp_path])
    assert src.names == ["2", "9", "10"]  # 10 after 9
    assert np.array_equal(src.block(0, src.n)[0], np.concatenate([parts[2], parts[9], parts[10]]))
    assert src.labels["caption"][0] == "c2-0" and src.labels["caption"][-1] == "c10-14"


def _datacomp(root: Path, n: int = 40) -> dict[str, np.ndarray]:
    root.mkdir(parents=True)
    t14, v14 = _pairs(n, 24, seed=1)
    t32, v32 = _pairs(n, 16, seed=2)
    np.savez(root / "00000000.npz", l14_img=v14, l14_txt=t14, b32_img=v32, b32_txt=t32)
    pq.write_table(pa.table({"uid": [f"{i:032x}" for i in range(n)], "url": [f"https://x/{i}" for i in range(n)],
                             "text": [f"text {i}" for i in range(n)]}), root / "00000000.parquet")
    return {"l14": t14, "b32": t32}


def test_datacomp_features_beside_a_uid_parquet(tmp_path: Path):
    feats = _datacomp(tmp_path / "dc")
    src = open_shards([tmp_path / "dc"])
    assert src.d == 24 and np.array_equal(src.block(0, src.n)[0], feats["l14"])  # l14 when present
    assert src.labels["uid"][3] == f"{3:032x}" and src.labels["text"][3] == "text 3"
    b32 = open_shards([tmp_path / "dc"], features="b32")
    assert b32.d == 16 and np.array_equal(b32.block(0, b32.n)[0], feats["b32"])


@pytest.mark.parametrize("layout", ["clip-retrieval", "datacomp"])
def test_the_audit_reads_each_layout_and_carries_its_metadata_to_pairs_csv(tmp_path: Path, layout):
    if layout == "clip-retrieval":
        _clip_retrieval(tmp_path / "emb", [40, 40])
        columns = ["image_path", "caption", "url", "key"]
    else:
        _datacomp(tmp_path / "emb", 80)
        columns = ["uid", "url", "text"]
    out = tmp_path / "report"
    proc = subprocess.run([sys.executable, "-m", "dataset_audit", str(tmp_path / "emb"), "--n-concepts", "4",
                           "--no-predict", "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    header = (out / "pairs.csv").read_text(encoding="utf-8").splitlines()[0].split(",")
    assert header[:2] == ["index", "shard"] and header[2:2 + len(columns)] == columns
    assert "read as " in (out / "report.md").read_text(encoding="utf-8")


def _bad_partitions(root: Path) -> None:
    _clip_retrieval(root, [5, 5])
    (root / "img_emb" / "img_emb_1.npy").unlink()


def _bad_metadata(root: Path) -> None:
    _clip_retrieval(root, [5, 6])
    pq.write_table(pa.table({"caption": ["x"] * 4}), root / "metadata" / "metadata_1.parquet")


def _one_d(root: Path) -> None:
    root.mkdir()
    np.save(root / "text_emb_0.npy", np.ones(5, np.float16))
    np.save(root / "img_emb_0.npy", np.ones(5, np.float16))


def _object(root: Path) -> None:
    root.mkdir()
    np.save(root / "text_emb_0.npy", np.array([[1, "a"]], dtype=object), allow_pickle=True)
    np.save(root / "img_emb_0.npy", np.ones((1, 2), np.float16))


def _widths(root: Path) -> None:
    root.mkdir()
    for k, d in ((0, 8), (1, 6)):
        t, v = _pairs(5, d, seed=k)
        np.save(root / f"text_emb_{k}.npy", t)
        np.save(root / f"img_emb_{k}.npy", v)


def _dtypes(root: Path) -> None:
    root.mkdir()
    for k, dtype in ((0, np.float16), (1, np.float32)):
        t, v = _pairs(5, 8, seed=k)
        np.save(root / f"text_emb_{k}.npy", t.astype(dtype))
        np.save(root / f"img_emb_{k}.npy", v.astype(dtype))


def _no_layout(root: Path) -> None:
    root.mkdir()
    (root / "notes.txt").write_text("no embeddings here")


@pytest.mark.parametrize("make, phrase", [
    (_bad_partitions, "hold different partitions (first unmatched: 1.npy)"),
    (_bad_metadata, "metadata_1.parquet"),
    (_one_d, "expected a 2-D float16/32/64 array"),
    (_object, "Python objects"),
    (_widths, "width 6 differs"),
    (_dtypes, "one data set's shards share a dtype"),
    (_no_layout, "no embedding shards in a known layout"),
], ids=["partitions", "metadata-length", "1-d", "object", "widths", "dtypes", "no-layout"])
def test_bad_shards_are_named_in_one_line_and_nothing_is_written(tmp_path: Path, make, phrase):
    make(tmp_path / "emb")
    with pytest.raises(InputError, match="emb"):
        open_shards([tmp_path / "emb"])
    proc = subprocess.run([sys.executable, "-m", "dataset_audit", str(tmp_path / "emb"), "--no-predict", "--out",
                           str(tmp_path / "report")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and phrase in lines[0], proc.stderr
    assert not (tmp_path / "report").exists()
