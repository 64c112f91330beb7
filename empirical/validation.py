"""Validation prompts sampled at every training checkpoint, so implosion is seen while it happens.

At each checkpoint of a point's training (:func:`empirical.train.train_unet`'s ``on_checkpoint``), every validation
prompt is sampled ``per_prompt`` times with the EMA weights so far (fixed seeds, the evaluation's sampler), and the
judge reads each image: the concept it reads (argmax of its zero-shot probabilities) and P(the prompt's concept).
The default prompts are the point's **sentinels** — the two concepts of the plan poisoned last, never poisoned at
any C_P of the run — and, for C_P > 0, two of the point's poisoned concepts (a control's: two that got its extra,
correctly labelled pairs) (``--validation-prompt``, repeatable, replaces them; a prompt's concept is the one it
names, if any). Sampling uses its own seeded generators and a copy of the weights: the training is unchanged. What a checkpoint shows goes to three places:

- ``OUT/validation/<point>.csv`` (step, prompt, role, concept, image, read_as, prob_right) and
  ``OUT/validation/<point>-step<k>.png`` (the images, a row per prompt);
- one line on stderr: ``validation at step k: never poisoned P(right) 0.81 (2 prompts); poisoned 0.12 (2)``;
- the tracker (:mod:`empirical.tracking`): ``validation/<role>_prob_right`` scalars and the images.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from empirical.data import caption
from implosion_base.captions import concept_of_captions
from implosion_base.files import atomic_write_text
from implosion_base.plotting import grid_image
from implosion_base.records import csv_text

#: Columns of ``OUT/validation/<point>.csv``.
VALIDATION_COLUMNS: tuple[str, ...] = ("step", "prompt", "role", "concept", "image", "read_as", "prob_right")


@dataclass(frozen=True)
class ValidationPrompt:
    """A prompt, its role (``never poisoned``, ``poisoned`` or ``given``) and the index of the concept it names
    (-1: none)."""

    text: str
    role: str
    concept: int


def default_prompts(names: Sequence[str], order: Sequence[int], poisoned: Sequence[int], largest_c_p: int,
                    kind: str = "poisoned") -> list[ValidationPrompt]:
    """The sentinels (the last two concepts of the plan's ``order``, never poisoned when the run's largest C_P
    leaves them out) and two of the point's ``poisoned`` concepts — for a control (``kind``), the concepts that
    got its correctly labelled extra pairs, role ``extra pairs``."""
    sentinels = [c for c in list(order)[::-1][:2] if c not in list(order)[:largest_c_p]]
    prompts = [ValidationPrompt(caption(names[c]), "never poisoned", c) for c in sentinels]
    role = "poisoned" if kind == "poisoned" else "extra pairs"
    return prompts + [ValidationPrompt(caption(names[c]), role, c) for c in list(poisoned)[:2]]


def given_prompts(texts: Sequence[str], names: Sequence[str]) -> list[ValidationPrompt]:
    """``--validation-prompt`` texts, each with the concept it names (whole words, as a caption is read:
    :func:`implosion_base.captions.concept_of_captions`; -1: none, or two)."""
    labels, _, _ = concept_of_captions(list(texts), names=list(names))
    return [ValidationPrompt(text, "given", int(c)) for text, c in zip(texts, labels)]


def summary_line(step: int, rows: list[dict]) -> str:
    """The checkpoint's line: mean P(right concept) per role over the prompts that name a concept."""
    cells = []
    for role in ("never poisoned", "poisoned", "extra pairs", "given"):
        p = [r["prob_right"] for r in rows if r["role"] == role and np.isfinite(r["prob_right"])]
        if p:
            prompts = len({r["prompt"] for r in rows if r["role"] == role})
            cells.append(f"{role} P(right) {np.mean(p):.2f} ({prompts} prompt{'s' if prompts != 1 else ''})")
    return f"validation at step {step}: " + ("; ".join(cells) or "no prompt names a concept")


