"""Dirty-label poisons for the empirical harness: pairs whose caption names concept A while the image shows B.

A :class:`PoisonPlan` fixes, for one seed, an order of the concepts and a target for each; the poisoned set for
C_P concepts is the first C_P of that order, so the sets are nested (C_P = 25 ⊂ 50 ⊂ 100) and points of a sweep
differ only in the added poison. Four target modes:

- ``poisoned``: concept ``order[i]`` targets ``order[i−1]`` (``order[0]`` targets ``order[1]``), so for C_P ≥ 2
  every target is itself poisoned and the never-poisoned concepts are never touched (the paper's pinned attacks
  below keep their named targets);
- ``all``: each concept targets a seeded uniform choice among all other concepts;
- ``nearest``: each concept targets the other concept most similar to it (a K × K similarity the caller measures,
  e.g. the cosine between concepts' mean judge features: the cheapest remapping to learn);
- ``scatter``: no target per concept — every poison pair shows a different, seeded uniformly drawn other concept
  (a mapping no model can learn: the caption A carries no information about which image follows). Its attack
  success is undefined (NaN).

With ``paper_order`` the order starts with the paper's attacks where the concepts exist — red apple → top hat,
fish → bicycle — and ends with the paper's unpoisoned sentinels (turtle, spiral shell, balloon, bird), so those
stay clean until C_P approaches the number of concepts. Every choice is written to the results folder.

The poison pairs of concept A are ``p`` images of its target B drawn (seeded, without replacement while B has
enough images) from B's clean renders, captioned with A's caption templates. The *control* of a poisoned mix adds
the same number of pairs correctly labelled (images of A captioned A), separating contradiction from volume.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from implosion_base.validate import check_scalar
from implosion_base.errors import InputError
from implosion_base.errors import DAMAGE
from implosion_base.files import discard_damaged, save_npz_atomically

TARGET_MODES: tuple[str, ...] = ("poisoned", "all", "nearest", "scatter")
#: The target of a concept under ``scatter``: none (each of its pairs draws its own).
SCATTER = -1
_PAPER_FIRST: tuple[tuple[str, str], ...] = (("red apple", "top hat"), ("fish", "bicycle"))
_PAPER_LAST: tuple[str, ...] = ("turtle", "spiral shell", "balloon", "bird")


@dataclass(frozen=True)
class PoisonPlan:
    """Concept order and targets (indices into ``names``) for one seed; see the module docstring."""

    names: tuple[str, ...]
    order: tuple[int, ...]
    targets: tuple[int, ...]  # targets[k] is the target of concept order[k]
    mode: str
    seed: int

    def poisoned(self, c_p: int) -> list[int]:
        """The poisoned concepts at C_P = ``c_p`` (the first ``c_p`` of the order)."""
        if not 0 <= c_p <= len(self.names):
            raise InputError(f"C_P = {c_p} is outside 0..{len(self.names)} (the number of concepts)")
        return list(self.order[:c_p])

    def pairs(self, c_p: int) -> list[tuple[int, int]]:
        """(poisoned concept, target concept) for C_P = ``c_p``."""
        return [(self.order[k], self.targets[k]) for k in range(c_p)]

    def to_json(self, c_p: int) -> list[dict]:
        return [{"concept": self.names[a], "target": self.names[b] if b != SCATTER else "(a random concept per pair)"}
                for a, b in self.pairs(c_p)]


def make_plan(names: list[str] | tuple[str, ...], *, seed: int, mode: str = "poisoned",
              paper_order: bool = True, similarity: np.ndarray | None = None) -> PoisonPlan:
    """The seeded :class:`PoisonPlan` over ``names`` (see the module docstring); ``similarity`` (K × K, larger =
    more alike) is required by, and only used by, ``mode="nearest"``."""
    if mode not in TARGET_MODES:
        raise InputError(f"unknown target mode {mode!r}; choose from {', '.join(TARGET_MODES)}")
    n = len(names)
    if n < 2:
        raise InputError("poisoning needs at least 2 concepts")
    if mode == "nearest":
        if similarity is None:
            raise InputError("target mode 'nearest' needs a concept similarity matrix")
        similarity = np.array(similarity, dtype=np.float64)
        if similarity.shape != (n, n) or not np.all(np.isfinite(similarity)):
            raise InputError(f"the concept similarity must be a finite {n} x {n} matrix, got shape "
                             f"{similarity.shape}")
        np.fill_diagonal(similarity, -np.inf)
    rng = np.random.default_rng([seed, 7919])
    index = {name: i for i, name in enumerate(names)}
    first: list[int] = []
    pinned: dict[int, int] = {}
    last: list[int] = []
    if paper_order:
        for a, b in _PAPER_FIRST if mode in ("poisoned", "all") else ():
            if a in index and b in index and index[a] not in first and index[b] not in first:
                if mode == "poisoned":
                    first += [index[a], index[b]]  # b is poisoned right after a (b -> a in this mode)
                else:
                    first.append(index[a])
                pinned[index[a]] = index[b]
        last = [index[s] for s in _PAPER_LAST if s in index and index[s] not in first]
    middle = [i for i in range(n) if i not in first and i not in last]
    middle = [middle[j] for j in rng.permutation(len(middle))]
    order = first + middle + last
    targets: list[int] = []
    for k, a in enumerate(order):
        if mode == "poisoned":
            t = order[k - 1] if k > 0 else order[1]
        elif mode == "nearest":
            t = int(np.argmax(similarity[a]))
        elif mode == "scatter":
            t = SCATTER
        elif a in pinned:
            t = pinned[a]
        else:
            t = int(rng.integers(n - 1))
            t += t >= a
        targets.append(t)
    if mode == "poisoned" and paper_order:  # the paper's attacks keep their named targets
        for k, a in enumerate(order):
            if a in pinned:
                targets[k] = pinned[a]
    return PoisonPlan(tuple(names), tuple(order), tuple(targets), mode, seed)


def poison_pairs(plan: PoisonPlan, c_p: int, per_concept: int, labels: np.ndarray, *, seed: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Dirty-label pairs for C_P = ``c_p``: (image indices into the clean set, caption concept per pair).

    For each (A, B) in ``plan.pairs(c_p)``, ``per_concept`` images of B (seeded per A, so a concept's poison does
    not depend on C_P) captioned as A.
    """
    return _extra_pairs(plan, c_p, per_concept, labels, seed=seed, salt=104729, show_target=True)


