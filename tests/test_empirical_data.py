"""Emoji concept data and the imagefolder loader: concept filter, deterministic renders, cache, fallback, errors."""

from __future__ import annotations

import json
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("PIL")
pytest.importorskip("emoji")

from empirical.data import (  # noqa: E402
    CAPTION_TEMPLATES, PAPER_CONCEPTS, RenderConfig, available_fonts, load_image_folder, load_or_render,
    object_concepts, render, renderable, select_concepts,
)
from theory.cli import InputError  # noqa: E402

MICRO = RenderConfig(concepts=5, per_concept=4, size=16)


def test_object_concepts_keep_things_and_drop_people_flags_symbols():
    names = {c.name for c in object_concepts()}
    assert set(PAPER_CONCEPTS) <= names
    for dropped in ("grinning face", "thumbs up", "red heart", "chequered flag", "keycap 10", "man dancing",
                    "no entry", "right arrow", "red circle", "restroom"):
        assert dropped not in names
    chars = [c.char for c in object_concepts()]
    assert all(len(c.replace("\ufe0f", "")) == 1 for c in chars)  # no ZWJ, skin-tone or flag sequences
    assert len(names) == len(chars) >= 300


def test_paper_concepts_render_in_both_fonts_and_come_first():
    fonts, notices = available_fonts()
    if len(fonts) < 2:
        pytest.skip("Noto Color Emoji is not installed")
    assert not notices
    chosen = select_concepts(12, fonts, seed=0)
    assert [c.name for c in chosen[:8]] == list(PAPER_CONCEPTS)
    assert len({c.name for c in chosen}) == 12
    assert len(renderable(object_concepts(), fonts)) >= 300


def test_render_is_deterministic_and_variant_changes_augmentation():
    a, b = render(MICRO), render(MICRO)
    assert a.images.shape == (20, 16, 16, 3) and a.images.dtype == np.uint8
    assert np.array_equal(a.images, b.images) and a.captions == b.captions
    assert np.array_equal(a.labels, np.repeat(np.arange(5), 4))
    assert a.captions[:4] == [t.format(name=a.names[0]) for t in CAPTION_TEMPLATES]
    c = render(replace(MICRO, variant=1))
    assert c.names == a.names and not np.array_equal(c.images, a.images)
    # rendered images are not blank: the glyph covers part of the image with colours far from the background
    assert np.mean(np.abs(a.images.astype(int) - a.images[:, :1, :1].astype(int)).sum(-1) > 60) > 0.05


def test_cache_round_trip(tmp_path: Path):
    a = load_or_render(MICRO, tmp_path)
    files = list(tmp_path.glob("renders-*.npz"))
    assert len(files) == 1
    b = load_or_render(MICRO, tmp_path)
    assert np.array_equal(a.images, b.images) and a.captions == b.captions and a.names == b.names
    load_or_render(replace(MICRO, size=20), tmp_path)
    assert len(list(tmp_path.glob("renders-*.npz"))) == 2  # the key follows the settings


def test_missing_noto_falls_back_to_openmoji_with_one_notice(tmp_path: Path):
    fonts, notices = available_fonts(noto_path=tmp_path / "absent.ttf")
    assert [f.name for f in fonts] == ["openmoji"]
    assert len(notices) == 1 and "OpenMoji alone" in notices[0]
    data = render(MICRO, noto_path=tmp_path / "absent.ttf")
    assert data.fonts == ["openmoji"] and set(data.styles.tolist()) == {0} and len(data.notices) == 1


def test_bad_render_settings_are_input_errors():
    with pytest.raises(InputError, match="only"):
        select_concepts(100_000, available_fonts()[0])
    with pytest.raises(InputError, match="per concept"):
        render(replace(MICRO, per_concept=0))
    with pytest.raises(InputError, match="unknown font"):
        available_fonts(("comic-sans",))


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


def test_image_folder_skips_bad_entries_with_warnings(tmp_path: Path):
    folder = _folder(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        images, texts, names = load_image_folder(folder, size=8)
    assert images.shape == (3, 8, 8, 3) and texts == ["caption 0", "caption 1", "caption 2"]
    assert names == ["0.png", "1.png", "2.png"]
    messages = " | ".join(str(w.message) for w in caught)
    assert "broken.png" in messages and "outside the folder" in messages
    assert "metadata.jsonl:4:" in messages and "metadata.jsonl:7:" in messages
    assert len(caught) == 4


def test_image_folder_errors(tmp_path: Path):
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
    """A NUL byte in file_name and an image over Pillow's bomb limit: each skipped with a warning, the rest read."""
    import json

    from PIL import Image

    folder = tmp_path / "f"
    folder.mkdir()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(folder / "ok.png")
    Image.new("RGB", (64, 64), (1, 2, 3)).save(folder / "big.png")
    lines = [{"file_name": "ok.png", "text": "fine"}, {"file_name": "a\u0000b.png", "text": "nul"},
             {"file_name": "big.png", "text": "bomb"}]
    (folder / "metadata.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 64x64 = 4096 > 2 x 1000: an error, as a real bomb
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        images, texts, _ = load_image_folder(folder, size=8)
    assert texts == ["fine"] and images.shape == (1, 8, 8, 3)
    messages = " | ".join(str(w.message) for w in caught)
    assert "not a usable file name" in messages and "decompression-bomb" in messages
