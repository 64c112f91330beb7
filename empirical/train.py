"""DDPM training of the UNet on a (possibly poisoned) training mix, with EMA, caption dropout and resumable
checkpoints, and LoRA adapters; where each scenario starts is :mod:`empirical.scenarios`.

A training mix is a list of pairs (latent of an image, caption). Latents and caption token states are computed once
(the VAE and the text encoder are frozen), so a step costs one UNet forward/backward: for a batch of pairs,
z₀ = s·(μ + σ·ξ) (a fresh posterior sample), t ~ U{0..T−1}, ε ~ N(0, I), and the loss is
||ε − ε_θ(√ᾱ_t z₀ + √(1−ᾱ_t) ε, t, c)||² (or, for a schedule with ``prediction_type = v_prediction``, the same
with the velocity √ᾱ_t ε − √(1−ᾱ_t) z₀ as the target: :func:`noisy_and_target`) with c replaced by the empty caption's states with probability
``caption_dropout`` (classifier-free guidance). EMA weights θ̄ ← d·θ̄ + (1−d)·θ with d = min(decay, (1+k)/(10+k)).

Checkpoints (:mod:`empirical.checkpoint`) hold the UNet, the EMA weights, the AdamW moments and the sampler's RNG
state in one safetensors file (no pickle) plus a JSON with the step and a fingerprint of the run; a killed run resumes from the last one and ends
with the same weights as an uninterrupted run (same machine, same thread count). With the default schedule the
learning rate is constant after warm-up, so a run asked for more steps continues from the final checkpoint of a
shorter one; a schedule that depends on the length (``--lr-scheduler cosine``, ...) starts over instead.

LoRA adapters (the ``lora`` scenario) are :mod:`empirical.lora`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from implosion_base.validate import check_scalar
from implosion_base.errors import InputError
from implosion_base.progress import Progress, as_progress
from empirical.checkpoint import load_checkpoint, save_checkpoint
from empirical.sdxl import added_conditions
from empirical.schedule import LENGTH_FREE, LR_SCHEDULERS, lr_factor


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation of one training run: ``steps`` AdamW updates, each of ``gradient_accumulation_steps``
    batches of ``batch_size`` (diffusers' meaning: the effective batch is their product, times the processes), at
    ``lr`` × the factor of ``lr_scheduler`` (:data:`LR_SCHEDULERS`: ours, ``warmup_constant``, is
    min(1, (k+1)/``warmup``) at step k; the others are diffusers' ``get_scheduler`` with ``warmup`` warm-up steps
    over ``steps``), EMA ``ema_decay``, ``caption_dropout`` probability, a checkpoint every ``checkpoint_every``
    steps, ``mixed_precision`` for accelerate (``no`` or ``bf16``)."""

    steps: int = 1000
    batch_size: int = 64
    lr: float = 1e-3
    warmup: int = 100
    ema_decay: float = 0.999
    caption_dropout: float = 0.1
    checkpoint_every: int = 500
    mixed_precision: str = "no"
    seed: int = 0
    lr_scheduler: str = "warmup_constant"
    gradient_accumulation_steps: int = 1

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        check_scalar(self.steps, "training steps", low=0, integer=True)
        check_scalar(self.batch_size, "batch_size", low=1, integer=True)
        check_scalar(self.lr, "lr", low=0.0, low_open=True)
        check_scalar(self.warmup, "warm-up steps", low=0, integer=True)
        check_scalar(self.gradient_accumulation_steps, "gradient accumulation steps", low=1, integer=True)
        check_scalar(self.caption_dropout, "caption_dropout", low=0.0, high=1.0, high_open=True)
        if self.lr_scheduler not in LR_SCHEDULERS:
            raise InputError(f"unknown learning-rate schedule {self.lr_scheduler!r}; choose from "
                             f"{', '.join(LR_SCHEDULERS)}")

    def identity(self) -> dict:
        """What a run's result depends on (for cache keys and checkpoint fingerprints): every field but
        ``checkpoint_every``, and ``steps`` only when the schedule depends on the length (so a longer run with a
        constant schedule resumes from a shorter one's final checkpoint); fields added later are left out at their
        defaults, so keys made before they existed still match."""
        d = {k: v for k, v in asdict(self).items() if k != "checkpoint_every"}
        if self.lr_scheduler in LENGTH_FREE:
            d.pop("steps")
        for k, default in (("lr_scheduler", "warmup_constant"), ("gradient_accumulation_steps", 1)):
            if d[k] == default:
                d.pop(k)
        return d


