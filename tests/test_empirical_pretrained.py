"""--pretrained: a Stable Diffusion folder (tiny, built from config with CLIP's real BPE tokenizer) as the base model."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("diffusers")

from empirical.pretrained import clip_vocab_and_merges, load_base, make_tiny_sd, write_clip_tokenizer  # noqa: E402
from empirical.run import main as run_main  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory) -> Path:
    return make_tiny_sd(tmp_path_factory.mktemp("sd") / "tiny-sd", seed=0)


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(folder.rglob("*.safetensors")):
        h.update(f.read_bytes())
    return h.hexdigest()


def test_clip_tokenizer_reproduces_stable_diffusion_ids(tmp_path):
    from transformers import CLIPTokenizer

    vocab, merges = clip_vocab_and_merges()
    assert len(vocab) == 49408 and len(merges) == 48894
    tok = CLIPTokenizer.from_pretrained(write_clip_tokenizer(tmp_path / "tok"), local_files_only=True)
    assert tok("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert tok.model_max_length == 77


def test_tiny_sd_folder_loads_as_a_base(tiny_sd):
    base, vae, te = load_base(tiny_sd)
    assert base.image_size == 16 and te.dim == 32 and te.max_length == 77
    assert base.scheduler_config["beta_schedule"] == "scaled_linear"
    assert te.token_states(["a photo of a bird"]).shape == (1, 77, 32)
    assert load_base(tiny_sd)[0].key == base.key  # a content key: stable across loads


@pytest.mark.slow
def test_a_retrained_checkpoint_of_the_same_architecture_is_another_setting(tmp_path, tiny_sd):
    """Results of one model are never reported as another's: a folder whose UNet weights differ (same configs)
    has another key, so a results folder written with one refuses the other."""
    import torch
    from safetensors.torch import load_file, save_file

    other = tmp_path / "other"
    shutil.copytree(tiny_sd, other)
    f = next((other / "unet").glob("*.safetensors"))
    state = load_file(str(f))
    last = sorted(state)[-1]
    state[last] = state[last] + 1e-3 * torch.ones_like(state[last])  # a tensor beyond any 16-tensor sample
    save_file(state, str(f), metadata={"format": "pt"})
    assert load_base(other)[0].key != load_base(tiny_sd)[0].key
    out = tmp_path / "out"
    base = ["--preset", "micro", "--poisoned-concepts", "0", "--quiet", "--threads", "1", "--cache",
            str(tmp_path / "cache"), "--out", str(out)]
    assert run_main([*base, "--pretrained", str(tiny_sd)]) == 0
    r = _cli("--pretrained", str(other), "--out", str(out), "--cache", str(tmp_path / "cache"))
    assert r.returncode == 2 and "holds results of another setting (pretrained:" in r.stderr


@pytest.mark.parametrize("scenario", ["continuous", "lora"])
def test_run_fine_tunes_the_pretrained_unet_on_its_own_schedule(tmp_path, tiny_sd, scenario):
    before = _digest(tiny_sd)
    out = tmp_path / "out"
    assert run_main(["--preset", "micro", "--pretrained", str(tiny_sd), "--scenario", scenario,
                     "--poisoned-concepts", "0,2", "--no-control", "--keep-models", "--quiet", "--threads", "1",
                     "--cache", str(tmp_path / "cache"), "--out", str(out)]) == 0
    rows = (out / "results.csv").read_text().splitlines()
    assert len(rows) == 3
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["pretrained"] == str(tiny_sd.resolve()) and "pretrained" in manifest["setting"]
    assert manifest["setting"]["render"]["size"] == 16
    saved = out / "models" / f"{scenario}-s0-cp2-poisoned"
    if scenario == "lora":  # the adapter, on the user's folder as its base
        from empirical.model import load_pipeline

        assert json.loads((saved / "adapter.json").read_text())["base"] == str(tiny_sd.resolve())
        assert not (saved / "unet").exists()
        pipe = load_pipeline(tiny_sd)
        pipe.load_lora_weights(str(saved))
        assert any("lora" in k for k in pipe.unet.state_dict())
    else:
        sched = json.loads((saved / "scheduler" / "scheduler_config.json").read_text())
        assert sched["beta_schedule"] == "scaled_linear"  # trained and sampled on SD's schedule, not ours
        assert json.loads((saved / "text_encoder" / "config.json").read_text())["model_type"] == "clip_text_model"
    assert _digest(tiny_sd) == before  # the user's folder is never written


def _variant_copy(tiny_sd: Path, folder: Path, kind: str | None = None) -> Path:
    """A copy of the tiny SD folder holding fp16-variant weights only (``*.fp16.safetensors``), and optionally a
    scheduler with another prediction_type."""
    import torch

    from empirical.model import load_pipeline

    pipe = load_pipeline(tiny_sd).to(torch.float16)
    pipe.save_pretrained(folder, safe_serialization=True, variant="fp16")
    if kind is not None:
        cfg = folder / "scheduler" / "scheduler_config.json"
        cfg.write_text(json.dumps({**json.loads(cfg.read_text()), "prediction_type": kind}))
    return folder


@pytest.mark.slow
def test_fp16_variant_folder_needs_and_takes_variant(tmp_path, tiny_sd):
    folder = _variant_copy(tiny_sd, tmp_path / "fp16")
    assert not list((folder / "unet").glob("diffusion_pytorch_model.safetensors"))
    r = _cli("--pretrained", str(folder), "--out", str(tmp_path / "o"), "--cache", str(tmp_path / "c"))
    assert r.returncode == 2 and "holds only 'fp16'-variant weights: pass --variant fp16" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "o").exists()
    r = _cli("--pretrained", str(tiny_sd), "--variant", "fp16", "--out", str(tmp_path / "o"),
             "--cache", str(tmp_path / "c"))
    assert r.returncode == 2 and "has no 'fp16'-variant weights (it holds plain weights)" in r.stderr
    base, vae, te = load_base(folder, variant="fp16")
    plain, _, _ = load_base(tiny_sd)
    assert base.image_size == plain.image_size
    w = next(iter(base.unet_state.values()))
    assert w.dtype.is_floating_point and str(w.dtype) == "torch.float32"  # held as float32 for training
    assert next(vae.parameters()).dtype == w.dtype and next(te.model.parameters()).dtype == w.dtype
    for k, v in plain.unet_state.items():  # the fp16 copy is the plain weights rounded to half precision
        assert np.allclose(base.unet_state[k].numpy(), v.half().float().numpy())


@pytest.mark.slow
def test_v_prediction_folder_fine_tunes_and_sample_prediction_is_refused(tmp_path, tiny_sd):
    folder = _variant_copy(tiny_sd, tmp_path / "v", "v_prediction")
    out = tmp_path / "out"
    assert run_main(["--preset", "micro", "--pretrained", str(folder), "--variant", "fp16",
                     "--poisoned-concepts", "0", "--quiet", "--threads", "1", "--cache", str(tmp_path / "cache"),
                     "--out", str(out)]) == 0
    assert json.loads((out / "manifest.json").read_text())["setting"]["pretrained"]
    bad = _variant_copy(tiny_sd, tmp_path / "s", "sample")
    r = _cli("--pretrained", str(bad), "--variant", "fp16", "--out", str(tmp_path / "o2"),
             "--cache", str(tmp_path / "c"))
    assert r.returncode == 2 and "prediction_type 'sample' is not supported" in r.stderr
    assert "Traceback" not in r.stderr


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "empirical.run", "--preset", "micro", "--quiet",
                           "--poisoned-concepts", "0,1", *args],
                          cwd=ROOT, capture_output=True, text=True)


@pytest.mark.slow
def test_pickle_only_folder_is_refused_naming_the_file(tmp_path, tiny_sd):
    bad = tmp_path / "pickled"
    shutil.copytree(tiny_sd, bad)
    for f in (bad / "unet").glob("*.safetensors"):
        f.rename(f.with_name("diffusion_pytorch_model.bin"))
    r = _cli("--pretrained", str(bad), "--out", str(tmp_path / "o"), "--cache", str(tmp_path / "c"))
    assert r.returncode == 2 and "diffusion_pytorch_model.bin" in r.stderr and "safetensors" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "o").exists()


@pytest.mark.parametrize("scenario, missing, message", [
    ("scratch", False, "scratch trains from an initialisation"),
    ("continuous", True, "is not a folder"),
])
def test_bad_pretrained_usage_exits_2(tmp_path, tiny_sd, scenario, missing, message):
    folder = tmp_path / "nope" if missing else tiny_sd
    r = _cli("--scenario", scenario, "--pretrained", str(folder), "--out", str(tmp_path / "o"),
             "--cache", str(tmp_path / "c"))
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "o").exists()


def test_tiny_cli_refuses_a_non_empty_folder(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "file").write_text("keep me")
    r = subprocess.run([sys.executable, "-m", "empirical.pretrained", "tiny", str(tmp_path / "x")], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 2 and "not empty" in r.stderr and (tmp_path / "x" / "file").read_text() == "keep me"


@pytest.mark.slow
def test_run_with_a_local_clip_judge(tmp_path):
    """--judge DIR: the CLIP folder reads the generated images and embeds the mix; the setting records it."""
    from empirical.judge import ClipJudge
    from empirical.pretrained import make_tiny_clip

    clip = make_tiny_clip(tmp_path / "clip")
    judge = ClipJudge(clip, ["bird", "fish"])
    p = judge.probabilities(np.zeros((3, 16, 16, 3), np.uint8))
    assert p.shape == (3, 2) and np.allclose(p.sum(1), 1)
    e = judge.embed_texts(["a photo of a bird", "a photo of a fish", "a photo of a bird"])
    assert np.allclose(np.linalg.norm(e, axis=1), 1) and np.allclose(e[0], e[2])
    out = tmp_path / "out"
    assert run_main(["--preset", "micro", "--judge", str(clip), "--poisoned-concepts", "0,1", "--no-control",
                     "--quiet", "--threads", "1", "--cache", str(tmp_path / "cache"), "--out", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["judge"] == str(clip.resolve()) and manifest["setting"]["judge_model"].startswith("clip:")
    assert len((out / "results.csv").read_text().splitlines()) == 3
    r = _cli("--judge", str(tmp_path / "out"), "--out", str(tmp_path / "o2"), "--cache", str(tmp_path / "c"))
    assert r.returncode == 2 and "not a CLIP model folder" in r.stderr and not (tmp_path / "o2").exists()


def test_remote_code_in_a_tokenizer_folder_never_runs(tmp_path, tiny_sd):
    """A tokenizer_config.json with an auto_map to a tokenizer class in the folder's own .py file: loading the base
    model must not import that file (it would write a marker), whatever stdin says."""
    import json
    import shutil

    from empirical.text_encoder import TextEncoder
    from implosion_base.errors import InputError

    sd = tmp_path / "sd"
    shutil.copytree(tiny_sd, sd)
    marker = tmp_path / "ran"
    (sd / "tokenizer" / "evil.py").write_text(
        f"open({str(marker)!r}, 'w').write('x')\nfrom transformers import CLIPTokenizer\n"
        "class EvilTokenizer(CLIPTokenizer):\n    pass\n")
    cfg_path = sd / "tokenizer" / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["auto_map"] = {"AutoTokenizer": ["evil.EvilTokenizer", None]}
    cfg["tokenizer_class"] = "EvilTokenizer"
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(InputError, match="custom code"):
        TextEncoder(sd / "text_encoder", tokenizer_path=sd / "tokenizer", max_length=77)
    assert not marker.exists()


def test_tiny_cli_refuses_bad_targets_and_leaves_nothing_half_written(tmp_path):
    from empirical.pretrained import main
    from implosion_base.errors import InputError

    a_file = tmp_path / "f"
    a_file.write_text("x")
    with pytest.raises(InputError, match="is a file"):
        main(["tiny", str(a_file)])
    with pytest.raises(InputError, match="--seed"):
        main(["tiny", str(tmp_path / "s"), "--seed", str(2**40)])
    assert main(["tiny-clip", str(tmp_path / "clip")]) == 0
    assert (tmp_path / "clip" / "config.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip", "f"]  # no temporary folder left behind


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["truncated-unet", "config-list"])
def test_damaged_model_folders_are_named_in_one_line(tmp_path, tiny_sd, damage):
    import shutil
    import subprocess
    import sys

    sd = tmp_path / "sd"
    shutil.copytree(tiny_sd, sd)
    if damage == "truncated-unet":
        weights = next((sd / "unet").glob("*.safetensors"))
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    else:
        (sd / "unet" / "config.json").write_text("[1]")
    proc = subprocess.run([sys.executable, "-m", "empirical.run", "--preset", "micro", "--pretrained", str(sd),
                           "--out", str(tmp_path / "o"), "--cache", str(tmp_path / "c")],
                          capture_output=True, text=True, timeout=300, cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert str(sd) in proc.stderr and "Traceback" not in proc.stderr
