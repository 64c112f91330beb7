"""Webdataset tars read as they stream (empirical.webdataset) and a data set embedded shard by shard into the
clip-retrieval layout (empirical.shard_embedding): what the audit reads back unchanged, resumable per partition,
bad samples skipped with one warning per kind, another embedding's folder refused."""

from __future__ import annotations

import io
import json
import tarfile
import warnings
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("PIL")
pq = pytest.importorskip("pyarrow.parquet")

from empirical.shard_embedding import embed_partitions, partition_tags  # noqa: E402
from empirical.webdataset import iter_tar_samples  # noqa: E402
from implosion_base.errors import InputError  # noqa: E402
from implosion_base.shards import open_shards  # noqa: E402


def _png(value: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((12, 12, 3), value, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _tar(path: Path, samples: list[dict[str, bytes]]) -> Path:
    """A webdataset tar as img2dataset writes it: each sample's files next to each other, named KEY.ext."""
    with tarfile.open(path, "w") as tar:
        for i, files in enumerate(samples):
            for ext, data in files.items():
                info = tarfile.TarInfo(f"{path.stem}{i:04d}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


def _good(i: int) -> dict[str, bytes]:
    return {"jpg": _png(10 * i), "txt": f"a photo of thing {i}".encode(),
            "json": json.dumps({"url": f"https://example.org/{i}", "width": 12}).encode()}


def test_a_tar_streams_its_samples_and_skips_bad_ones_with_one_warning_each(tmp_path: Path):
    samples = [_good(0), {"jpg": _png(1)}, _good(2), {**_good(3), "jpg": b"not an image"},
               {**_good(4), "json": b"[1, 2]"}, _good(5)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = list(iter_tar_samples(_tar(tmp_path / "00000.tar", samples), size=8))
    assert [g[0] for g in got] == [1, 3, 6] and got[0][1].shape == (8, 8, 3)
    assert got[1][2] == "a photo of thing 2" and got[1][3] == "000000002" and got[1][4]["url"] == "https://example.org/2"
    messages = sorted(str(w.message) for w in caught)
    assert len(messages) == 3 and all("of 6 samples" in m for m in messages)
    assert any("have no caption" in m for m in messages) and any("unreadable images" in m for m in messages)


class _Embedder:
    """A deterministic stand-in for a joint embedder: image rows from pixel means, text rows from the caption's
    characters (enough to test the writer without a model)."""

    name, size = "test-embedder", 8

    def embed(self, images, texts):
        t = np.array([[len(s), sum(map(ord, s)) % 97, 1.0, 2.0] for s in texts], np.float32)
        v = np.array([[im.mean(), 1.0, im[0, 0, 0] + 1.0, 3.0] for im in images], np.float32)
        return t, v


def test_embedding_into_the_clip_retrieval_layout_is_read_back_and_resumes(tmp_path: Path):
    tars = [_tar(tmp_path / f"{k:05d}.tar", [_good(i) for i in range(k * 3, k * 3 + 3 + k)]) for k in range(3)]
    out = tmp_path / "emb"
    log: list[str] = []
    assert embed_partitions(tars, _Embedder(), out, batch_size=2, log=log.append) == [3, 4, 5]
    assert sorted(p.name for p in (out / "img_emb").iterdir()) == ["img_emb_0.npy", "img_emb_1.npy", "img_emb_2.npy"]
    src = open_shards([out])
    assert src.n == 12 and src.dtype == np.float16 and src.layouts[0].startswith("clip-retrieval")
    t, _ = src.block(0, src.n)
    assert np.allclose(np.linalg.norm(t.astype(np.float32), axis=1), 1, atol=1e-3)  # unit rows, as clip-retrieval
    assert list(src.labels)[:3] == ["image_path", "caption", "key"] and src.labels["url"][3] == "https://example.org/3"
    (out / "metadata" / "metadata_2.parquet").unlink()  # a run killed while writing partition 2
    log.clear()
    assert embed_partitions(tars, _Embedder(), out, log=log.append) == [3, 4, 5]
    assert log[:2] == ["partition 0 (00000.tar) already done, skipped", "partition 1 (00001.tar) already done, skipped"]
    other = _Embedder()
    other.name = "another model"
    with pytest.raises(InputError, match="another embedding"):
        embed_partitions(tars, other, out)


def test_partition_numbers_are_padded_as_clip_retrieval_pads_them():
    assert partition_tags(3) == ["0", "1", "2"] and partition_tags(12)[:2] == ["00", "01"]
    assert partition_tags(100)[-1] == "099" and partition_tags(101)[-1] == "100"


@pytest.mark.parametrize("name, message", [("missing.tar", "does not exist"),
                                           ("notes.txt", "not a webdataset tar (.tar) nor an image-text folder")])
def test_inputs_that_are_no_tar_nor_folder_are_refused_in_one_line(tmp_path: Path, name, message):
    import subprocess
    import sys

    (tmp_path / "notes.txt").write_text("not a tar")
    r = subprocess.run([sys.executable, "-m", "empirical.embed", str(tmp_path / name), "--out",
                        str(tmp_path / "emb"), "--dry-run"], capture_output=True, text=True,
                       cwd=Path(__file__).resolve().parents[1])
    assert r.returncode == 2 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "emb").exists()
