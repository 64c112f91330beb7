"""Poison pairs for the empirical harness, as items of the clean set: dirty-label pairs (a caption naming concept A
over an image of its target B), their same-volume controls, and Nightshade-style images.

The plan — which concepts are poisoned, in which order, toward which targets — is the toolkit's one
:class:`theory.poisoning.PoisonPlan`, drawn from the harness's stream with the paper's pinned attacks
(:func:`harness_plan`); every choice is written to the results folder. The poison pairs of concept A are ``p``
images of its target B drawn (seeded, without replacement while B has enough images) from B's clean renders,
captioned with A's caption templates (:func:`theory.poisoning.dirty_label_items`). The *control* of a poisoned mix
adds the same number of pairs correctly labelled (images of A captioned A), separating contradiction from volume.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from implosion_base.errors import DAMAGE, InputError
from implosion_base.files import discard_damaged, save_npz_atomically
from implosion_base.progress import Progress, as_progress
from implosion_base.validate import check_scalar
from theory.poisoning import HARNESS_STREAM, PoisonPlan, dirty_label_items, make_plan

#: The seed salts of the harness's item draws: a poison's images of B, a control's images of A, the clean images of
#: A a Nightshade-style poison perturbs (each concept's draw independent of the others and of C_P).
POISON_SALT, CONTROL_SALT, SOURCE_SALT = 104729, 130363, 15485863


def harness_plan(names: Sequence[str], rule: str, *, seed: int, similarity: np.ndarray | None = None) -> PoisonPlan:
    """The harness's plan over concept ``names``: its stream (:data:`theory.poisoning.HARNESS_STREAM`), the paper's
    pinned attacks first and its sentinels last."""
    return make_plan(names, rule, seed=seed, stream=HARNESS_STREAM, similarity=similarity, paper_order=True)


def poison_pairs(plan: PoisonPlan, c_p: int, per_concept: int, labels: np.ndarray, *, seed: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Dirty-label pairs for C_P = ``c_p``: (image indices into the clean set, caption concept per pair).

    For each (A, B) in ``plan.pairs(c_p)``, ``per_concept`` images of B (seeded per A, so a concept's poison does
    not depend on C_P) captioned as A.
    """
    return dirty_label_items(plan, c_p, per_concept, labels, seed=seed, salt=POISON_SALT)


#: The controls a poisoned point can be compared with (``--control``).
CONTROLS: tuple[str, ...] = ("own", "matched")


def control_pairs(plan: PoisonPlan, c_p: int, per_concept: int, labels: np.ndarray, *, seed: int,
                  images: str = "own") -> tuple[np.ndarray, np.ndarray]:
    """The control of :func:`poison_pairs`, as many extra pairs per poisoned concept A, correctly captioned:
    ``own`` — images of A captioned A (the volume of A's pairs, without a contradiction); ``matched`` — the
    poison's very images, each captioned with the concept it shows (the poison in everything but the label: the
    same images, hence the same concepts' share of the mix, wherever the targets lie)."""
    if images == "matched":
        idx, _ = poison_pairs(plan, c_p, per_concept, labels, seed=seed)
        return idx, np.asarray(labels, dtype=np.int64)[idx]
    if images != "own":
        raise InputError(f"--control must be one of {', '.join(CONTROLS)}, got {images!r}")
    return dirty_label_items(plan, c_p, per_concept, labels, seed=seed, salt=CONTROL_SALT, show_target=False)


# ---------------------------------------------------------------------------------------------------------------
# Nightshade-style poisons





