"""--dataset-name: a data set as datasets.load_dataset reads it (offline): parquet shards with an image column and
captions, an imagefolder with class labels; bad rows skipped and said; the same pairs as a folder read."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

datasets = pytest.importorskip("datasets")
pytest.importorskip("torch")

from empirical.folder_data import FolderFormat  # noqa: E402
from empirical.hub_data import concept_data_from_hub  # noqa: E402
from implosion_base.errors import InputError  # noqa: E402


def _pngs(folder: Path, n: int, seed: int = 0) -> list[Path]:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (12, 20, 3), dtype=np.uint8)).save(folder / f"{i}.png")
        paths.append(folder / f"{i}.png")
    return paths


def test_parquet_shards_with_images_and_captions_read_like_the_same_folder(tmp_path: Path):
    from empirical.folder_data import concept_data_from_folder

    paths = _pngs(tmp_path / "imgs", 8)
    texts = [f"a photo of a {'sun' if i < 4 else 'lake'}, take {i}" for i in range(8)]
    ds = datasets.Dataset.from_dict({"image": [str(p) for p in paths], "text": texts}).cast_column(
        "image", datasets.Image())
    (tmp_path / "hub" / "data").mkdir(parents=True)
    ds.to_parquet(str(tmp_path / "hub" / "data" / "train-00000-of-00001.parquet"))  # the hub's own layout
    train, held, key = concept_data_from_hub(str(tmp_path / "hub"), size=8, held_out=1, names=["sun", "lake"],
                                              cache_dir=tmp_path / "c")
    assert key.startswith("hub-") and train.names == ["sun", "lake"] and len(train) == 6 and len(held) == 2
    # the same pairs as a folder give the same pixels and captions
    (tmp_path / "imgs" / "metadata.jsonl").write_text(
        "".join(json.dumps({"file_name": p.name, "text": t}) + "\n" for p, t in zip(paths, texts)))
    f_train, _, _ = concept_data_from_folder(tmp_path / "imgs", size=8, held_out=1, names=["sun", "lake"])
    assert np.array_equal(f_train.images, train.images) and f_train.captions == train.captions
    with pytest.raises(InputError, match="needs its concepts"):
        concept_data_from_hub(str(tmp_path / "hub"), size=8, held_out=1, cache_dir=tmp_path / "c")
    with pytest.raises(InputError, match="no caption column 'prompt'"):
        concept_data_from_hub(str(tmp_path / "hub"), size=8, held_out=1, names=["sun", "lake"],
                              fmt=FolderFormat(caption_column="prompt"), cache_dir=tmp_path / "c")


def test_a_class_labelled_imagefolder_names_its_concepts_and_bad_images_are_skipped(tmp_path: Path):
    for label, seed in (("cat", 1), ("dog", 2)):
        _pngs(tmp_path / "classes" / "train" / label, 4, seed)
    (tmp_path / "classes" / "train" / "dog" / "9.png").write_bytes(b"not a png")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train, held, _ = concept_data_from_hub(str(tmp_path / "classes"), size=8, held_out=1,
                                               cache_dir=tmp_path / "c")
    assert train.names == ["cat", "dog"] and train.captions[0] == "a photo of a cat"
    assert len(train) + len(held) == 8
    assert any("unreadable image" in str(w.message) for w in caught)
    assert any((tmp_path / "c" / "datasets").iterdir())  # its prepared files in the run's cache, not ~/.cache


def test_missing_data_sets_are_one_line_errors_and_nothing_is_downloaded(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "cache"))
    with pytest.raises(InputError, match="nothing is downloaded"):
        concept_data_from_hub("no-such-user/no-such-dataset", size=8, held_out=1, names=["a", "b"])


def test_empirical_run_takes_dataset_name(tmp_path: Path):
    from empirical.run import main

    for label, seed in (("cat", 1), ("dog", 2), ("owl", 3)):
        _pngs(tmp_path / "classes" / "train" / label, 5, seed)
    out = tmp_path / "out"
    assert main(["--preset", "micro", "--dataset_name", str(tmp_path / "classes"), "--poisoned-concepts", "1",
                 "--no-control", "--cache", str(tmp_path / "cache"), "--quiet", "--out", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["assets"]["concepts"] == ["cat", "dog", "owl"]
    assert manifest["setting"]["train_data"].startswith("hub-")
    with pytest.raises(InputError, match="give one"):
        main(["--preset", "micro", "--dataset-name", "x", "--train-data-dir", str(tmp_path), "--dry-run"])
