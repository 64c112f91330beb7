"""Users' image-text folders: jsonl / csv metadata, a train/ split, named columns, one summary warning per kind of
bad line, and the concept of each pair from a list of names or a caption template."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from empirical.folder_data import FolderFormat, folder_key, load_image_folder
from implosion_base.captions import concept_of_captions, read_concepts_file
from implosion_base.errors import InputError


def _folder(tmp_path: Path) -> Path:
    from PIL import Image

    folder = tmp_path / "pairs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    lines = []
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)).save(folder / f"{i}.png")
        lines.append(json.dumps({"file_name": f"{i}.png", "text": f"caption {i}"}))
    (folder / "broken.png").write_bytes(b"not an image")
    lines += ["{not json", json.dumps({"file_name": "broken.png", "text": "x"}),
              json.dumps({"file_name": "../escape.png", "text": "x"}), json.dumps({"text": "no file"})]
    (folder / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def _read(folder: Path, **kw):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = load_image_folder(folder, size=8, **kw)
    return out, [str(w.message) for w in caught]


def test_bad_lines_are_skipped_with_one_warning_per_kind(tmp_path: Path):
    (images, texts, names), messages = _read(_folder(tmp_path))
    assert images.shape == (3, 8, 8, 3) and texts == ["caption 0", "caption 1", "caption 2"]
    assert names == ["0.png", "1.png", "2.png"]
    assert len(messages) == 4
    joined = " | ".join(messages)
    assert "1 of 7 lines are not JSON objects; skipped (line 4)" in joined
    assert "1 of 7 lines name unreadable images; skipped (line 5)" in joined
    assert "point outside the folder; skipped (line 6)" in joined
    assert "1 of 7 lines lack 'file_name'; skipped (line 7)" in joined


def test_a_wrong_caption_column_is_one_warning_that_names_the_fix(tmp_path: Path):
    """6 of 6 lines with 'prompt' instead of 'text': one warning naming the keys seen and the option to use."""
    from PIL import Image

    folder = tmp_path / "p"
    folder.mkdir()
    for i in range(6):
        Image.new("RGB", (8, 8), (i, i, i)).save(folder / f"{i}.png")
    (folder / "metadata.jsonl").write_text("".join(json.dumps({"file_name": f"{i}.png", "prompt": f"a {i}"}) + "\n"
                                                   for i in range(6)))
    with pytest.raises(InputError, match="no readable image-text pairs"):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            load_image_folder(folder, size=8)
    (message,) = [str(w.message) for w in caught]
    assert "6 of 6 lines lack 'text'" in message and "keys seen: file_name, prompt; try --caption-column prompt" \
        in message
    (images, texts, _), messages = _read(folder, fmt=FolderFormat(caption_column="prompt"))
    assert texts == [f"a {i}" for i in range(6)] and messages == []


def test_csv_metadata_in_a_train_split_with_named_columns(tmp_path: Path):
    from PIL import Image

    train = tmp_path / "ds" / "train"
    (train / "img").mkdir(parents=True)
    rows = ["image,caption,extra"]
    for i in range(4):
        Image.new("RGB", (10, 10), (40 * i, 0, 0)).save(train / "img" / f"{i}.png")
        rows.append(f'img/{i}.png,"a red, round thing {i}",x')
    (train / "metadata.csv").write_text("\n".join(rows) + "\n")
    (images, texts, names), messages = _read(tmp_path / "ds", fmt=FolderFormat("image", "caption"))
    assert names == [f"img/{i}.png" for i in range(4)] and texts[2] == "a red, round thing 2" and messages == []
    assert images[3, 0, 0, 0] == 120
    key = folder_key(tmp_path / "ds", FolderFormat("image", "caption"))
    (train / "metadata.csv").write_text("\n".join(rows[:-1]) + "\n")
    assert folder_key(tmp_path / "ds", FolderFormat("image", "caption")) != key


def test_folder_errors(tmp_path: Path):
    with pytest.raises(InputError, match="does not exist"):
        load_image_folder(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="metadata.jsonl is missing"):
        load_image_folder(tmp_path / "empty")
    (tmp_path / "empty" / "metadata.jsonl").write_text('{"file_name": "gone.png", "text": "x"}\n')
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(InputError, match="no readable image-text pairs"):
            load_image_folder(tmp_path / "empty")
    folder = _folder(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from PIL import Image

        Image.new("RGB", (5, 5)).save(folder / "small.png")
        with open(folder / "metadata.jsonl", "a") as fh:
            fh.write(json.dumps({"file_name": "small.png", "text": "s"}) + "\n")
        with pytest.raises(InputError, match="differ in size"):
            load_image_folder(folder)


def test_nul_names_and_decompression_bombs_are_skipped_not_fatal(tmp_path: Path, monkeypatch):
    from PIL import Image

    folder = tmp_path / "f"
    folder.mkdir()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(folder / "ok.png")
    Image.new("RGB", (64, 64), (1, 2, 3)).save(folder / "big.png")
    lines = [{"file_name": "ok.png", "text": "fine"}, {"file_name": "a\u0000b.png", "text": "nul"},
             {"file_name": "big.png", "text": "bomb"}]
    (folder / "metadata.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 64x64 = 4096 > 2 x 1000: an error, as a real bomb
    (images, texts, _), messages = _read(folder)
    assert texts == ["fine"] and images.shape == (1, 8, 8, 3)
    joined = " | ".join(messages)
    assert "name no usable file" in joined and "decompression-bomb" in joined


def test_concepts_from_names_whole_words_longest_match_and_ambiguity():
    caps = ["A photo of a red apple.", "an apple on a table", "pineapple slices", "a bird and an apple",
            "a BIRD", "nothing here"]
    labels, names, why = concept_of_captions(caps, names=["apple", "red apple", "bird"])
    assert names == ["apple", "red apple", "bird"]
    assert labels.tolist() == [1, 0, -1, -1, 2, -1]
    assert why == {"name no concept": 2, "name more than one concept": 1}


def test_concepts_from_a_caption_template():
    caps = ["a photo of a cat", "A photo of a Cat", "a photo of a red fox", "a cat sitting"]
    labels, names, why = concept_of_captions(caps, template="a photo of a {}")
    assert names == ["cat", "red fox"] and labels.tolist() == [0, 0, 1, -1]
    assert why == {"do not match the caption template": 1}
    with pytest.raises(InputError, match="exactly one"):
        concept_of_captions(caps, template="a photo of a cat")
    with pytest.raises(InputError, match="one of the two"):
        concept_of_captions(caps)


def test_concepts_file(tmp_path: Path):
    f = tmp_path / "c.txt"
    f.write_text("cat\n# comment\ndog  # the animal\nCat\n\n")
    assert read_concepts_file(f) == ["cat", "dog"]
    f.write_text("cat\n")
    with pytest.raises(InputError, match="at least 2"):
        read_concepts_file(f)
    with pytest.raises(InputError, match="no such file"):
        read_concepts_file(tmp_path / "nope.txt")


def test_parquet_metadata_reads_like_jsonl_and_keeps_the_bad_row_warnings(tmp_path: Path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    folder = _folder(tmp_path)
    rows = [json.loads(line) if line.startswith("{\"") else {"file_name": None, "text": None}
            for line in (folder / "metadata.jsonl").read_text().splitlines()]
    (folder / "metadata.jsonl").unlink()
    pq.write_table(pa.Table.from_pylist([{"file_name": r.get("file_name"), "text": r.get("text")} for r in rows]),
                   folder / "metadata.parquet")
    (images, texts, names), messages = _read(folder)
    assert texts == ["caption 0", "caption 1", "caption 2"] and names == ["0.png", "1.png", "2.png"]
    assert images.shape == (3, 8, 8, 3)
    assert any("unreadable" in m for m in messages) and any("outside the folder" in m for m in messages)
    (folder / "metadata.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(InputError, match="not a readable parquet file"):
        load_image_folder(folder)


def test_class_subfolders_read_as_datasets_imagefolder_with_the_label_as_concept(tmp_path: Path):
    from PIL import Image

    from empirical.folder_data import CLASS_TEMPLATE, concept_data_from_folder

    train = tmp_path / "classes" / "train"
    for label, colour in (("cat", (200, 30, 30)), ("dog", (30, 30, 200))):
        (train / label).mkdir(parents=True)
        for i in range(5):
            Image.new("RGB", (12, 10), colour).save(train / label / f"{i}.png")
    (train / "dog" / "notes.txt").write_text("not an image")
    (tmp_path / "classes" / "validation" / "cat").mkdir(parents=True)  # another split: not read
    Image.new("RGB", (12, 10)).save(tmp_path / "classes" / "validation" / "cat" / "v.png")
    (images, texts, names), messages = _read(tmp_path / "classes")
    assert messages == [] and len(images) == 10
    assert texts[:1] == ["a photo of a cat"] and names[-1] == "dog/4.png"
    train_part, held, key = concept_data_from_folder(tmp_path / "classes", size=8, held_out=1,
                                                     template=CLASS_TEMPLATE)
    assert train_part.names == ["cat", "dog"] and np.bincount(train_part.labels).tolist() == [4, 4]
    assert np.bincount(held.labels).tolist() == [1, 1] and key.startswith("user-")
    assert folder_key(tmp_path / "classes", FolderFormat()) == folder_key(tmp_path / "classes", FolderFormat())
    Image.new("RGB", (12, 10)).save(train / "cat" / "5.png")  # a new image is new data
    assert key != concept_data_from_folder(tmp_path / "classes", size=8, held_out=1, template=CLASS_TEMPLATE)[2]