@dataclass(frozen=True)
class NightshadeConfig:
    """L∞-bounded feature-space poison (Shan et al. 2024, "Nightshade", in its plain PGD form).

    For a clean image x of concept A (pixels in [0, 1]) and an image y of its target B, with E the VAE encoder's
    posterior mean, find δ minimising ‖E(x + δ) − E(y)‖² subject to ‖δ‖∞ ≤ ``epsilon`` and x + δ ∈ [0, 1]:
    from a seeded uniform start in the box, ``steps`` signed-gradient steps
    δ ← Π(δ − α_k·sign ∇_δ), α_k = ``step_size``·(1 − k/steps) (linear decay; default step ε/4), keeping each
    image's best iterate; the result is quantised to uint8 (so ‖δ‖∞ ≤ ε + 1/510). Nightshade proper adds an
    LPIPS budget and targets SD's VAE; here the budget is the L∞ box alone and E is our VAE, the encoder the
    diffusion model trains on.
    """

    epsilon: float = 0.05
    steps: int = 500
    step_size: float | None = None
    batch_size: int = 256

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        check_scalar(self.epsilon, "epsilon", low=0.0, high=1.0, low_open=True)
        check_scalar(self.steps, "PGD steps", low=1, integer=True)
        if self.step_size is not None:
            check_scalar(self.step_size, "PGD step size", low=0.0, low_open=True)
        check_scalar(self.batch_size, "batch size", low=1, integer=True)

    def key(self) -> str:
        import hashlib
        import json
        from dataclasses import asdict

        return hashlib.sha256(json.dumps({**asdict(self), "version": 1}, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class PerturbationReport:
    """Per poison image: latent distance to its target before and after (‖E(x) − E(y)‖₂, ‖E(x') − E(y)‖₂),
    and the size of the change x' − x on the [0, 1] scale: L∞, L2 (over all pixels and channels) and PSNR (dB)."""

    latent_before: np.ndarray
    latent_after: np.ndarray
    linf: np.ndarray
    l2: np.ndarray
    psnr: np.ndarray

    def summary(self) -> dict[str, float]:
        """Means, plus the mean relative latent distance after/before."""
        rel = self.latent_after / np.maximum(self.latent_before, 1e-12)
        return {"latent_before": float(self.latent_before.mean()), "latent_after": float(self.latent_after.mean()),
                "latent_ratio": float(rel.mean()), "linf": float(self.linf.max()), "l2": float(self.l2.mean()),
                "psnr": float(self.psnr.mean())}

    def arrays(self) -> dict[str, np.ndarray]:
        return {k: getattr(self, k) for k in ("latent_before", "latent_after", "linf", "l2", "psnr")}

    @classmethod
    def concat(cls, reports: list["PerturbationReport"]) -> "PerturbationReport":
        return cls(**{k: np.concatenate([r.arrays()[k] for r in reports]) if reports else np.zeros(0)
                      for k in ("latent_before", "latent_after", "linf", "l2", "psnr")})


def perturbation_size(clean: np.ndarray, poisoned: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """L∞, L2 and PSNR (dB, peak 1) of ``poisoned − clean`` per image, both uint8 (N, H, W, 3), on the [0, 1] scale."""
    d = (poisoned.astype(np.float64) - clean.astype(np.float64)) / 255.0
    flat = d.reshape(len(d), -1)
    linf = np.abs(flat).max(axis=1) if flat.size else np.zeros(len(d))
    l2 = np.sqrt((flat ** 2).sum(axis=1))
    mse = (flat ** 2).mean(axis=1) if flat.size else np.zeros(len(d))
    with np.errstate(divide="ignore"):
        psnr = np.where(mse > 0, 10 * np.log10(1.0 / np.maximum(mse, 1e-300)), np.inf)
    return linf, l2, psnr


def nightshade_perturb(vae, sources: np.ndarray, targets: np.ndarray, cfg: NightshadeConfig, *, seed: int
                       ) -> tuple[np.ndarray, PerturbationReport]:
    """Poison images (uint8, like ``sources``) whose VAE latents approach those of ``targets`` (see
    :class:`NightshadeConfig`), with their :class:`PerturbationReport`. ``sources[i]`` is pushed toward
    ``targets[i]``; both uint8 (N, H, W, 3). Deterministic for a seed."""
    import torch

    cfg.validate()
    if sources.shape != targets.shape or sources.ndim != 4 or sources.dtype != np.uint8:
        raise InputError("nightshade_perturb needs uint8 sources and targets of the same shape (N, H, W, 3)")
    eps = float(cfg.epsilon)
    alpha0 = float(cfg.step_size) if cfg.step_size is not None else eps / 4
    dev = next(vae.parameters()).device
    dtype = next(vae.parameters()).dtype
    gen = torch.Generator(device="cpu").manual_seed(int(seed))

    def encode(x01):
        return vae.encode((x01 * 2 - 1).to(dtype)).latent_dist.mean.float()

    out, reports = [], []
    for i in range(0, len(sources), cfg.batch_size):
        x = torch.from_numpy(sources[i:i + cfg.batch_size]).permute(0, 3, 1, 2).float().div(255).to(dev)
        y = torch.from_numpy(targets[i:i + cfg.batch_size]).permute(0, 3, 1, 2).float().div(255).to(dev)
        with torch.no_grad():
            z_y = encode(y)
            before = (encode(x) - z_y).flatten(1).norm(dim=1)
        delta = ((torch.rand(x.shape, generator=gen) * 2 - 1) * eps).to(dev)
        delta = (x + delta).clamp(0, 1) - x
        best = delta.clone()
        best_loss = torch.full((len(x),), float("inf"), device=dev)
        for k in range(cfg.steps):
            delta.requires_grad_(True)
            loss = (encode(x + delta) - z_y).pow(2).flatten(1).sum(1)
            grad, = torch.autograd.grad(loss.sum(), delta)
            with torch.no_grad():
                better = loss < best_loss
                best[better] = delta[better]
                best_loss = torch.where(better, loss.detach(), best_loss)
                step = alpha0 * (1 - k / cfg.steps)
                delta = (delta - step * grad.sign()).clamp(-eps, eps)
                delta = (x + delta).clamp(0, 1) - x
        with torch.no_grad():
            loss = (encode(x + delta) - z_y).pow(2).flatten(1).sum(1)
            better = loss < best_loss
            best[better] = delta[better]
            poisoned = ((x + best).clamp(0, 1) * 255).round()
            after = (encode(poisoned / 255) - z_y).flatten(1).norm(dim=1)
        img = poisoned.byte().permute(0, 2, 3, 1).cpu().numpy()
        out.append(img)
        linf, l2, psnr = perturbation_size(sources[i:i + cfg.batch_size], img)
        reports.append(PerturbationReport(before.cpu().numpy(), after.cpu().numpy(), linf, l2, psnr))
    images = np.concatenate(out) if out else np.zeros_like(sources)
    return images, PerturbationReport.concat(reports)


def nightshade_pairs(plan: PoisonPlan, c_p: int, per_concept: int, images: np.ndarray, labels: np.ndarray, vae,
                     cfg: NightshadeConfig, *, seed: int, cache_dir=None, progress: Progress | bool = False
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, PerturbationReport]:
    """Nightshade-style pairs for C_P = ``c_p``: for each (A, B) in the plan, ``per_concept`` clean images of A
    (seeded per A) each perturbed toward one image of B (the images :func:`poison_pairs` would show), captioned
    as A. Returns (poison images uint8, caption concept per pair, source image index per pair, report).

    Each concept's poisons are cached under ``cache_dir`` (keyed by the config, the seed, A, B, the count and a
    hash of the VAE weights and the images), so a run resumes concept by concept and larger C_P reuse smaller."""
    import hashlib
    from pathlib import Path

    cfg.validate()
    check_scalar(per_concept, "poison pairs per concept", low=0, integer=True)
    src_idx, _ = dirty_label_items(plan, c_p, per_concept, labels, seed=seed, salt=SOURCE_SALT, show_target=False)
    tgt_idx, concepts = poison_pairs(plan, c_p, per_concept, labels, seed=seed)
    folder = None
    if cache_dir is not None:
        h = hashlib.sha256()
        for v in vae.state_dict().values():
            h.update(v.detach().cpu().float().numpy().tobytes())
        h.update(images.tobytes())
        folder = Path(cache_dir) / f"nightshade-{cfg.key()}-{h.hexdigest()[:12]}"
        folder.mkdir(parents=True, exist_ok=True)
    out, reports = [], []
    pairs = plan.pairs(c_p)
    bar = _bar(len(pairs), progress)
    for j, (a, b) in enumerate(pairs):
        sl = slice(j * per_concept, (j + 1) * per_concept)
        path = None if folder is None else folder / f"s{seed}-a{a}-b{b}-p{per_concept}.npz"
        cached = None
        if path is not None and path.is_file():
            try:
                with np.load(path, allow_pickle=False) as z:
                    cached = z["images"], PerturbationReport(**{k: z[k] for k in ("latent_before", "latent_after",
                                                                                  "linf", "l2", "psnr")})
            except DAMAGE as exc:
                discard_damaged(path, exc)
        if cached is not None:
            img, rep = cached
        else:
            img, rep = nightshade_perturb(vae, images[src_idx[sl]], images[tgt_idx[sl]], cfg,
                                          seed=int(np.random.default_rng([seed, a, b]).integers(2**31)))
            if path is not None:
                save_npz_atomically(path, images=img, **rep.arrays())
        out.append(img)
        reports.append(rep)
        bar.update(1)
    bar.close()
    shape = (0, *images.shape[1:])
    return (np.concatenate(out) if out else np.zeros(shape, np.uint8), concepts, src_idx,
            PerturbationReport.concat(reports))


def _bar(total: int, progress: Progress | bool):
    return as_progress(progress).bar(desc="nightshade (concepts)", total=total)