def validation_hook(assets, prompts: list[ValidationPrompt], out: Path, tag: str, *, tracker=None,
                    say: Callable[[str], None] = lambda line: None, per_prompt: int = 2):
    """An ``on_checkpoint(step, unet, ema)`` callback doing the module docstring's sampling and reporting."""
    from empirical.model import generate

    inst, names, ev = assets.instruments, assets.data.names, assets.preset.evaluation
    texts = [p.text for p in prompts for _ in range(per_prompt)]
    seeds = [ev.seed + 7919 * i + j for i in range(len(prompts)) for j in range(per_prompt)]
    folder = Path(out) / "validation"
    table: list[dict] = []

    def record(step: int, unet, ema: dict) -> None:
        pipe = inst.ema_pipeline(unet, ema)
        images = generate(pipe, texts, seeds, steps=ev.steps, guidance=ev.guidance)
        prob = inst.judge.probabilities(images)
        rows = []
        for i, p in enumerate(q for q in prompts for _ in range(per_prompt)):
            rows.append({"step": step, "prompt": p.text, "role": p.role,
                         "concept": names[p.concept] if p.concept >= 0 else "", "image": i % per_prompt,
                         "read_as": names[int(prob[i].argmax())],
                         "prob_right": float(prob[i, p.concept]) if p.concept >= 0 else float("nan")})
        table.extend(rows)
        folder.mkdir(parents=True, exist_ok=True)
        grid_image(images, [p.text.removeprefix("a photo of ")[:14] for p in prompts], per_prompt).save(
            folder / f"{tag}-step{step}.png")
        atomic_write_text(folder / f"{tag}.csv", csv_text([{c: r[c] for c in VALIDATION_COLUMNS} for r in table]))
        say(summary_line(step, rows))
        if tracker is not None:
            roles = {r["role"] for r in rows}
            tracker.log({f"validation/{role.replace(' ', '_')}_prob_right":
                         float(np.nanmean([r["prob_right"] for r in rows if r["role"] == role]))
                         for role in roles if any(np.isfinite(r["prob_right"]) for r in rows if r["role"] == role)},
                        step)
            tracker.log_images({"validation": images}, step)

    return record


@dataclass(frozen=True)
class Signals:
    """What a point reports while it trains: the tracker (``--report-to``), the validation prompts (None: the
    defaults of :func:`default_prompts`; empty: none), the run's largest C_P (which decides the sentinels) and the
    images sampled per prompt at each checkpoint (``per_prompt``; 0: none)."""

    report_to: str = "none"
    prompts: tuple[str, ...] | None = None
    largest_c_p: int = 0
    per_prompt: int = 2  # images per prompt and checkpoint (0: no validation)


def point_hooks(assets, point, out: Path, signals: Signals, say: Callable[[str], None], cfg, *,
                losses=None, track=None):
    """The training callbacks of one point (process 0 only): ``on_step`` (the loss log ``losses`` and the
    tracker's ``train/loss`` and ``train/lr``, the rate from ``cfg``'s schedule), ``on_checkpoint`` (the attention
    record ``track`` and the validation prompts) and the :class:`empirical.tracking.Tracker` to finish."""
    from dataclasses import asdict

    from empirical.schedule import lr_factor
    from empirical.tracking import Tracker

    tracker = Tracker(signals.report_to, Path(out) / "logs", point.tag,
                      {**point.key, "preset": assets.preset.name, "training": asdict(cfg)})
    names = assets.data.names
    prompts = (default_prompts(names, point.plan.order, point.poisoned, signals.largest_c_p, point.kind)
               if signals.prompts is None else given_prompts(signals.prompts, names))
    validate = (validation_hook(assets, prompts, out, point.tag, tracker=tracker, say=say,
                                per_prompt=signals.per_prompt) if prompts and signals.per_prompt > 0 else None)
    factor = lr_factor(cfg)

    def on_step(step: int, loss: float) -> None:
        if losses is not None:
            losses(step, loss)
        tracker.log({"train/loss": loss, "train/lr": cfg.lr * factor(step)}, step + 1)

    def on_checkpoint(step: int, unet, ema: dict) -> None:
        for hook in (track, validate):
            if hook is not None:
                hook(step, unet, ema)

    return on_step, on_checkpoint, tracker
