"""The clean base model's own samples: what a competent generator of the run's architecture draws.

They are the references of the meaningless rate (:func:`empirical.meaningless.calibrate_on_samples`): the base
model of ``continuous`` and ``lora`` (our clean pretraining of the base seed, cached, or the ``--pretrained``
UNet) draws every concept ``per_concept`` times from the evaluation's prompt, sampler, steps and guidance, at
seeds the evaluation never uses. ``scratch`` has no base model of its own; it is held to the same clean pretraining
(the same architecture trained on the same clean set: at every preset its config equals scratch's). Two seed
ranges are kept apart: :data:`CALIBRATION` sets the thresholds, :data:`HELD_OUT` checks them
(``python -m empirical.known_truth --calibrate-on samples``).

The rule (the calibration samples' judge features and the thresholds) is cached per data, judge, base model and
evaluation config (``meaningless-<key>.npz`` in the cache, numbers only), so a folder's later commands and other
folders of the same base model reuse it.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

if TYPE_CHECKING:
    from empirical.assets import Assets
    from empirical.meaningless import SampledRule

#: Seed offsets (added to the evaluation's first seed) of the calibration samples and of the held-out check;
#: the evaluation uses seed + c·k + j for concept c of K and image j of k, far below either.
CALIBRATION, HELD_OUT = 1_000_000, 2_000_000


def clean_samples(assets: "Assets", unet, *, offset: int = CALIBRATION) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, H, W, 3) uint8, concept labels (N)): the clean base model ``unet``
    (:func:`empirical.scenarios.base_model`) drawing every concept as the evaluation does
    (:func:`empirical.evaluate.prompts_and_seeds`), its seeds moved by ``offset``."""
    from empirical.evaluate import prompts_and_seeds
    from empirical.model import generate

    ev = assets.preset.evaluation
    prompts, seeds, labels = prompts_and_seeds(assets.data.names, replace(ev, seed=ev.seed + offset))
    pipe = assets.instruments.pipeline(unet.to(assets.preset.device).eval())
    return generate(pipe, prompts, seeds, steps=ev.steps, guidance=ev.guidance), labels


def rule_key(assets: "Assets", base_seed: int) -> str:
    """The cache key of a sample-calibrated rule: the data, the judge (by its concept means of the held-out
    renders, which any other judge moves), the base model and how it samples."""
    from empirical.meaningless import SAMPLE_QUANTILE

    p, base = assets.preset, assets.instruments.base
    means = assets.off_render.means if assets.off_render is not None else np.zeros(0)
    parts = {"data": assets.data_key, "base": base.key if base is not None else None, "base_seed": base_seed,
             "unet": asdict(p.unet), "pretrain": asdict(p.pretrain), "vae": asdict(p.vae),
             "judge": hashlib.sha256(np.ascontiguousarray(means, dtype=np.float64).tobytes()).hexdigest(),
             "evaluation": asdict(p.evaluation), "text": str(getattr(assets.instruments.text_encoder, "path", "")),
             "quantile": SAMPLE_QUANTILE, "rule": "samples-renders-reconstructions", "offset": CALIBRATION}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def sample_rule(assets: "Assets", base_seed: int, cache_dir: Path | None, *, progress=False,
                log: Callable[[str], None] = lambda m: None) -> "SampledRule | None":
    """The meaningless rule (:func:`empirical.meaningless.calibrate_on_samples`: the held-out renders, their VAE
    reconstructions and the clean base model's calibration samples; cached); None, said once, when the off-render
    rule is missing (too few held-out renders) or the samples are too few. Under a multi-process launch every
    process calls it: all train the base model together when it is not cached
    (:func:`empirical.scenarios.base_model`), process 0 draws and caches, the others then read the cache."""
    from empirical.processes import main_process_first
    from empirical.scenarios import Start, base_model

    if assets.off_render is None:
        return None
    path = Path(cache_dir) / f"meaningless-{rule_key(assets, base_seed)}.npz" if cache_dir is not None else None
    rule = _cached(assets, path, log)
    if rule is not None:
        return rule
    unet = base_model(Start(assets, seed=0, base_seed=base_seed, cache_dir=cache_dir, progress=progress))
    with main_process_first():
        return _cached(assets, path, log) or _calibrated(assets, unet, path, log)


def _cached(assets: "Assets", path: Path | None, log: Callable[[str], None]) -> "SampledRule | None":
    """The rule saved at ``path`` (numbers only: no pickle), or None."""
    from empirical.meaningless import MeaninglessRule, SampledRule

    if path is None or not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            q = float(z["quantile"])
            renders = MeaninglessRule(assets.off_render.means, float(z["render_far"]), float(z["render_unsure"]),
                                      q, "renders", int(z["render_n"]))
            decoded = MeaninglessRule(assets.off_render.means, float(z["decoded_far"]),
                                      float(z["decoded_unsure"]), q, "reconstructions", int(z["render_n"]))
            return SampledRule(renders, np.array(z["samples"], dtype=np.float64), float(z["far"]), q, decoded)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        log(f"note: {path} is damaged; the clean samples are drawn again")
        return None


def _calibrated(assets: "Assets", unet, path: Path | None, log: Callable[[str], None]) -> "SampledRule | None":
    from empirical.assets import reconstruct
    from empirical.meaningless import calibrate_on_samples
    from implosion_base.errors import InputError
    from implosion_base.files import save_npz_atomically

    log(f"meaningless rate: calibrating on the clean base model's own samples "
        f"({len(assets.data.names) * assets.preset.evaluation.per_concept} images), the held-out renders and their "
        f"reconstructions")
    images, _ = clean_samples(assets, unet)
    judge, held = assets.instruments.judge, assets.held
    recon = reconstruct(assets.instruments.vae, held.images)
    try:
        rule = calibrate_on_samples(judge.image_features(held.images), held.labels,
                                    judge.probabilities(held.images).max(1), judge.image_features(images),
                                    decoded=(judge.image_features(recon), judge.probabilities(recon).max(1)))
    except InputError as exc:
        log(f"note: the meaningless rate is not measured ({exc})")
        return None
    if path is not None:
        r, d = rule.off_render, rule.off_decoded
        save_npz_atomically(path, samples=rule.samples, far=rule.far, quantile=rule.quantile, render_far=r.far,
                            render_unsure=r.unsure, render_n=r.n, decoded_far=d.far, decoded_unsure=d.unsure)
    return rule


def with_sample_rule(assets: "Assets", base_seed: int, cache_dir: Path | None, *, progress=False,
                     log: Callable[[str], None] = lambda m: None) -> "Assets":
    """``assets`` with its meaningless rule: :func:`sample_rule` of the base model of ``base_seed``."""
    return replace(assets, meaningless=sample_rule(assets, base_seed, cache_dir, progress=progress, log=log))
