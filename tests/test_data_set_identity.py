"""The data set as a setting: its identity (empirical.data_set), in results rows, in the folder checks and in the
report, which never pools two data sets."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import pytest

from empirical.data_set import (UNRECORDED, check_same_data_set, concepts_hash, identity, of_manifest, row_fill)
from empirical.report import aggregate, read_rows
from implosion_base.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
NAMES = ["bird", "fish", "bicycle", "spiral shell"]


def test_identity_names_source_and_concepts_and_hashes_them_independently():
    a = identity(NAMES, ["openmoji", "noto"])
    assert a.label == "emoji-openmoji+noto-4"
    assert a.concepts_sha256 == hashlib.sha256("bird\nfish\nbicycle\nspiral shell".encode()).hexdigest()[:16]
    assert a.id == hashlib.sha256(json.dumps([a.label, a.concepts_sha256]).encode()).hexdigest()[:12]
    # another font list, another concept order, another concept: each another data set
    assert identity(NAMES, ["openmoji"]).id != a.id and identity(NAMES, ["openmoji"]).label == "emoji-openmoji-4"
    assert identity(NAMES[::-1], ["openmoji", "noto"]).id != a.id
    assert identity(NAMES[:3] + ["turtle"], ["openmoji", "noto"]).id != a.id
    # font files are recorded, not part of the id (older folders never recorded them)
    assert identity(NAMES, ["openmoji", "noto"], font_files={"noto": "ab"}).id == a.id
    user = identity(NAMES, ["user data"], "user-1234-s32")
    assert user.label == "user-1234-s32-4" and user.id != a.id
    with pytest.raises(InputError):
        identity([], ["openmoji"])


def _manifest(names=NAMES, fonts=("openmoji", "noto"), **assets) -> dict:
    return {"setting": {"name": "micro"}, "assets": {"concepts": list(names), "fonts": list(fonts), **assets}}


def test_an_old_row_reads_its_data_set_from_the_manifest_or_says_unrecorded():
    assert row_fill(_manifest())({}) == identity(NAMES, ["openmoji", "noto"]).columns()
    assert row_fill({"setting": {}})({}) == {"data_set": UNRECORDED, "data_set_id": UNRECORDED}
    assert of_manifest({"setting": {"train_data": "user-9"}, "assets": {"concepts": NAMES, "fonts": ["user data"]}}
                       ).label == "user-9-4"


def test_a_folder_refuses_another_data_set_and_other_font_files(tmp_path: Path):
    now = identity(NAMES, ["openmoji", "noto"], font_files={"openmoji": "aa", "noto": "bb"})
    rows = [now.columns()]
    check_same_data_set(tmp_path, rows, _manifest(font_files={"openmoji": "aa", "noto": "bb"}), now)  # same: fine
    check_same_data_set(tmp_path, [{"data_set_id": UNRECORDED}], {}, now)  # nothing to compare with: fine
    other = identity(NAMES, ["openmoji"])
    with pytest.raises(InputError, match="another data set .*emoji-openmoji-4 -> emoji-openmoji\\+noto-4"):
        check_same_data_set(tmp_path, [other.columns()], _manifest(fonts=["openmoji"]), now)
    with pytest.raises(InputError, match="another noto font file \\(b0 -> bb\\)"):
        check_same_data_set(tmp_path, rows, _manifest(font_files={"openmoji": "aa", "noto": "b0"}), now)


def _folder(root: Path, name: str, names: list[str], fonts: list[str], acc: float) -> Path:
    """A run folder of two seeds at C_P = 2 written the way empirical.run writes one (rows carry the data set)."""
    from empirical.layout import COLUMNS

    folder = root / name
    folder.mkdir()
    ident = identity(names, fonts)
    setting = {"name": "micro", "render": {"fonts": fonts}}
    (folder / "manifest.json").write_text(json.dumps({"setting": setting, "assets": {"concepts": names,
                                                                                     "fonts": fonts}}))
    with open(folder / "results.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, COLUMNS)
        w.writeheader()
        for seed in (0, 1):
            row = dict.fromkeys(COLUMNS, "0.5")
            row.update(seed=seed, scenario="continuous", c_p=2, kind="poisoned", poison_type="dirty",
                       poison_per_concept=4, targets="poisoned", steps=4, unpoisoned_acc=acc + seed / 100,
                       **ident.columns())
            w.writerow(row)
    return folder


def test_the_report_groups_and_labels_by_data_set_and_never_pools_two(tmp_path: Path):
    two = _folder(tmp_path, "two-fonts", NAMES, ["openmoji", "noto"], 0.8)
    one = _folder(tmp_path, "one-font", NAMES, ["openmoji"], 0.3)
    records = aggregate(read_rows([two, one]))
    got = {r["data_set"]: (r["n_seeds"], round(r["unpoisoned_acc"][0], 3)) for r in records}
    assert got == {"emoji-openmoji+noto-4": (2, 0.805), "emoji-openmoji-4": (2, 0.305)}
    # same source, same count, another concept list: the label carries the identity so the two stay apart
    other = _folder(tmp_path, "other-concepts", NAMES[:3] + ["turtle"], ["openmoji", "noto"], 0.1)
    labels = {r["data_set"] for r in read_rows([two, other])}
    assert len(labels) == 2 and all(lab.startswith("emoji-openmoji+noto-4@") for lab in labels)


def test_concepts_hash_is_order_sensitive():
    assert concepts_hash(["a", "b"]) != concepts_hash(["b", "a"])


def test_figures_never_pool_two_data_sets_of_one_model_and_name_the_model_apart(tmp_path: Path):
    """paper_figures' setting variant names the fonts whenever they differ from the preset's *and* the model's
    first difference after them: a one-font run of another UNet is neither the two-font run of that UNet nor the
    one-font run of the preset's UNet (tables without a data-set column group by it), and ``model_variant`` is the
    model's part alone (for tables that show the data set in a column of their own)."""
    from empirical.presets import get_preset
    from empirical.layout import setting_of
    from paper_figures.sources import collect

    preset = setting_of(get_preset("micro"), "continuous", 0)
    channels, two = preset["unet"]["channels"], preset["render"]["fonts"]
    half = [c // 2 for c in channels]
    folders = {}
    for name, fonts, unet in (("one", ["openmoji"], None), ("two", two, None), ("one-small", ["openmoji"], half),
                              ("two-small", two, half)):
        folders[name] = _folder(tmp_path, name, NAMES, fonts, 0.3)
        if unet:
            manifest = json.loads((folders[name] / "manifest.json").read_text())
            manifest["setting"]["unet"] = {"channels": unet}
            (folders[name] / "manifest.json").write_text(json.dumps(manifest))
    emp = collect(list(folders.values()), [])
    got = {Path(r["folder"]).name: (r["variant"], r["model_variant"]) for r in emp.rows}
    fonts = f"render.fonts: {two} -> ['openmoji']"
    unet = f"unet.channels: {channels} -> {half}"
    assert got == {"one": (fonts, ""), "two": ("", ""), "one-small": (f"{fonts}, {unet}", unet),
                   "two-small": (unet, unet)}