@dataclass
class Mix:
    """A training mix: for pair i, the latent posterior of image ``image_idx[i]`` (rows of ``mu``/``sigma``) and
    caption number ``caption_idx[i]`` (rows of ``contexts``); ``empty`` is the row of the empty caption."""

    mu: object  # torch.Tensor (M, C, h, w), unscaled posterior means of the images
    sigma: object  # torch.Tensor (M, C, h, w)
    contexts: object  # torch.Tensor (K, L, D) token states of every caption used
    image_idx: np.ndarray
    caption_idx: np.ndarray
    empty: int
    scaling: float
    pooled: object = None  # SDXL: torch.Tensor (K, P), each caption's pooled text embedding
    time_ids: object = None  # SDXL: torch.Tensor (6,), the images' size/crop micro-conditioning

    def __len__(self) -> int:
        return int(len(self.image_idx))

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        h.update(np.asarray(self.image_idx, dtype=np.int64).tobytes())
        h.update(np.asarray(self.caption_idx, dtype=np.int64).tobytes())
        return h.hexdigest()[:16]


def encode_latents(vae, images: np.ndarray, *, batch_size: int = 256):
    """Posterior means and standard deviations (unscaled) of uint8 images under the frozen VAE."""
    import torch

    from empirical.data import to_tensor

    mus, sigmas = [], []
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            d = vae.encode(to_tensor(images[i:i + batch_size]).to(vae.device, vae.dtype)).latent_dist
            mus.append(d.mean.float().cpu())
            sigmas.append(d.std.float().cpu())
    return torch.cat(mus), torch.cat(sigmas)


# ---------------------------------------------------------------------------------------------------------------
# the diffusion objective

#: What the UNet may be trained to predict (the scheduler's ``prediction_type``).
PREDICTION_TYPES: tuple[str, ...] = ("epsilon", "v_prediction")


def check_prediction_type(sched) -> str:
    """The scheduler's ``prediction_type``; :class:`InputError` naming it when training cannot honour it."""
    kind = sched.config.get("prediction_type", "epsilon")
    if kind not in PREDICTION_TYPES:
        raise InputError(f"the noise schedule's prediction_type {kind!r} is not supported for training "
                         f"(supported: {', '.join(PREDICTION_TYPES)})")
    return kind


def noisy_and_target(sched, z0, noise, t):
    """The noised latent and the regression target of one DDPM step, as diffusers' own training scripts do:

    z_t = √ᾱ_t·z₀ + √(1−ᾱ_t)·ε (``sched.add_noise``), target ε for ``epsilon`` and the velocity
    v = √ᾱ_t·ε − √(1−ᾱ_t)·z₀ (``sched.get_velocity``) for ``v_prediction`` (SD 2.x 768 and others): regressing
    on ε for a v-prediction model trains it toward the wrong function."""
    kind = check_prediction_type(sched)
    zt = sched.add_noise(z0, noise, t)
    return zt, (noise if kind == "epsilon" else sched.get_velocity(z0, noise, t))


# ---------------------------------------------------------------------------------------------------------------
# training loop


def run_fingerprint(unet, mix: Mix, cfg: TrainConfig, scheduler_config: dict | None, processes: int) -> str:
    """What a checkpoint must match to be resumed: the config (:meth:`TrainConfig.identity`: with a constant
    schedule after warm-up a longer run resumes from a shorter one's checkpoint and ends where a fresh longer run
    would), the mix, the initial weights, the noise schedule and the number of processes."""
    init = hashlib.sha256(b"".join(p.detach().cpu().float().numpy().tobytes()[:4096]
                                   for p in list(unet.parameters())[:8])).hexdigest()[:12]
    fp = cfg.identity()
    schedule = {"schedule": dict(scheduler_config)} if scheduler_config is not None else {}
    procs = {"processes": processes} if processes > 1 else {}
    return hashlib.sha256(json.dumps({**fp, "mix": mix.fingerprint(), "init": init, **schedule, **procs},
                                     sort_keys=True, default=str).encode()).hexdigest()[:16]


def draw_batch(mix: Mix, batch_size: int, caption_dropout: float, timesteps: int, gen):
    """One batch, all from ``gen``: pair indices b ~ U{0..n−1}, captions (the empty one with probability
    ``caption_dropout``), the posterior noise ξ, the diffusion noise ε and the timesteps t ~ U{0..T−1}.
    Returns (image rows, caption rows, ξ, ε, t)."""
    import torch

    b = torch.randint(0, len(mix), (batch_size,), generator=gen)
    i = torch.as_tensor(mix.image_idx, dtype=torch.long)[b]
    c = torch.as_tensor(mix.caption_idx, dtype=torch.long)[b].clone()
    c[torch.rand(batch_size, generator=gen) < caption_dropout] = mix.empty
    xi = torch.randn((batch_size, *mix.mu.shape[1:]), generator=gen)
    noise = torch.randn((batch_size, *mix.mu.shape[1:]), generator=gen)
    t = torch.randint(0, timesteps, (batch_size,), generator=gen)
    return i, c, xi, noise, t


