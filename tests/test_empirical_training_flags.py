"""diffusers' training vocabulary in python -m empirical.run: the flags, their underscore spellings, the
learning-rate schedules, gradient accumulation, --resolution and crops; each a part of the folder's setting."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("diffusers")

from empirical.options import parser  # noqa: E402
from empirical.run import main  # noqa: E402
from empirical.schedule import LR_SCHEDULERS, lr_factor  # noqa: E402
from empirical.train import TrainConfig  # noqa: E402
from implosion_base.cli import underscore_spellings  # noqa: E402
from implosion_base.errors import InputError  # noqa: E402


def test_underscore_spellings_map_to_the_options_and_leave_the_rest():
    known = {"--learning-rate": 1, "--out": 1, "--a_b": 1}
    assert underscore_spellings(["--learning_rate", "1e-4", "--out=x_y", "--a_b", "--", "--learning_rate"],
                                known) == ["--learning-rate", "1e-4", "--out=x_y", "--a_b", "--", "--learning_rate"]
    assert underscore_spellings(["--not_an_option"], known) == ["--not_an_option"]


def test_a_diffusers_command_line_parses_to_our_options(tmp_path: Path):
    # train_text_to_image(_lora).py's README flags, the model path aside
    args = parser("").parse_args([
        "--pretrained_model_name_or_path", str(tmp_path), "--train_data_dir", str(tmp_path), "--caption_column",
        "text", "--image_column", "image", "--resolution", "64", "--center_crop", "--train_batch_size", "4",
        "--gradient_accumulation_steps", "2", "--max_train_steps", "15", "--learning_rate", "1e-04",
        "--lr_scheduler", "constant", "--lr_warmup_steps", "0", "--output_dir", str(tmp_path / "o"), "--seed", "3",
        "--mixed_precision", "no", "--rank", "4"])
    assert (args.pretrained, args.train_data_dir, args.caption_column, args.image_column) == (
        tmp_path, tmp_path, "text", "image")
    assert (args.resolution, args.crop, args.train_batch_size, args.gradient_accumulation_steps, args.steps) == (
        64, "center", 4, 2, 15)
    assert (args.learning_rate, args.lr_scheduler, args.lr_warmup_steps, args.out, args.seeds, args.lora_rank) == (
        1e-4, "constant", 0, tmp_path / "o", "3", 4)


@pytest.mark.parametrize("name", [n for n in LR_SCHEDULERS if n != "warmup_constant"])
def test_schedules_are_diffusers_own(name):
    import torch
    from diffusers.optimization import get_scheduler

    cfg = TrainConfig(steps=20, warmup=5, lr_scheduler=name, lr=0.1)
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    sched = get_scheduler(name, opt, num_warmup_steps=5, num_training_steps=20)
    f = lr_factor(cfg)
    for k in range(20):  # diffusers' scripts: optimizer.step() at lr_k, then lr_scheduler.step()
        assert 0.1 * f(k) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-6, abs=1e-12), k
        opt.step()
        sched.step()


def test_our_default_schedule_is_unchanged_and_keys_made_before_the_new_fields_still_match():
    cfg = TrainConfig(steps=10, warmup=4)
    assert [lr_factor(cfg)(k) for k in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    old_key = {k: v for k, v in vars(cfg).items() if k not in ("steps", "checkpoint_every", "lr_scheduler",
                                                                "gradient_accumulation_steps")}
    assert cfg.identity() == old_key
    assert "steps" in TrainConfig(steps=10, lr_scheduler="cosine").identity()  # a length-dependent schedule
    assert TrainConfig(gradient_accumulation_steps=2).identity()["gradient_accumulation_steps"] == 2
    with pytest.raises(InputError, match="learning-rate schedule"):
        TrainConfig(lr_scheduler="exponential")
    with pytest.raises(InputError, match="gradient accumulation"):
        TrainConfig(gradient_accumulation_steps=0)


def test_the_flags_train_and_a_folder_refuses_a_change_by_name(tmp_path: Path):
    out, cache = tmp_path / "out", tmp_path / "cache"
    base = ["--preset", "micro", "--poisoned-concepts", "1", "--no-control", "--seed", "0", "--cache", str(cache),
            "--out", str(out), "--quiet", "--threads", "1"]
    flags = ["--learning_rate", "5e-4", "--train_batch_size", "4", "--gradient_accumulation_steps", "2",
             "--lr_scheduler", "cosine", "--lr_warmup_steps", "1", "--resolution", "32"]
    assert main(base + flags) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    continued = manifest["setting"]["continued"]
    assert (continued["lr"], continued["batch_size"], continued["gradient_accumulation_steps"],
            continued["lr_scheduler"], continued["warmup"]) == (5e-4, 4, 2, "cosine", 1)
    assert manifest["setting"]["render"]["size"] == 32
    loss = np.loadtxt(next((out / "points").glob("*-loss.csv")), delimiter=",", skiprows=1)
    assert loss.shape == (4, 2) and np.isfinite(loss[:, 1]).all()  # micro: 4 steps, one loss each
    for change, name in ((["--learning-rate", "1e-3"], "continued.lr"),
                         (["--lr-scheduler", "linear"], "continued.lr_scheduler"),
                         (["--gradient-accumulation-steps", "1"], "continued.gradient_accumulation_steps"),
                         (["--resolution", "16"], "render.size")):
        changed = flags + change
        with pytest.raises(InputError, match=rf"another setting \({name}: "):
            main(base + changed)


def test_bad_training_flags_are_one_line_errors(tmp_path: Path):
    base = ["--preset", "micro", "--out", str(tmp_path / "o"), "--dry-run"]
    for extra, message in ((["--resolution", "30"], "multiple of 4"), (["--learning-rate", "-1"], "--learning-rate"),
                           (["--train-batch-size", "0"], "--train-batch-size"),
                           (["--crop", "random"], "there is none")):
        with pytest.raises(InputError, match=message):
            main(base + extra)


def test_random_crop_is_drawn_per_image_and_centre_is_the_middle(tmp_path: Path):
    from PIL import Image

    from empirical.folder_data import decode_image

    pixels = np.zeros((8, 40, 3), np.uint8)
    pixels[:, :, 0] = np.arange(40)[None, :] * 6  # a horizontal ramp: the crop's offset shows in red
    Image.fromarray(pixels).save(tmp_path / "wide.png")
    centre, _ = decode_image(tmp_path / "wide.png", 8)
    assert centre[0, 0, 0] == 16 * 6  # (40 - 8) // 2 = 16
    offsets = {int(decode_image(tmp_path / "wide.png", 8, crop="random", draw=d)[0][0, 0, 0]) // 6
               for d in range(30)}
    assert len(offsets) > 5 and offsets <= set(range(33))
    again, _ = decode_image(tmp_path / "wide.png", 8, crop="random", draw=7)
    assert np.array_equal(again, decode_image(tmp_path / "wide.png", 8, crop="random", draw=7)[0])


def test_the_diffusers_lora_readme_command_runs_on_a_local_folder(tmp_path: Path):
    """train_text_to_image_lora.py's README command line, the model path a local folder and the data a local
    imagefolder; our own options only where the harness needs them (its concepts, C_P, micro sizes)."""
    from empirical.pretrained import make_tiny_sd
    from tests.test_empirical_own_data import _user_folder

    model = make_tiny_sd(tmp_path / "tiny-sd", seed=0)  # 16 px images, x2 VAE, 2 UNet levels: multiples of 4
    data = _user_folder(tmp_path)
    out = tmp_path / "sd-lora"
    assert main([
        "--pretrained_model_name_or_path", str(model), "--train_data_dir", str(data), "--image_column", "path",
        "--caption_column", "prompt", "--resolution", "24", "--center_crop", "--train_batch_size", "4",
        "--gradient_accumulation_steps", "2", "--max_train_steps", "3", "--learning_rate", "1e-04",
        "--lr_scheduler", "cosine", "--lr_warmup_steps", "0", "--seed", "1337", "--output_dir", str(out),
        "--rank", "4", "--scenario", "lora", "--concepts-file", str(tmp_path / "concepts.txt"), "--preset", "micro",
        "--poisoned-concepts", "1", "--no-control", "--cache", str(tmp_path / "cache"), "--quiet"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["setting"]["render"]["size"] == 24 and manifest["setting"]["lora"]["rank"] == 4
    assert manifest["setting"]["continued"]["lr_scheduler"] == "cosine"
    import csv

    with open(out / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["seed"], r["c_p"], r["kind"]) for r in rows] == [("1337", "1", "poisoned")]
