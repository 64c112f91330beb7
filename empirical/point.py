"""One experiment point: train the scenario on its mix (clean pairs plus poisons or control pairs), generate
every concept's images at fixed seeds, measure them, and write the point's files (grid, attention maps, per-concept
readings, loss curve). :mod:`empirical.experiment` loops over the points.

A point is resolved once (:class:`ResolvedPoint`: its poisoned concepts, their targets, its file tag and table key,
from the seed's plan) and handed on; its result is a typed record (:class:`PointResult`: the results row, the
attention rows, the per-concept rows), each table written once from it."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from empirical.assets import Assets, build_mix, pretrained_state, same_training
from empirical.data import PAPER_CONCEPTS, caption
from empirical.evaluate import generated_measures, mix_alignment_difficulty, per_concept_table, prompts_and_seeds
from empirical.layout import TRACK_COLUMNS, cell, point_tag
from empirical.poison_kinds import ExtraPairs, PoisonRequest, extra_pairs, recorded_poison_type
from theory.poisoning import PoisonPlan
from empirical.processes import is_main_process, main_process_first
from empirical.scenarios import SCENARIOS, Start, base_model
from empirical.lora import merged, save_lora_adapter
from empirical.train import Mix, train_unet, with_weights
from implosion_base.records import ResultsTable
from empirical.validation import Signals, point_hooks
from implosion_base.plotting import grid_image
from implosion_base.files import atomic_write_text, save_npz_atomically
from implosion_base.progress import Progress, as_progress


@dataclass(frozen=True)
class ResolvedPoint:
    """One (seed, C_P, kind) point of a scenario, resolved once from its seed's plan: the poison type it records
    (:func:`empirical.poison_kinds.recorded_poison_type`), the poisoned concepts and their targets (a control's
    "poisoned" concepts are the ones that get its extra, correctly labelled pairs)."""

    plan: PoisonPlan
    scenario: str
    seed: int
    c_p: int
    kind: str
    poison_type: str  # the type asked for; ``recorded`` is what the tables say
    p: int
    poisoned: tuple[int, ...]
    targets: tuple[tuple[int, int], ...]

    @classmethod
    def of(cls, plan: PoisonPlan, *, scenario: str, seed: int, c_p: int, kind: str, poison_type: str,
           p: int) -> "ResolvedPoint":
        return cls(plan, scenario, seed, c_p, kind, poison_type, p, tuple(plan.poisoned(c_p)), tuple(plan.pairs(c_p)))

    @property
    def recorded(self) -> str:
        return recorded_poison_type(self.kind, self.poison_type, self.c_p)

    @property
    def tag(self) -> str:
        """The file stem of its grids, tables and checkpoints (:func:`empirical.layout.point_tag`)."""
        return point_tag(self.scenario, self.seed, self.c_p, self.kind, self.recorded, self.plan.rule)

    @property
    def key(self) -> dict[str, Any]:
        """Its identifying columns in every table."""
        return {"seed": self.seed, "scenario": self.scenario, "c_p": self.c_p, "kind": self.kind,
                "poison_type": self.recorded, "poison_per_concept": self.p, "targets": self.plan.rule}


@dataclass(frozen=True)
class PointResult:
    """A finished point as its tables hold it: the results row (measures, key, sizes, timings), one attention row
    per group (unpoisoned, poisoned) and one row per concept."""

    row: dict[str, Any]
    attention: list[dict[str, Any]]
    concepts: list[dict[str, Any]]


def train_point(assets: Assets, scenario: str, seed: int, mix: Mix, checkpoint_dir: Path, cache_dir: Path | None,
                *, base_seed: int = 0, progress: Progress | bool = False, on_checkpoint=None, on_step=None):
    """Train one point of ``scenario`` (:data:`empirical.scenarios.SCENARIOS`) on ``mix``; returns the UNet
    carrying its EMA weights and the number of steps. Scratch training on the clean set alone is the clean
    pretraining itself (same initialisation, data and schedule): it is reused from the cache."""
    unet, cfg = SCENARIOS[scenario](Start(assets, seed, base_seed, cache_dir, progress))
    if scenario == "scratch" and len(mix) == len(assets.data) and same_training(cfg, assets.preset.pretrain):
        unet.load_state_dict(pretrained_state(assets, seed, cache_dir, progress=progress))
        return unet.eval(), cfg.steps
    unet, ema = train_unet(unet, mix, cfg, checkpoint_dir=checkpoint_dir, progress=progress,
                           desc=f"{scenario} training (seed {seed})",
                           device=assets.preset.device, scheduler_config=assets.instruments.scheduler_config,
                           on_checkpoint=on_checkpoint, on_step=on_step)
    return with_weights(unet, ema), cfg.steps


def grid_concepts(names: list[str]) -> list[str]:
    """The concepts shown in grids and followed through training: the paper's eight where present, else the
    first eight."""
    return [c for c in PAPER_CONCEPTS if c in names] or names[:8]


def attention_tracker(assets: Assets, table: ResultsTable, poisoned: list[int], key: dict, per_concept: int = 2):
    """An ``on_checkpoint`` callback recording, at each training checkpoint, the cross-attention statistics and
    the judge's reading of ``per_concept`` images of each grid concept (the paper's eight where present) generated
    with the EMA weights so far: rows of ``TRACK_COLUMNS`` appended to ``table`` (``--track-attention``)."""
    from empirical.attention import generate_with_attention

    names, inst = assets.data.names, assets.instruments
    shown = grid_concepts(names)
    ev = assets.preset.evaluation
    prompts = [caption(c, 0) for c in shown for _ in range(per_concept)]
    phrases = [c for c in shown for _ in range(per_concept)]
    seeds = [ev.seed + names.index(c) * ev.per_concept + j for c in shown for j in range(per_concept)]
    truth = np.array([names.index(c) for c in phrases])

    def record(step: int, unet, ema: dict) -> None:
        pipe = inst.ema_pipeline(unet, ema)
        att = generate_with_attention(pipe, prompts, seeds, phrases, steps=ev.steps, guidance=ev.guidance)
        prob = inst.judge.probabilities(att.images)
        rows = []
        for i, concept in enumerate(phrases):
            rows.append({**key, "step": step, "concept": concept, "poisoned": int(names.index(concept) in poisoned),
                         "read_right": int(prob[i].argmax() == truth[i]), "prob_right": float(prob[i, truth[i]]),
                         **{f"attn_{k}": float(v[i]) for k, v in att.statistics.items()}})
        table.append([{k: cell(r[k]) for k in TRACK_COLUMNS} for r in rows])

    return record


class LossLog:
    """The training loss of one point, step by step, in ``path`` (CSV: step, loss; full precision), rewritten
    every ``every`` steps and at the end. After a resume the retrained steps replace their earlier rows, so the
    file holds one loss per step whatever the kills."""

    def __init__(self, path: Path, every: int = 50):
        self.path, self.every = Path(path), every
        self.loss: dict[int, float] = {}
        if self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines()[1:]:
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


def point_mix(assets: Assets, plan: PoisonPlan, *, kind: str, poison_type: str, c_p: int, p: int, seed: int,
              cache_dir: Path | None = None, progress: Progress | bool = False, benign: int | None = None,
              control: str = "own"):
    """The training mix of one point: the clean set (its first ``benign`` pairs per concept when given) plus the
    extra pairs of its kind (:mod:`empirical.poison_kinds`). Returns (recorded poison type, extra pairs, mix,
    caption texts). ``control``: which control a control point draws (:func:`empirical.poisons.control_pairs`)."""
    req = PoisonRequest(plan, c_p, p, assets.data.images, assets.data.labels, seed, assets.instruments.vae,
                        assets.preset.nightshade, cache_dir, progress, control)
    with main_process_first():  # process 0 makes and caches pixel poisons, the others load them
        ptype, batch = extra_pairs(kind, poison_type, req)
    mix, texts = build_mix(assets, batch.image_idx, batch.concepts, new_pixels=batch.new_pixels, benign=benign)
    return ptype, batch, mix, texts


def measure_point(assets: Assets, unet, point: ResolvedPoint, batch: ExtraPairs, mix: Mix,
                  texts: list[str]) -> tuple[dict, Any, np.ndarray]:
    """Generate every concept's evaluation images with ``unet`` and measure them (:mod:`empirical.evaluate`), and
    the AD of the mix with the judge. Returns (measures, attention record, concept of each generated image). A
    control is measured on the same split: its "poisoned" concepts are the ones that got the extra (correctly
    labelled) pairs, and its attack success is the chance rate of reading them as the would-be target."""
    from empirical.attention import generate_with_attention

    inst, names, ev = assets.instruments, assets.data.names, assets.preset.evaluation
    prompts, seeds, gen_labels = prompts_and_seeds(names, ev)
    att = generate_with_attention(inst.pipeline(unet), prompts, seeds, [names[c] for c in gen_labels],
                                  steps=ev.steps, guidance=ev.guidance)
    is_poison = np.r_[np.zeros(len(mix) - len(batch), bool), batch.is_poison]  # the mix ends with the extra pairs
    pixels = batch.pixels(assets.data.images)
    measures = {**generated_measures(inst.judge, att.images, gen_labels, prompts, list(point.poisoned),
                                     dict(point.targets), assets.clean_features, assets.meaningless,
                                     assets.off_render),
                **mix_alignment_difficulty(inst.judge, pixels[mix.image_idx], texts, is_poison), **batch.report}
    return measures, att, gen_labels


def write_point_files(out: Path, tag: str, assets: Assets, att, gen_labels: np.ndarray, row: dict,
                      poisoned: list[int]) -> list[dict]:
    """The point's sample grid and attention overlay (``grids/<tag>*.png``), its per-concept readings and row
    (``points/<tag>.json``) and the grid concepts' images and concept-token maps (``points/<tag>-attention.npz``,
    a few hundred KB, for figures). Returns the per-concept table."""
    from empirical.attention import overlay

    names, images = assets.data.names, att.images
    shown = grid_concepts(names)
    k = min(4, assets.preset.evaluation.per_concept)
    sel = np.concatenate([np.flatnonzero(gen_labels == names.index(c))[:k] for c in shown])
    maps = att.concept_maps()[sel]
    (out / "grids").mkdir(exist_ok=True)
    grid_image(images[sel], shown, k).save(out / "grids" / f"{tag}.png")
    grid_image(np.stack([overlay(images[i], m) for i, m in zip(sel, maps)]), shown, k
               ).save(out / "grids" / f"{tag}-attention.png")
    table = per_concept_table(assets.instruments.judge, images, gen_labels, names)
    for r in table:
        m = gen_labels == names.index(r["concept"])
        r.update({f"attn_{key}": float(np.nanmean(v[m])) for key, v in att.statistics.items()})
    atomic_write_text(out / "points" / f"{tag}.json",
                      json.dumps({"row": row, "poisoned": [names[c] for c in poisoned], "concepts": table},
                                 indent=1, default=float))
    save_npz_atomically(out / "points" / f"{tag}-attention.npz", images=images[sel], maps=maps.astype(np.float16),
                        concepts=np.asarray([names[gen_labels[i]] for i in sel]))
    return table


def run_point(assets: Assets, point: ResolvedPoint, *, out: Path, cache_dir: Path | None, base_seed: int = 0,
              progress: Progress | bool = False, keep_model: bool = False, track: ResultsTable | None = None,
              benign: int | None = None, signals: Signals | None = None, control: str = "own"
              ) -> PointResult | None:
    """Train and measure one point; writes its files; returns its :class:`PointResult` (None on processes > 0).
    Its poison type applies to poisoned points; controls are the same for every type. ``benign``: clean pairs
    per concept in the mix (all when None); the clean pretraining of continuous and LoRA always uses every pair
    (it is the shared base model). ``signals``: the tracker and validation prompts while it trains
    (:mod:`empirical.validation`; default: the default prompts, no tracker)."""
    _, batch, mix, texts = point_mix(assets, point.plan, kind=point.kind, poison_type=point.poison_type,
                                     c_p=point.c_p, p=point.p, seed=point.seed, cache_dir=cache_dir,
                                     progress=progress, benign=benign, control=control)
    ckpt = out / "checkpoints" / point.tag
    recorder = attention_tracker(assets, track, list(point.poisoned), point.key) if track is not None else None
    t0 = time.perf_counter()
    on_step = on_checkpoint = tracker = losses = None
    if is_main_process():
        losses = LossLog(out / "points" / f"{point.tag}-loss.csv")
        cfg = assets.preset.scratch if point.scenario == "scratch" else assets.preset.continued
        on_step, on_checkpoint, tracker = point_hooks(assets, point, out, signals or Signals(),
                                                      as_progress(progress).say, cfg, losses=losses, track=recorder)
    try:
        unet, steps = train_point(assets, point.scenario, point.seed, mix, ckpt, cache_dir, base_seed=base_seed,
                                  progress=progress, on_checkpoint=on_checkpoint, on_step=on_step)
    finally:  # what was logged stays readable, even when training stops on an error or a kill
        if tracker is not None:
            tracker.finish()
    if losses is not None:
        losses.write()
    train_s = time.perf_counter() - t0
    if not is_main_process():  # under DDP the other processes only train; process 0 evaluates and writes
        return None
    t0 = time.perf_counter()
    n_images = len(assets.data.names) * assets.preset.evaluation.per_concept
    as_progress(progress).say(f"{point.tag}: generating and judging {n_images} images "
                              f"({assets.preset.evaluation.steps} sampling steps each)")
    measures, att, gen_labels = measure_point(assets, unet, point, batch, mix, texts)
    names, poisoned = assets.data.names, list(point.poisoned)
    row = {**measures, **point.key, "steps": steps, "n_concepts": len(names),
           "n_unpoisoned": len(names) - len(poisoned), "n_pairs": len(mix), "train_s": round(train_s, 2),
           "eval_s": round(time.perf_counter() - t0, 2)}
    table = write_point_files(out, point.tag, assets, att, gen_labels, row, poisoned)
    if keep_model:
        keep_model_files(assets, unet, point.scenario, base_seed, out / "models", point.tag, cache_dir)
    shutil.rmtree(ckpt, ignore_errors=True)
    return PointResult(row, attention_rows(att.statistics, gen_labels, poisoned),
                       [{**r, "poisoned": int(names.index(r["concept"]) in poisoned)} for r in table])


def keep_model_files(assets: Assets, unet, scenario: str, base_seed: int, models: Path, tag: str,
                     cache_dir: Path | None) -> None:
    """``--keep-models``: a full pipeline folder ``models/<tag>`` for scratch and continuous; for lora only the
    adapter (``models/<tag>/pytorch_lora_weights.safetensors``) and ``adapter.json`` naming its base model —
    the ``--pretrained`` folder, or our clean base saved once as ``models/base-b<base seed>``. Load with
    ``pipe = empirical.model.load_pipeline(base); pipe.load_lora_weights(models/<tag>)``."""
    from empirical.model import save_pipeline

    inst = assets.instruments
    if scenario != "lora":
        save_pipeline(inst.pipeline(merged(unet)), models / tag)
        return
    if inst.base is not None:
        base = str(inst.base.path)
    else:
        folder = models / f"base-b{base_seed}"
        if not (folder / "model_index.json").is_file():
            clean = base_model(Start(assets, seed=0, base_seed=base_seed, cache_dir=cache_dir))
            save_pipeline(inst.pipeline(clean), folder)
        base = folder.name
    save_lora_adapter(unet, models / tag)
    atomic_write_text(models / tag / "adapter.json", json.dumps({"base": base, "lora": asdict(assets.preset.lora)},
                                                                indent=1))


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
