"""``empirical.run --train-data-dir``: the whole poisoning experiment on a user's own image-text folder (written
here: two concepts, 20 pairs), with its own captions, the same plans, controls and measures as the emoji data."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("diffusers")

from empirical.run import main  # noqa: E402
from implosion_base.errors import InputError  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _user_folder(tmp_path: Path) -> Path:
    """20 pairs in a train/ split with metadata.csv: red discs ("a photo of a sun ...") and blue squares
    ("a photo of a lake ..."), 10 each, with varied captions; plus two pairs of no concept."""
    from PIL import Image, ImageDraw

    train = tmp_path / "mine" / "train"
    train.mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = ["path,prompt"]
    for i in range(22):
        kind = ("sun", "lake", "nothing")[0 if i < 10 else 1 if i < 20 else 2]
        im = Image.new("RGB", (24, 24), tuple(int(x) for x in rng.integers(200, 255, 3)))
        d = ImageDraw.Draw(im)
        off = int(rng.integers(0, 6))
        if kind == "sun":
            d.ellipse((4 + off, 4, 16 + off, 16), fill=(220, 40, 30))
        elif kind == "lake":
            d.rectangle((3, 5 + off, 19, 15 + off), fill=(30, 60, 200))
        im.save(train / f"{i:02d}.png")
        caption = {"sun": f"a photo of a sun, {'bright' if i % 2 else 'warm'}",
                   "lake": f"a photo of a lake at {'dawn' if i % 2 else 'noon'}", "nothing": "an empty frame"}[kind]
        rows.append(f'{i:02d}.png,"{caption}"')
    (train / "metadata.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "concepts.txt").write_text("sun\nlake\n")
    return tmp_path / "mine"


@pytest.mark.slow
def test_own_data_runs_end_to_end_with_its_captions(tmp_path: Path):
    folder = _user_folder(tmp_path)
    out = tmp_path / "out"
    args = ["--preset", "micro", "--train-data-dir", str(folder), "--concepts-file", str(tmp_path / "concepts.txt"),
            "--image-column", "path", "--caption-column", "prompt", "--poisoned-concepts", "0,1", "--seed", "0",
            "--cache", str(tmp_path / "cache"), "--quiet", "--threads", "2", "--out", str(out)]
    assert main(args) == 0
    with open(out / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["c_p"], r["kind"]) for r in rows] == [("0", "poisoned"), ("1", "poisoned"), ("1", "control")]
    # 20 pairs of the two concepts, the last 2 of each held out (10 // 5): 16 train; C_P = 1 adds p = 4
    assert [int(r["n_pairs"]) for r in rows] == [16, 20, 20] and {r["n_concepts"] for r in rows} == {"2"}
    for r in rows:
        assert np.isfinite(float(r["ad"])) and 0 <= float(r["unpoisoned_acc"]) <= 1
    assert float(rows[1]["d_fea"]) > float(rows[2]["d_fea"])  # a poison contradicts its caption, a control not
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["assets"]["concepts"] == ["sun", "lake"] and manifest["setting"]["train_data"].startswith("user-")
    assert any("left out" in n for n in manifest["assets"]["notices"])  # the 2 pairs of no concept
    # a rerun is all done; a folder of emoji results refuses the user's data (no mixed results)
    assert main(args) == 0
    assert json.loads((out / "manifest.json").read_text())["points_skipped_as_done"] == 3
    emoji = tmp_path / "emoji"
    assert main(["--preset", "micro", "--poisoned-concepts", "0", "--cache", str(tmp_path / "cache"), "--quiet",
                 "--out", str(emoji)]) == 0
    with pytest.raises(InputError, match="holds results of another setting"):
        main([*args[:-1], str(emoji)])


def test_own_data_clean_pairs_train_on_their_own_captions(tmp_path: Path):
    from empirical.folder_data import FolderFormat, concept_data_from_folder
    from empirical.presets import PRESETS
    from empirical.assets import build_mix, prepare_assets

    folder = _user_folder(tmp_path)
    user = concept_data_from_folder(folder, size=16, held_out=2, fmt=FolderFormat("path", "prompt"),
                                    names=["sun", "lake"])
    assets = prepare_assets(PRESETS["micro"], tmp_path / "cache", user_data=user)
    mix, texts = build_mix(assets, np.array([0, 1]), np.array([1, 1]))
    assert texts[:16] == list(user[0].captions)  # clean pairs: the user's captions
    from empirical.data import caption

    assert texts[16:] == [caption("lake", 0), caption("lake", 1)]  # extra pairs: the concept's templates
    assert len(user[1]) == 4 and set(user[1].labels.tolist()) == {0, 1}


@pytest.mark.parametrize("extra, message", [
    ([], "needs its concepts"),
    (["--concepts-file", "nope.txt"], "no such file"),
    (["--caption-template", "a photo of a {}", "--n-concepts", "3"], "the concepts are the data's"),
    (["--caption-template", "no braces"], "exactly one {}"),
])
def test_own_data_bad_input_is_one_line(tmp_path: Path, extra, message):
    folder = _user_folder(tmp_path)
    out = tmp_path / "o"
    proc = subprocess.run([sys.executable, "-m", "empirical.run", "--preset", "micro", "--train-data-dir", str(folder),
                           "--image-column", "path", "--caption-column", "prompt", *extra, "--out", str(out),
                           "--cache", str(tmp_path / "c")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_exported_emoji_folder_reads_back_as_the_built_in_data(tmp_path: Path):
    """``empirical.export_folder`` writes a preset's renders as an imagefolder; read back with its concepts file
    the own-data path gets the built-in data exactly: the same pixels, captions, concepts and held-out split."""
    from dataclasses import asdict

    from empirical.data import RenderConfig, load_or_render
    from empirical.export_folder import main as export
    from empirical.folder_data import concept_data_from_folder
    from empirical.presets import get_preset
    from implosion_base.captions import read_concepts_file

    cache, out = tmp_path / "cache", tmp_path / "emoji"
    assert export(["--preset", "smoke", "--out", str(out), "--cache", str(cache)]) == 0
    preset = get_preset("smoke")
    train = load_or_render(preset.render, cache)
    held = load_or_render(RenderConfig(**{**asdict(preset.render), "per_concept": preset.held_out, "variant": 1}),
                          cache)
    names = read_concepts_file(out / "concepts.txt")
    got_train, got_held, _ = concept_data_from_folder(out, size=preset.render.size, held_out=preset.held_out,
                                                      names=names)
    assert got_train.names == train.names and not got_train.notices
    for got, want in ((got_train, train), (got_held, held)):
        assert np.array_equal(got.images, want.images) and np.array_equal(got.labels, want.labels)
        assert got.captions == want.captions
    # an existing, non-empty --out is refused in one line; nothing is touched
    proc = subprocess.run([sys.executable, "-m", "empirical.export_folder", "--preset", "smoke", "--out", str(out),
                           "--cache", str(cache)], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 2 and "not an empty folder" in proc.stderr and len(proc.stderr.splitlines()) == 1
    assert len((out / "train" / "metadata.jsonl").read_text().splitlines()) == len(train) + len(held)


def test_a_folder_of_class_subfolders_needs_no_concepts_file(tmp_path: Path):
    """``train/<label>/*.png`` (datasets' imagefolder with labels): the concepts are the labels."""
    from PIL import Image

    rng = np.random.default_rng(1)
    for label in ("sun", "lake", "tree"):
        (tmp_path / "classes" / "train" / label).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(
                tmp_path / "classes" / "train" / label / f"{i}.png")
    out = tmp_path / "out"
    assert main(["--preset", "micro", "--train_data_dir", str(tmp_path / "classes"), "--poisoned-concepts", "1",
                 "--no-control", "--cache", str(tmp_path / "cache"), "--quiet", "--out", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(manifest["assets"]["concepts"]) == ["lake", "sun", "tree"]
    # the judge trained on this folder is kept in the run folder, and empirical.embed finds it there
    assert manifest["assets"]["judge_folder"] == "judge" and (out / "judge" / "judge.safetensors").is_file()
    from empirical.embed import main as embed

    assert embed([str(tmp_path / "classes"), "--judge", str(out), "--out", str(tmp_path / "e.npz"), "--quiet"]) == 0
    with np.load(tmp_path / "e.npz", allow_pickle=False) as z:
        assert z["text"].shape[0] == z["image"].shape[0] == 18
    # a run folder that kept no judge (an emoji run's manifest has no judge_folder) is a one-line error
    emoji = tmp_path / "emoji"
    emoji.mkdir()
    manifest.pop("assets")
    (emoji / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(InputError, match="without a judge of its own"):
        embed([str(tmp_path / "classes"), "--judge", str(emoji), "--out", str(tmp_path / "f.npz"), "--quiet"])
