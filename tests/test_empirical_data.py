"""Emoji concept data and the imagefolder loader: concept filter, deterministic renders, cache, fallback, errors."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("PIL")
pytest.importorskip("emoji")

from empirical.data import (  # noqa: E402
    CAPTION_TEMPLATES, PAPER_CONCEPTS, RenderConfig, available_fonts, load_or_render,
    object_concepts, render, renderable, select_concepts,
)
from implosion_base.errors import InputError  # noqa: E402

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
    fonts = available_fonts()  # both, or an InputError naming the missing package
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


def test_a_missing_font_stops_naming_its_package_and_the_option_never_a_fallback(tmp_path: Path):
    for call in (lambda: available_fonts(noto_path=tmp_path / "absent.ttf"),
                 lambda: render(MICRO, noto_path=tmp_path / "absent.ttf"),
                 lambda: load_or_render(MICRO, tmp_path, noto_path=tmp_path / "absent.ttf")):
        with pytest.raises(InputError, match=r"apt-get install fonts-noto-color-emoji.*--fonts openmoji"):
            call()
    assert not list(tmp_path.glob("renders-*"))  # nothing rendered, nothing cached
    one = render(replace(MICRO, fonts=("openmoji",)), noto_path=tmp_path / "absent.ttf")  # asked for: fine
    assert one.fonts == ["openmoji"] and set(one.styles.tolist()) == {0}


def test_bad_render_settings_are_input_errors():
    with pytest.raises(InputError, match="only"):
        select_concepts(100_000, available_fonts())
    with pytest.raises(InputError, match="per concept"):
        render(replace(MICRO, per_concept=0))
    with pytest.raises(InputError, match="unknown font"):
        available_fonts(("comic-sans",))
