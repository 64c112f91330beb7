"""What every point of an experiment shares (:class:`Assets`): the concept data, the frozen VAE and text encoder,
the judge, the latents, the caption bank — and the clean pretraining that continuous and LoRA runs start from.
Everything here is cached in ``--cache`` by the settings that determine it."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from empirical.meaningless import MeaninglessRule, calibrate
from empirical.data import CAPTION_TEMPLATES, ConceptData, RenderConfig, caption, load_or_render
from empirical.presets import Preset
from empirical.pretrained import PretrainedBase, unet_from_base
from empirical.processes import is_main_process
from empirical.train import Mix, TrainConfig, encode_latents, train_unet
from implosion_base.errors import DAMAGE, InputError
from implosion_base.files import atomic_path, discard_damaged
from implosion_base.progress import Progress


@dataclass(frozen=True)
class Instruments:
    """The frozen models every point shares: the text encoder, the VAE, the judge (the measuring instrument) and,
    with ``--pretrained``, the Stable Diffusion base model (its UNet and schedule)."""

    text_encoder: Any
    vae: Any
    judge: Any
    base: PretrainedBase | None = None

    @property
    def scheduler_config(self) -> dict | None:
        """The training/sampling schedule: the base model's own, or ours (None)."""
        return self.base.scheduler_config if self.base is not None else None

    def pipeline(self, unet):
        """The ``StableDiffusionPipeline`` of ``unet`` with these instruments (:func:`empirical.model.assemble_pipeline`),
        or the ``StableDiffusionXLPipeline`` for an SDXL base (:func:`empirical.sdxl.assemble_xl_pipeline`)."""
        from empirical.model import assemble_pipeline
        from empirical.sdxl import assemble_xl_pipeline

        make = assemble_xl_pipeline if hasattr(self.text_encoder, "pooled") else assemble_pipeline
        return make(self.vae, unet, self.text_encoder, self.scheduler_config)

    def ema_pipeline(self, unet, ema: dict):
        """:meth:`pipeline` of a copy of ``unet`` carrying the EMA weights ``ema`` (e.g. at a training
        checkpoint; the training UNet is left as it is)."""
        from empirical.train import with_weights

        return self.pipeline(with_weights(unet, {k: v.detach().cpu() for k, v in ema.items()}))