def control_pairs(plan: PoisonPlan, c_p: int, per_concept: int, labels: np.ndarray, *, seed: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """The control of :func:`poison_pairs`: as many extra pairs per poisoned concept A, images of A captioned A."""
    return _extra_pairs(plan, c_p, per_concept, labels, seed=seed, salt=130363, show_target=False)


def _extra_pairs(plan: PoisonPlan, c_p: int, per_concept: int, labels: np.ndarray, *, seed: int, salt: int,
                 show_target: bool) -> tuple[np.ndarray, np.ndarray]:
    """``per_concept`` pairs captioned as each poisoned concept A, showing its target (or A itself); under
    ``scatter`` each pair shows an image of its own uniformly drawn other concept."""
    check_scalar(per_concept, "poison pairs per concept", low=0, integer=True)
    images, concepts = [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.int64)]
    pools: dict[int, np.ndarray] = {}

    def pool(c: int) -> np.ndarray:
        if c not in pools:
            pools[c] = np.flatnonzero(labels == c)
        return pools[c]

    n = len(plan.names)
    for a, b in plan.pairs(c_p):
        rng = np.random.default_rng([seed, salt, a])
        if show_target and b == SCATTER:
            drawn = rng.integers(n - 1, size=per_concept)
            drawn += drawn >= a
            images.append(np.array([rng.choice(pool(int(t))) for t in drawn], dtype=np.int64))
        else:
            src = pool(b if show_target else a)
            images.append(rng.choice(src, size=per_concept, replace=per_concept > len(src)))
        concepts.append(np.full(per_concept, a))
    return np.concatenate(images).astype(np.int64), np.concatenate(concepts).astype(np.int64)


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
                     cfg: NightshadeConfig, *, seed: int, cache_dir=None, progress: bool = False
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
    src_idx, _ = _extra_pairs(plan, c_p, per_concept, labels, seed=seed, salt=15485863, show_target=False)
    tgt_idx, concepts = _extra_pairs(plan, c_p, per_concept, labels, seed=seed, salt=104729, show_target=True)
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


def _bar(total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="nightshade", disable=not enabled, leave=False)
