"""The latent text-to-image model: a tiny AutoencoderKL + a UNet2DConditionModel with cross-attention, assembled
as a real diffusers ``StableDiffusionPipeline`` with the frozen text encoder.

As in latent diffusion (Rombach et al. 2022), images x are encoded to latents z = s·E(x) (s = ``scaling_factor``,
set to 1/std of the clean latents so z has unit variance), the UNet ε_θ(z_t, t, c) is trained with the DDPM loss
E||ε − ε_θ(√ᾱ_t z + √(1−ᾱ_t) ε, t, c)||², where c are the text encoder's token states reaching the UNet through
cross-attention, and sampling uses DDIM with classifier-free guidance
ε̂ = ε_θ(z, t, ∅) + w·(ε_θ(z, t, c) − ε_θ(z, t, ∅)) (∅ = the empty caption, learned through caption dropout).

Cross-attention sits only at low latent resolution (≤ 8×8) to keep the CPU cost sane. Pipelines are saved and
loaded as standard diffusers folders with safetensors weights.
"""

from __future__ import annotations

import hashlib
import json
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from empirical.seeding import seeded
from implosion_base.errors import InputError, first_line
from implosion_base.errors import DAMAGE, UNLOADABLE
from implosion_base.files import atomic_path, discard_damaged
from implosion_base.progress import Progress, as_progress


@dataclass(frozen=True)
class VAEConfig:
    """AutoencoderKL: ``channels`` per resolution level (downsampling factor 2**(levels−1)), ``latent_channels``;
    trained for ``steps`` Adam steps (batch ``batch_size``, ``lr``) on MSE + ``kl_weight``·KL."""

    channels: tuple[int, ...] = (32, 64, 64)
    latent_channels: int = 4
    layers_per_block: int = 1
    norm_groups: int = 16
    steps: int = 1500
    batch_size: int = 64
    lr: float = 2e-3
    kl_weight: float = 1e-6
    seed: int = 0

    def key(self, data_key: str) -> str:
        blob = json.dumps({**asdict(self), "data": data_key, "version": 1}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class UNetConfig:
    """UNet2DConditionModel over latents: ``channels`` per level; levels listed in ``attention`` carry
    cross-attention (plus the mid block, always); ``head_dim`` channels per attention head."""

    channels: tuple[int, ...] = (96, 192)
    attention: tuple[bool, ...] = (False, True)
    layers_per_block: int = 2
    head_dim: int = 32
    norm_groups: int = 32

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if len(self.channels) != len(self.attention) or not self.channels:
            raise InputError("UNet channels and attention flags must have the same non-zero length")


def build_vae(cfg: VAEConfig):
    """A fresh AutoencoderKL for RGB images (seeded with ``cfg.seed``)."""
    from diffusers import AutoencoderKL

    n = len(cfg.channels)
    with seeded(cfg.seed):
        return AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * n,
                             up_block_types=("UpDecoderBlock2D",) * n, block_out_channels=tuple(cfg.channels),
                             layers_per_block=cfg.layers_per_block, latent_channels=cfg.latent_channels,
                             norm_num_groups=cfg.norm_groups, sample_size=32)


def build_unet(cfg: UNetConfig, *, sample_size: int, latent_channels: int, cross_attention_dim: int, seed: int):
    """A fresh UNet2DConditionModel (seeded) with cross-attention on the flagged levels and the mid block."""
    from diffusers import UNet2DConditionModel

    cfg.validate()
    down = tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in cfg.attention)
    up = tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(cfg.attention))
    with seeded(seed):
        return UNet2DConditionModel(sample_size=sample_size, in_channels=latent_channels,
                                    out_channels=latent_channels, down_block_types=down, up_block_types=up,
                                    block_out_channels=tuple(cfg.channels), layers_per_block=cfg.layers_per_block,
                                    cross_attention_dim=cross_attention_dim, attention_head_dim=cfg.head_dim,
                                    norm_num_groups=cfg.norm_groups)


def n_params(module) -> int:
    """Number of parameters of a torch module."""
    return int(sum(p.numel() for p in module.parameters()))


