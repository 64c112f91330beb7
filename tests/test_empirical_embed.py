"""``python -m empirical.embed``: a folder of pairs to the arrays theory.ad reads, resumable, with our judge or a
local CLIP folder, and bad folders refused."""

from __future__ import annotations

import json
import warnings
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from empirical.embed import embed_folder, load_embedder, main  # noqa: E402
from empirical.presets import PRESETS  # noqa: E402
from empirical.assets import prepare_assets  # noqa: E402
from theory.ad import alignment_difficulty  # noqa: E402
from implosion_base.errors import InputError  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
torch.set_num_threads(2)


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    a = prepare_assets(PRESETS["micro"], cache)
    a.instruments.judge.save(cache / "judge-copy")
    return a, cache


@pytest.fixture()
def folder(tmp_path: Path, assets) -> tuple[Path, list[int]]:
    from PIL import Image

    a, _ = assets
    d = tmp_path / "pairs"
    d.mkdir()
    lines, kept = [], []
    for i in range(0, len(a.data), 2):
        Image.fromarray(a.data.images[i]).save(d / f"{i}.png")
        lines.append(json.dumps({"file_name": f"{i}.png", "text": a.data.captions[i]}))
        kept.append(i)
    lines.insert(3, "{not json")
    (d / "broken.png").write_bytes(b"not an image")
    lines.insert(6, json.dumps({"file_name": "broken.png", "text": "a photo of nothing"}))
    (d / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return d, kept


def test_embeds_a_folder_and_its_ad_matches_a_direct_computation(folder, assets, tmp_path: Path):
    a, cache = assets
    d, kept = folder
    out = tmp_path / "emb.npz"
    with pytest.warns(UserWarning):
        assert main([str(d), "--out", str(out), "--judge", str(cache / "judge-copy"), "--quiet",
                     "--batch-size", "3"]) == 0
    with np.load(out, allow_pickle=False) as z:
        text, image, line, names, caps = z["text"], z["image"], z["line"], z["file_name"], z["caption"]
    assert len(text) == len(image) == len(kept) and list(names) == [f"{i}.png" for i in kept]
    assert list(caps) == [a.data.captions[i] for i in kept]
    assert np.allclose(np.linalg.norm(text, axis=1), 1, atol=1e-5)
    assert 4 not in line and 7 not in line  # the broken line and the unreadable image
    direct = alignment_difficulty(a.instruments.judge.embed_texts([a.data.captions[i] for i in kept]),
                                  a.instruments.judge.embed_images(a.data.images[kept]))
    assert alignment_difficulty(text, image).ad == pytest.approx(direct.ad, abs=1e-5)
    proc = subprocess.run([sys.executable, "-m", "theory.ad", str(out), "--json"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0 and json.loads(proc.stdout)["ad"] == pytest.approx(direct.ad, abs=1e-5)


def test_a_killed_run_resumes_after_the_last_saved_line(folder, assets, tmp_path: Path):
    a, cache = assets
    d, kept = folder
    inner = load_embedder(cache / "judge-copy", "micro", cache)

    class Dies:
        def __init__(self, after):
            self.calls, self.after, self.size, self.name, self.seen = 0, after, inner.size, inner.name, 0

        def embed(self, images, texts):
            if self.calls == self.after:
                raise KeyboardInterrupt
            self.calls += 1
            self.seen += len(images)
            return inner.embed(images, texts)

    with pytest.warns(UserWarning):
        full = embed_folder(d, inner, tmp_path / "full.npz", batch_size=2)
    out = tmp_path / "emb.npz"
    dying = Dies(after=2)
    with pytest.raises(KeyboardInterrupt), pytest.warns(UserWarning):
        embed_folder(d, dying, out, batch_size=2, save_every=1)
    assert (tmp_path / "emb.partial.npz").is_file() and not out.exists()
    again = Dies(after=10**6)
    with pytest.warns(UserWarning):
        res = embed_folder(d, again, out, batch_size=2, save_every=1)
    assert again.seen == len(kept) - 4            # only the pairs after the saved ones
    for k in ("text", "image", "line", "file_name"):
        assert np.array_equal(res[k], full[k]) or np.allclose(res[k], full[k], atol=1e-6)
    assert not (tmp_path / "emb.partial.npz").exists()
    # a partial file cut by a crash does not block the rerun: one warning, then the whole folder again
    (tmp_path / "emb.partial.npz").write_bytes(b"PK\x03\x04 cut short")
    out.unlink()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = embed_folder(d, inner, out, batch_size=2, save_every=1)
    assert any("emb.partial.npz is damaged" in str(w.message) for w in caught)
    assert np.allclose(res["text"], full["text"], atol=1e-6) and list(res["line"]) == list(full["line"])


def _tiny_clip(folder: Path) -> None:
    from empirical.pretrained import make_tiny_clip

    make_tiny_clip(folder)


def test_local_clip_folder_and_bad_judges(folder, tmp_path: Path):
    d, kept = folder
    clip = tmp_path / "clip"
    _tiny_clip(clip)
    out = tmp_path / "clip.npz"
    with pytest.warns(UserWarning):
        assert main([str(d), "--out", str(out), "--judge", str(clip), "--quiet"]) == 0
    with np.load(out, allow_pickle=False) as z:
        assert z["text"].shape == (len(kept), 8) and np.allclose(np.linalg.norm(z["image"], axis=1), 1, atol=1e-5)
    # not CLIP; pickled weights only
    bert = tmp_path / "bert"
    bert.mkdir()
    (bert / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(InputError, match="not a CLIP model folder"):
        load_embedder(bert, "micro", tmp_path)
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text(json.dumps({"model_type": "clip"}))
    (pickled / "pytorch_model.bin").write_bytes(b"x")
    with pytest.raises(InputError, match="pytorch_model.bin; convert it to safetensors"):
        load_embedder(pickled, "micro", tmp_path)


@pytest.mark.parametrize("args, message", [
    (["nowhere", "--out", "e.npz"], "does not exist"),
    (["{folder}", "--out", "e.txt"], "must end in .npz"),
    (["{folder}", "--out", "e.npz", "--judge", "nowhere"], "is not a folder"),
    (["{empty}", "--out", "e.npz"], "metadata.jsonl is missing"),
])
def test_bad_input_exits_2(tmp_path: Path, args, message):
    good = tmp_path / "good"
    good.mkdir()
    (good / "metadata.jsonl").write_text("")
    empty = tmp_path / "empty"
    empty.mkdir()
    args = [a.format(folder=good, empty=empty) for a in args]
    proc = subprocess.run([sys.executable, "-m", "empirical.embed", *args], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and message in proc.stderr, proc.stderr


def test_builtin_embeds_the_presets_clean_pairs_with_concept_labels(assets, tmp_path):
    """--builtin: the preset's clean renders and captions, labelled by concept; the simulator's predictor
    calibrates its geometry from that file."""
    a, cache = assets
    out = tmp_path / "mix.npz"
    assert main(["--builtin", "--preset", "micro", "--cache", str(cache), "--out", str(out), "--quiet"]) == 0
    with np.load(out, allow_pickle=False) as z:
        text, image, concept, captions = z["text"], z["image"], z["concept"], list(z["caption"])
    assert text.shape == image.shape and text.shape[0] == len(a.data.labels)
    assert np.array_equal(concept, a.data.labels) and captions == list(a.data.captions)
    assert np.allclose(text, a.instruments.judge.embed_texts(list(a.data.captions)), atol=1e-5)
    from simulate.predict import load_geometry

    g = load_geometry(out, "concept")
    assert g.text_within > g.text_across and g.image_within > g.image_across
    with pytest.raises(InputError, match="folder or --builtin"):
        main(["--out", str(out)])


def test_bad_device_is_refused_before_any_work(tmp_path):
    with pytest.raises(InputError, match="not a torch device"):
        main(["--builtin", "--preset", "micro", "--out", str(tmp_path / "e.npz"), "--device", "nope",
              "--cache", str(tmp_path / "c")])
    assert not (tmp_path / "c").exists()


def test_out_that_is_a_folder_is_refused_before_any_work(tmp_path):
    folder = tmp_path / "x.npz"
    folder.mkdir()
    with pytest.raises(InputError, match="is a folder"):
        main(["--builtin", "--preset", "micro", "--out", str(folder), "--cache", str(tmp_path / "c")])
    assert not (tmp_path / "c").exists()


def test_webdataset_tars_become_a_layout_the_audit_reads(tmp_path: Path, assets):
    """Two tars of the micro preset's renders (KEY.png + KEY.txt + KEY.json) embedded by our judge into the
    clip-retrieval layout; the embeddings equal the judge's own, and python -m dataset_audit reads the folder."""
    import io
    import tarfile

    from PIL import Image

    a, cache = assets
    for k, idx in enumerate((range(0, 10), range(10, 24))):
        with tarfile.open(tmp_path / f"{k:05d}.tar", "w") as tar:
            for i in idx:
                buf = io.BytesIO()
                Image.fromarray(a.data.images[i]).save(buf, format="PNG")
                for ext, data in (("png", buf.getvalue()), ("txt", a.data.captions[i].encode()),
                                  ("json", json.dumps({"url": f"u{i}"}).encode())):
                    info = tarfile.TarInfo(f"s{i:05d}.{ext}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    out = tmp_path / "emb"
    assert main([str(tmp_path / "00000.tar"), str(tmp_path / "00001.tar"), "--out", str(out), "--judge",
                 str(cache / "judge-copy"), "--quiet"]) == 0
    text = np.load(out / "text_emb" / "text_emb_1.npy")
    assert text.dtype == np.float16 and text.shape[0] == 14
    want = a.instruments.judge.embed_texts(list(a.data.captions[10:24]))
    assert np.allclose(text.astype(np.float32), want, atol=2e-3)
    proc = subprocess.run([sys.executable, "-m", "dataset_audit", str(out), "--n-concepts", "2", "--no-predict",
                           "--out", str(tmp_path / "audit")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    header = (tmp_path / "audit" / "pairs.csv").read_text().splitlines()[0]
    assert header.startswith("index,shard,image_path,caption,key,url,")