def ddpm_loss(unet, sched, z0, noise, t, context, autocast, added: dict | None = None):
    """The DDPM objective of one batch: ‖target − f_θ(z_t, t, c)‖² (mean), with z_t and the target (ε, or the
    velocity for v-prediction) from the schedule (:func:`noisy_and_target`); the UNet runs under ``autocast``,
    with SDXL's ``added`` conditions (:func:`empirical.sdxl.added_conditions`) when given."""
    import torch

    zt, target = noisy_and_target(sched, z0, noise, t)
    with autocast():
        pred = unet(zt, t, encoder_hidden_states=context, added_cond_kwargs=added).sample
    return torch.nn.functional.mse_loss(pred.float(), target)


def ema_update(ema: dict, state: dict, frozen: set, decay: float) -> None:
    """θ̄ ← d·θ̄ + (1 − d)·θ for every trainable floating-point tensor; the rest (frozen base weights under LoRA,
    integer buffers) are copied."""
    import torch

    with torch.no_grad():
        for k, v in state.items():
            if v.dtype.is_floating_point and k not in frozen:
                ema[k].mul_(decay).add_(v.detach().float(), alpha=1 - decay)
            else:
                ema[k].copy_(v)


def train_unet(unet, mix: Mix, cfg: TrainConfig, *, checkpoint_dir: Path | None = None,
               progress: Progress | bool = False, desc: str = "unet",
               on_step: Callable[[int, float], None] | None = None, device: str = "cpu",
               scheduler_config: dict | None = None,
               on_checkpoint: Callable[[int, object, dict], None] | None = None) -> tuple[object, dict]:
    """Train ``unet`` in place on ``mix`` for ``cfg.steps`` steps; returns (unet, EMA state dict). The noise
    schedule is ours unless ``scheduler_config`` gives a pretrained model's (:func:`empirical.model.noise_scheduler`).
    Each step: the learning rate of :func:`lr_factor`; per accumulated batch :func:`draw_batch`, z₀ = s·(μ + σ·ξ),
    :func:`ddpm_loss` / N; AdamW; :func:`ema_update` with d = min(decay, (1 + k)/(10 + k)).

    The UNet is wrapped by ``accelerate`` (device placement, ``cfg.mixed_precision`` autocast). With a
    ``checkpoint_dir`` the run resumes from its last checkpoint when :func:`run_fingerprint` matches, and the final
    state is kept there. ``on_checkpoint(step, unet, ema)`` is called (process 0 only) at every
    ``cfg.checkpoint_every`` steps and at the end, with the live UNet module and its EMA weights (read-only: copy
    what you keep), e.g. to follow cross-attention through training.

    Launched on several processes (``torchrun`` / ``accelerate launch``) the UNet is wrapped in DDP: every process
    draws its own batches (:func:`_start`), gradients are averaged, so the effective batch is ``cfg.batch_size`` ×
    processes; weights and EMA stay identical across processes; only process 0 writes checkpoints."""
    from accelerate import Accelerator

    from empirical.model import noise_scheduler

    cfg.validate()
    accelerator = Accelerator(mixed_precision=cfg.mixed_precision, cpu=(device == "cpu"))
    fingerprint = run_fingerprint(unet, mix, cfg, scheduler_config, accelerator.num_processes)
    sched = noise_scheduler(scheduler_config)
    check_prediction_type(sched)
    ema, opt, gen, start = _start(unet, cfg, checkpoint_dir, fingerprint, accelerator.process_index)
    unet, opt = accelerator.prepare(unet, opt)
    dev = accelerator.device
    ema = {k: v.to(dev) for k, v in ema.items()}  # EMA lives beside the weights (no per-step transfers)
    mu, sigma, ctx = mix.mu.to(dev), mix.sigma.to(dev), mix.contexts.to(dev)
    pooled = None if mix.pooled is None else mix.pooled.to(dev)
    bs = min(cfg.batch_size, len(mix))
    raw = accelerator.unwrap_model(unet)
    frozen = {k for k, p in raw.named_parameters() if not p.requires_grad}  # e.g. the base under LoRA: copied
    steps = _steps(start, cfg.steps, progress if accelerator.is_main_process else False, desc)
    factor = lr_factor(cfg)
    for step in steps:
        for g in opt.param_groups:
            g["lr"] = cfg.lr * factor(step)
        opt.zero_grad(set_to_none=True)
        loss = _gradients(unet, sched, mix, (mu, sigma, ctx, pooled), bs, cfg, gen, accelerator)
        opt.step()
        ema_update(ema, raw.state_dict(), frozen, min(cfg.ema_decay, (1 + step) / (10 + step)))
        _report_loss(loss, step, steps, on_step)
        at_checkpoint = (step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.steps
        if checkpoint_dir is not None and at_checkpoint:
            if accelerator.is_main_process:
                save_checkpoint(Path(checkpoint_dir), step + 1, fingerprint, raw, ema, opt, gen)
            accelerator.wait_for_everyone()
        if on_checkpoint is not None and accelerator.is_main_process and at_checkpoint:
            on_checkpoint(step + 1, raw, ema)
    unet = accelerator.unwrap_model(unet)
    unet.eval()
    return unet, {k: v.cpu() for k, v in ema.items()}


def _gradients(unet, sched, mix: Mix, tensors: tuple, bs: int, cfg: TrainConfig, gen, accelerator) -> float:
    """Backpropagate the loss of ``cfg.gradient_accumulation_steps`` batches (each :func:`draw_batch` of ``bs``
    pairs, its loss divided by their number, so the gradient is their mean); returns the mean loss. ``tensors`` =
    (μ, σ, token states, SDXL's pooled text embeddings or None) on the training device."""
    mu, sigma, ctx, pooled = tensors
    dev, n = accelerator.device, cfg.gradient_accumulation_steps
    loss = 0.0
    for _ in range(n):
        i, c, xi, noise, t = draw_batch(mix, bs, cfg.caption_dropout, sched.config.num_train_timesteps, gen)
        z0 = mix.scaling * (mu[i.to(dev)] + sigma[i.to(dev)] * xi.to(dev))
        added = None if pooled is None else added_conditions(pooled[c.to(dev)], mix.time_ids, len(c))
        part = ddpm_loss(unet, sched, z0, noise.to(dev), t.to(dev), ctx[c.to(dev)], accelerator.autocast, added)
        accelerator.backward(part if n == 1 else part / n)
        loss += float(part.detach()) / n
    return loss


def _start(unet, cfg: TrainConfig, checkpoint_dir: Path | None, fingerprint: str, rank: int):
    """The EMA weights, the AdamW optimiser and the batch generator of a run, and its first step: 0, or the step
    of the last checkpoint under ``checkpoint_dir`` whose fingerprint matches (everything restored from it).
    Process 0 of a launch draws the single-process stream; process r > 0 a stream derived from the seed, r and the
    first step (after a resume: deterministic, not the uninterrupted stream)."""
    import torch

    gen = torch.Generator().manual_seed(cfg.seed)
    unet.train()
    ema = {k: v.detach().clone().float() for k, v in unet.state_dict().items()}
    opt = torch.optim.AdamW([p for p in unet.parameters() if p.requires_grad], lr=cfg.lr, weight_decay=1e-2)
    start = 0
    if checkpoint_dir is not None:
        start = load_checkpoint(Path(checkpoint_dir), fingerprint, unet, ema, opt, gen, max_step=cfg.steps)
    if rank > 0:
        gen.manual_seed(cfg.seed + 1_000_003 * rank + 7919 * start)
    return ema, opt, gen, start


def _steps(start: int, total: int, progress: Progress | bool, desc: str):
    """The steps still to train, behind ``progress``'s bar or log lines (:mod:`implosion_base.progress`), which
    show the loss."""
    return as_progress(progress).bar(range(start, total), desc=desc, initial=start, total=total)


def _report_loss(value: float, step: int, steps, on_step) -> None:
    """The step's loss to ``on_step`` (e.g. a loss.csv) and, every 10 steps, to the progress report."""
    if on_step is not None:
        on_step(step, value)
    if step % 10 == 0:
        steps.set_postfix(loss=f"{value:.4f}", refresh=False)


def with_weights(unet, state: dict):
    """A copy of ``unet`` carrying the weights ``state`` (e.g. the EMA weights), in eval mode."""
    import copy

    other = copy.deepcopy(unet)
    other.load_state_dict({k: v.to(next(unet.parameters()).dtype) for k, v in state.items()})
    return other.eval()