def train_vae(images: np.ndarray, cfg: VAEConfig, *, progress: Progress | bool = False, device: str = "cpu"):
    """Train an AutoencoderKL on uint8 images (N, H, W, 3) and set its ``scaling_factor`` to 1/std of the latent
    means. Returns the VAE in eval mode (frozen)."""
    import torch

    from empirical.data import to_tensor
    from empirical.schedule import warmup_cosine

    vae = build_vae(cfg).to(device)
    gen = torch.Generator().manual_seed(cfg.seed)
    x_all = to_tensor(images)
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, cfg.steps))
    steps = as_progress(progress).bar(range(cfg.steps), desc="vae")
    vae.train()
    for step in steps:
        x = x_all[torch.randint(0, len(x_all), (min(cfg.batch_size, len(x_all)),), generator=gen)].to(device)
        post = vae.encode(x).latent_dist
        z = post.mean + post.std * torch.randn(post.mean.shape, generator=gen).to(device)
        rec = vae.decode(z).sample
        loss = torch.nn.functional.mse_loss(rec, x) + cfg.kl_weight * post.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 10 == 0:
            steps.set_postfix(loss=f"{float(loss.detach()):.4f}")
    vae.eval().requires_grad_(False)
    with torch.no_grad():
        mu = torch.cat([vae.encode(x_all[i:i + 512].to(device)).latent_dist.mean.cpu()
                        for i in range(0, len(x_all), 512)])
    vae.register_to_config(scaling_factor=float(1.0 / mu.std()))
    return vae


def vae_reconstruction_error(vae, images: np.ndarray) -> float:
    """Mean squared error of decode(mean latent) on [-1, 1] images."""
    import torch

    from empirical.data import to_tensor

    x = to_tensor(images)
    with torch.no_grad():
        rec = torch.cat([vae.decode(vae.encode(x[i:i + 256].to(vae.device)).latent_dist.mean).sample.cpu()
                         for i in range(0, len(x), 256)])
    return float(torch.mean((rec - x) ** 2))


def load_or_train_vae(images: np.ndarray, cfg: VAEConfig, *, cache_dir: Path | None, data_key: str,
                      progress: Progress | bool = False, device: str = "cpu"):
    """:func:`train_vae`, cached as a diffusers model folder ``cache_dir/vae-<key>/`` (safetensors)."""
    from diffusers import AutoencoderKL

    folder = Path(cache_dir) / f"vae-{cfg.key(data_key)}" if cache_dir is not None else None
    if folder is not None and (folder / "config.json").is_file():
        try:
            return AutoencoderKL.from_pretrained(folder, local_files_only=True, use_safetensors=True).to(device).eval()
        except DAMAGE as exc:
            discard_damaged(folder, exc)
    vae = train_vae(images, cfg, progress=progress, device=device)
    if folder is not None:
        with atomic_path(folder) as tmp:
            vae.save_pretrained(tmp, safe_serialization=True)
    return vae


def noise_scheduler(config: dict | None = None):
    """The DDPM training schedule: ours (1000 steps, cosine ᾱ, ε-prediction), or a pretrained model's own
    ``config`` (a scheduler config dict, e.g. Stable Diffusion's scaled-linear schedule)."""
    from diffusers import DDPMScheduler

    if config is not None:
        return DDPMScheduler.from_config(config)
    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type="epsilon",
                         clip_sample=False, steps_offset=1)


@contextmanager
def quiet_transformers():
    """transformers' logging at ERROR for the duration (importing the SD pipeline warns that CLIP's image processor
    falls back to PIL without torchvision — true, harmless, and noise on every command's stderr)."""
    from transformers.utils import logging as tlog

    old = tlog.get_verbosity()
    tlog.set_verbosity_error()
    try:
        yield
    finally:
        tlog.set_verbosity(old)


def assemble_pipeline(vae, unet, text_encoder, scheduler_config: dict | None = None):
    """A ``StableDiffusionPipeline`` from our parts, with a DDIM sampler on the training schedule
    (:func:`noise_scheduler` of ``scheduler_config``) and no safety checker (there is nothing to check at this
    scale). ``text_encoder`` is an :class:`empirical.text_encoder.TextEncoder`."""
    with quiet_transformers():
        from diffusers import DDIMScheduler, StableDiffusionPipeline

    scheduler = DDIMScheduler.from_config(noise_scheduler(scheduler_config).config)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder.model, tokenizer=text_encoder.tokenizer,
                                   unet=unet, scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def save_pipeline(pipe, folder: Path) -> None:
    """Save as a diffusers folder with safetensors weights, atomically (written beside, then renamed)."""
    with atomic_path(Path(folder)) as tmp:
        pipe.save_pretrained(tmp, safe_serialization=True)


def weight_variants(part: Path) -> set[str | None]:
    """The weight variants a component folder holds in safetensors: ``None`` for plain names
    (``model.safetensors``), the tag for variant names (``model.fp16.safetensors``,
    ``model.fp16-00001-of-00002.safetensors``)."""
    found: set[str | None] = set()
    for f in part.glob("*.safetensors"):
        bits = f.name[: -len(".safetensors")].split(".")
        found.add(bits[-1].split("-")[0] if len(bits) > 1 else None)
    return found


