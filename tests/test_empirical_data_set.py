"""The emoji data set is a setting: its fonts are asked for (--fonts), recorded with their files' hashes and the
concept list's, and a folder of one data set refuses another by name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("diffusers")

from empirical.run import main  # noqa: E402
from implosion_base.errors import InputError  # noqa: E402


def test_fonts_are_part_of_the_setting_and_recorded_with_their_files(tmp_path: Path):
    from empirical.data import available_fonts, font_identity

    out = tmp_path / "one-font"
    common = ["--preset", "micro", "--poisoned-concepts", "0", "--cache", str(tmp_path / "cache"), "--quiet"]
    assert main([*common, "--fonts", "openmoji", "--out", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["setting"]["render"]["fonts"] == ["openmoji"] and manifest["assets"]["fonts"] == ["openmoji"]
    assert manifest["assets"]["font_files"] == font_identity(available_fonts(("openmoji",)))
    assert len(manifest["assets"]["concepts_sha256"]) == 16
    # the setting says the data set it used, as every row and invocation does; the same command again resumes
    used = manifest["setting"]["data_set"]
    rows = (out / "results.csv").read_text().splitlines()
    assert used["concepts_sha256"] == manifest["assets"]["concepts_sha256"] and used["font_files"]
    assert all(used["data_set_id"] in line for line in rows[1:]) and len(rows) > 1
    assert manifest["invocations"][-1]["data_set_id"] == used["data_set_id"]
    assert main([*common, "--fonts", "openmoji", "--out", str(out)]) == 0
    again = json.loads((out / "manifest.json").read_text())
    assert len(again["invocations"]) == 2 and again["setting"]["data_set"] == used
    # the two-font data set is another setting: refused by name, in either direction
    with pytest.raises(InputError, match=r"another setting \(render\.fonts: \['openmoji'\] -> \['openmoji', 'noto'\]"):
        main([*common, "--out", str(out)])
    two = tmp_path / "two-fonts"
    assert main([*common, "--out", str(two)]) == 0
    both = json.loads((two / "manifest.json").read_text())["assets"]
    assert set(both["font_files"]) == {"openmoji", "noto"}
    assert both["font_files"]["openmoji"] == manifest["assets"]["font_files"]["openmoji"]  # the same file


@pytest.mark.parametrize("fonts, message", [("comic", "--fonts must list"), ("noto,noto", "each once"),
                                            ("", "--fonts must list")])
def test_bad_fonts_are_one_line_errors(tmp_path: Path, fonts, message):
    with pytest.raises(InputError, match=message):
        main(["--preset", "micro", "--fonts", fonts, "--out", str(tmp_path / "o"), "--dry-run"])