@dataclass(frozen=True)
class CaptionBank:
    """Every caption a mix can use, encoded once: each concept's templates (concept-major), a user's own captions
    after them (``own_captions``), the empty caption last; ``contexts`` their token states."""

    captions: list[str]
    contexts: Any
    n_concepts: int
    own_captions: bool = False  # a user's data: clean pairs keep their own captions (rows after the templates)
    pooled: Any = None  # SDXL: each caption's pooled text embedding (the UNet's added condition)

    def caption_row(self, concept: int, template: int) -> int:
        """Row of concept ``concept``'s caption template ``template``."""
        return concept * len(CAPTION_TEMPLATES) + template % len(CAPTION_TEMPLATES)

    def clean_caption_rows(self, idx: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Rows of clean pairs ``idx`` (concepts ``labels`` of the whole clean set): their own captions for a
        user's data (stored after the templates), else template ``i mod T`` of their concept (what the renders'
        captions are)."""
        idx = np.asarray(idx, dtype=np.int64)
        t = len(CAPTION_TEMPLATES)
        if self.own_captions:
            return self.n_concepts * t + idx
        return labels[idx] * t + idx % t

    @property
    def empty(self) -> int:
        """Row of the empty caption (classifier-free guidance's dropout)."""
        return len(self.captions) - 1


@dataclass(frozen=True)
class Latents:
    """The VAE posterior of every clean image (mean and standard deviation), encoded once."""

    mu: Any
    sigma: Any


@dataclass
class Assets:
    """What every point of an experiment shares, in named parts: the preset, the concept data (training and
    held-out), the frozen :class:`Instruments`, the clean images' :class:`Latents`, the :class:`CaptionBank`,
    the judge's features of the held-out renders per concept, the assets' measured quality and the data's key, and
    the two rules of :mod:`empirical.meaningless`: the off-render rule (from the held-out renders, made here) and
    the meaningless rule (from the clean base model's samples, which needs the base model: set by the run,
    :func:`empirical.clean_samples.sample_rule`)."""

    preset: Preset
    data: ConceptData
    held: ConceptData
    instruments: Instruments
    latents: Latents
    bank: CaptionBank
    clean_features: dict[int, np.ndarray]
    quality: dict[str, float]
    data_key: str
    off_render: MeaninglessRule | None = None  # calibrated on the held-out renders (empirical.meaningless)
    meaningless: MeaninglessRule | None = None  # calibrated on the clean base model's samples (empirical.clean_samples)


def concept_data(preset: Preset, cache_dir: Path | None, user_data: tuple | None = None):
    """(training data, held-out data, data key): the preset's emoji renders and their held-out renders (another
    augmentation stream), or a user's (training, held-out, key)."""
    if user_data is not None:
        return user_data
    data = load_or_render(preset.render, cache_dir)
    held = load_or_render(RenderConfig(**{**asdict(preset.render), "per_concept": preset.held_out, "variant": 1}),
                          cache_dir)
    return data, held, preset.render.key() + "-" + "-".join(data.fonts)


def _judge(preset: Preset, data, vae, te, data_key: str, cache_dir: Path | None, judge_path: Path | None,
           progress: Progress | bool):
    """A local CLIP folder as the judge, or ours: trained on the clean images and on their VAE reconstructions
    (same captions) — the judge reads generated images, which come out of the VAE decoder — clean data only."""
    from empirical.judge import ClipJudge, load_or_train_judge

    if judge_path is not None:
        return ClipJudge(judge_path, data.names, device=preset.device)
    recon_train = reconstruct(vae, data.images)
    return load_or_train_judge(np.concatenate([data.images, recon_train]), data.captions * 2,
                               np.concatenate([data.labels, data.labels]), data.names, te, preset.judge,
                               cache_dir=cache_dir, data_key=f"{data_key}-vae{preset.vae.key(data_key)}-recon",
                               progress=progress, device=preset.device)


def prepare_assets(preset: Preset, cache_dir: Path | None, *, progress: Progress | bool = False,
                   log=lambda msg: None, pretrained: tuple | None = None, judge_path: Path | None = None,
                   user_data: tuple | None = None) -> Assets:
    """Render (or load) the data, load the text encoder, train (or load) the VAE and the judge, measure both.
    ``pretrained`` = (base, VAE, text encoder) of :func:`empirical.pretrained.load_base`: its VAE and text encoder
    replace ours (no VAE is trained) and its UNet becomes the base of continuous and LoRA runs. ``judge_path``, a
    local CLIP folder, replaces the judge trained here (:class:`empirical.judge.ClipJudge`). ``user_data`` =
    (training, held-out, key) of :func:`empirical.folder_data.concept_data_from_folder` replaces the renders: a
    user's own pairs, with their own captions."""
    import torch

    from empirical.model import load_or_train_vae, vae_reconstruction_error
    from empirical.text_encoder import TextEncoder

    data, held, data_key = concept_data(preset, cache_dir, user_data)
    for notice in data.notices:
        log(f"note: {notice}")
    base = pretrained[0] if pretrained else None
    if base is not None:
        data_key += f"-sd{base.key}"
    log(f"data: {len(data.names)} concepts, {len(data)} training pairs ({len(held)} held out) at "
        f"{data.images.shape[1]}px, {', '.join(data.fonts)}")
    t0 = time.perf_counter()
    if base is not None:
        _, vae, te = pretrained
        log(f"base model: {base.path} (UNet {sum(v.numel() for v in base.unet_state.values()) / 1e6:.1f} M "
            f"parameters, images {base.image_size}px)")
    else:
        te = TextEncoder(device=preset.device)
        vae = load_or_train_vae(data.images, preset.vae, cache_dir=cache_dir, data_key=data_key, progress=progress,
                                device=preset.device)
    vae_s, t0 = time.perf_counter() - t0, time.perf_counter()
    judge = _judge(preset, data, vae, te, data_key, cache_dir, judge_path, progress)
    judge_s = time.perf_counter() - t0
    judge_acc = float(np.mean(judge.classify(held.images) == held.labels))
    vae_mse = vae_reconstruction_error(vae, held.images)
    held_recon = reconstruct(vae, held.images)
    judge_recon_acc = float(np.mean(judge.classify(held_recon) == held.labels))
    log(f"judge: {judge_acc:.3f} on held-out clean renders ({judge_recon_acc:.3f} on their VAE reconstructions); "
        f"VAE held-out MSE {vae_mse:.4f}")
    mu, sigma = encode_latents(vae, data.images)
    captions = [caption(n, j) for n in data.names for j in range(len(CAPTION_TEMPLATES))]
    captions += (list(data.captions) if user_data is not None else []) + [""]
    feats = judge.image_features(held.images)
    try:
        rule = calibrate(feats, held.labels, judge.probabilities(held.images).max(1))
    except InputError as exc:  # too few held-out images (a small user folder): the rate is NaN, said once
        rule = None
        log(f"note: the off-render and meaningless rates are not measured ({exc})")
    quality = {"judge_heldout_acc": judge_acc, "judge_recon_acc": judge_recon_acc, "vae_heldout_mse": vae_mse,
               "vae_s": vae_s, "judge_s": judge_s, "vae_params": sum(p.numel() for p in vae.parameters()),
               "threads": torch.get_num_threads()}
    bank = CaptionBank(captions, te.token_states(captions), len(data.names), own_captions=user_data is not None,
                       pooled=te.pooled(captions) if hasattr(te, "pooled") else None)
    return Assets(preset, data, held, Instruments(te, vae, judge, base), Latents(mu, sigma), bank,
                  {c: feats[held.labels == c] for c in range(len(data.names))}, quality, data_key, rule)


def reconstruct(vae, images: np.ndarray) -> np.ndarray:
    import torch

    from empirical.data import to_tensor

    out = []
    with torch.no_grad():
        for i in range(0, len(images), 256):
            x = to_tensor(images[i:i + 256]).to(vae.device)
            rec = vae.decode(vae.encode(x).latent_dist.mean).sample.cpu()
            out.append(((rec.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy())
    return np.concatenate(out)


def benign_subset(labels: np.ndarray, per_concept: int | None) -> np.ndarray:
    """Indices of the first ``per_concept`` clean pairs of every concept (all pairs when None), in order."""
    if per_concept is None:
        return np.arange(len(labels))
    rank = np.zeros(len(labels), dtype=np.int64)
    for c in np.unique(labels):
        where = np.flatnonzero(labels == c)
        rank[where] = np.arange(len(where))
    return np.flatnonzero(rank < per_concept)


def build_mix(assets: Assets, extra_images: np.ndarray, extra_concepts: np.ndarray,
              new_pixels: np.ndarray | None = None, benign: int | None = None) -> tuple[Mix, list[str]]:
    """The clean set (its first ``benign`` pairs per concept when given) plus extra pairs (image index, caption
    concept); returns the mix and its caption texts. Indices ≥ len(clean set) refer to ``new_pixels`` (images
    made for this mix, e.g. Nightshade poisons), whose latent posteriors are encoded here."""
    vae, bank = assets.instruments.vae, assets.bank
    mu, sigma = assets.latents.mu, assets.latents.sigma
    if new_pixels is not None and len(new_pixels):
        import torch

        extra_mu, extra_sigma = encode_latents(vae, new_pixels)
        mu, sigma = torch.cat([mu, extra_mu]), torch.cat([sigma, extra_sigma])
    clean = benign_subset(assets.data.labels, benign)
    clean_rows = bank.clean_caption_rows(clean, assets.data.labels)
    extra_rows = np.array([bank.caption_row(int(a), j) for j, a in enumerate(extra_concepts)], dtype=np.int64)
    image_idx = np.concatenate([clean, extra_images]).astype(np.int64)
    caption_idx = np.concatenate([clean_rows, extra_rows]).astype(np.int64)
    ids = None
    if bank.pooled is not None:  # SDXL's micro-conditioning: uncropped square images of the data's size
        from empirical.sdxl import time_ids

        ids = time_ids(int(assets.data.images.shape[1]))
    mix = Mix(mu, sigma, bank.contexts, image_idx, caption_idx, bank.empty, float(vae.config.scaling_factor),
              bank.pooled, ids)
    return mix, [bank.captions[i] for i in caption_idx]


def fresh_unet(assets: Assets, seed: int):
    """A UNet drawn with ``seed`` from the preset's config, or a copy of the base model's (``--pretrained``)."""
    from empirical.model import build_unet

    inst, mu = assets.instruments, assets.latents.mu
    if inst.base is not None:
        return unet_from_base(inst.base)
    return build_unet(assets.preset.unet, sample_size=mu.shape[-1], latent_channels=mu.shape[1],
                      cross_attention_dim=inst.text_encoder.dim, seed=seed)


def pretrained_state(assets: Assets, seed: int, cache_dir: Path | None, *, progress: Progress | bool = False) -> dict:
    """EMA weights of the clean pretraining of ``continuous`` (cached; resumable after a kill)."""
    import hashlib

    from safetensors.torch import load_file, save_file

    cfg = TrainConfig(**{**asdict(assets.preset.pretrain), "seed": seed})
    # The folder is shared by pretraining runs that differ only in length: a longer one resumes from the final
    # checkpoint of a shorter one (train.py), and ema-<steps>.safetensors keeps each length's result.
    same = {k: v for k, v in cfg.identity().items() if k != "steps"}
    key = hashlib.sha256(json.dumps({"data": assets.data_key, "vae": asdict(assets.preset.vae),
                                     "unet": asdict(assets.preset.unet), "train": same,
                                     "text": str(assets.instruments.text_encoder.path)}, sort_keys=True).encode()
                         ).hexdigest()[:16]
    folder = (Path(cache_dir) if cache_dir is not None else Path(".")) / f"pretrain-{key}"
    final = folder / f"ema-{cfg.steps}.safetensors"
    if final.is_file():
        try:
            return load_file(str(final))
        except DAMAGE as exc:
            discard_damaged(final, exc)  # retrained, resuming from the last checkpoint when it is readable
    mix, _ = build_mix(assets, np.zeros(0, np.int64), np.zeros(0, np.int64))
    _, ema = train_unet(fresh_unet(assets, seed), mix, cfg, checkpoint_dir=folder, progress=progress,
                        desc=f"clean pretraining (base seed {seed})",
                        device=assets.preset.device)
    if is_main_process():  # under DDP every process holds the same EMA; one writes it
        with atomic_path(final) as tmp:
            save_file({k: v.contiguous() for k, v in ema.items()}, str(tmp))
    return ema


def same_training(a: TrainConfig, b: TrainConfig) -> bool:
    """Whether two training configs train the same way (checkpoint spacing and seed aside)."""
    skip = ("checkpoint_every", "seed")
    return {k: v for k, v in asdict(a).items() if k not in skip} == {k: v for k, v in asdict(b).items()
                                                                      if k not in skip}