def check_pipeline_folder(folder: Path, variant: str | None = None) -> None:
    """InputError naming the first problem of a diffusers Stable Diffusion folder: no (valid) ``model_index.json``,
    a missing component, a component without safetensors weights (pickles are refused, named), without weights
    of ``variant``, or with a damaged config."""
    index = folder / "model_index.json"
    if not index.is_file():
        raise InputError(f"{folder} is not a diffusers pipeline folder (no model_index.json)")
    try:
        entries = json.loads(index.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"{index} is not valid JSON ({exc.msg})") from None
    except (UnicodeDecodeError, RecursionError):
        raise InputError(f"{index} is not readable JSON (not UTF-8, or nested too deeply)") from None
    if not isinstance(entries, dict):
        raise InputError(f"{index} is not a JSON object (a JSON {type(entries).__name__}): the folder is damaged")
    for part in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        if not (folder / part).is_dir():
            raise InputError(f"{folder} has no {part}/ component")
    for part in ("unet", "vae", "text_encoder"):
        variants = weight_variants(folder / part)
        if not variants:
            pickles = [p.name for p in (folder / part).iterdir() if p.suffix in (".bin", ".ckpt", ".pt", ".pth")]
            hint = f" (found {pickles[0]}: convert it to safetensors)" if pickles else ""
            raise InputError(f"{folder / part} has no .safetensors weights{hint}")
        if variant not in variants:
            held = sorted(v for v in variants if v is not None)
            if variant is None:
                raise InputError(f"{folder / part} holds only {', '.join(repr(v) for v in held)}-variant weights: "
                                 f"pass --variant {held[0]}")
            plain = "plain weights" if None in variants else ""
            raise InputError(f"{folder / part} has no {variant!r}-variant weights (it holds "
                             f"{', '.join([plain] * bool(plain) + [repr(v) for v in held])})")
    for part in ("unet", "vae", "text_encoder", "scheduler"):
        for cfg in (folder / part).glob("*config.json"):
            try:
                ok = isinstance(json.loads(cfg.read_text(encoding="utf-8")), dict)
            except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError):
                ok = False
            if not ok:
                raise InputError(f"{cfg} is not a JSON object: the folder is damaged")


def load_pipeline(folder: Path, *, device: str = "cpu", variant: str | None = None):
    """Load a local diffusers Stable Diffusion folder: ``local_files_only``, safetensors only, no remote code,
    weights of ``variant`` (e.g. ``fp16``: ``*.fp16.safetensors``) when given, always as float32 (training and
    evaluation choose their own precision).

    Raises :class:`InputError` naming the problem if ``folder`` is not such a folder.
    """
    import torch

    with quiet_transformers():
        from diffusers import StableDiffusionPipeline

    folder = Path(folder)
    check_pipeline_folder(folder, variant)
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()  # loading bars would bury a one-line error
    transformers_logging.disable_progress_bar()
    try:
        pipe = StableDiffusionPipeline.from_pretrained(folder, local_files_only=True, use_safetensors=True,
                                                       variant=variant, dtype=torch.float32,
                                                       safety_checker=None, requires_safety_checker=False)
    except UNLOADABLE as exc:
        # a truncated or inconsistent checkpoint (safetensors header, shapes, missing keys, impossible config values)
        raise InputError(f"cannot load the pipeline in {folder}: {type(exc).__name__}: {first_line(exc)[:300]}") from None
    finally:
        diffusers_logging.enable_progress_bar()
        transformers_logging.enable_progress_bar()
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def generate(pipe, prompts: list[str], seeds: list[int], *, steps: int = 20, guidance: float = 4.0,
             batch_size: int = 256) -> np.ndarray:
    """Images (N, H, W, 3) uint8 for ``prompts[i]`` from initial noise seeded by ``seeds[i]`` (DDIM, CFG)."""
    import torch

    if len(prompts) != len(seeds):
        raise InputError("generate needs one seed per prompt")
    out = []
    for i in range(0, len(prompts), batch_size):
        gens = [torch.Generator(device="cpu").manual_seed(int(s)) for s in seeds[i:i + batch_size]]
        with torch.no_grad():
            imgs = pipe(prompts[i:i + batch_size], num_inference_steps=steps, guidance_scale=guidance,
                        generator=gens, output_type="np").images
        out.append(np.clip(np.round(imgs * 255), 0, 255).astype(np.uint8))
    return np.concatenate(out)
