r"""``python -m simulate.predict``: the simulator's prediction for a real setting, written down before the run.

Given a training setting — K concepts, m benign pairs each, p poison pairs per poisoned concept (one or more),
the C_P to report — and what can be measured without poisoning anything:

- the **geometry** of the real training data (``--embeddings FILE``: unit text/image embeddings of the clean
  pairs with a concept label per pair, e.g. ``python -m empirical.embed --builtin`` output), fitted into the
  simulator's concept space by :func:`simulate.calibrate.fit_geometry`; without it, the default CLIP-like space;
- the **capacity**, either given (``--dim``) or calibrated from the real clean model's unpoisoned accuracy
  (``--clean-acc``: the d at which the simulator's clean model is exactly as competent,
  :func:`simulate.calibrate.capacity_for_accuracy`),

it runs the sweep engine (ridge, ``--poison-kind`` dirty-label or feature-shift by ``--shift`` λ, ``--targets`` rule
(default random), poison added) for every p and seed and prints and
writes, per (p, C_P): the volume V = C_P·p/(K·m), predicted unpoisoned accuracy, meaningless rate and AD (D_stru
from sampled pairs) as mean ± 95% CI over seeds, and per p the predicted threshold C_P (first C_P, on a dense
grid, at which mean unpoisoned accuracy falls below 0.5; "none" if it never does for C_P < K).

With ``--calibration DIR`` it is the **learnability predictor** instead (:mod:`simulate.learnability`): the
setting's unpoisoned accuracy from a probe of its model and runs calibrated on (``--scenario``, ``--lora-rank``,
``--n-concepts``, ``--benign-per-concept``, ``--poison-per-concept``, ``--poisoned-concepts``, ``--json``).

Outputs in ``--out``: ``prediction.csv`` (per p, C_P, seed), ``summary.csv`` (means and CIs), ``thresholds.csv``,
``prediction.json`` (setting, calibration, date, git commit, command). A prediction is a model's output, not a
measurement: commit it before the run it predicts and never edit it afterwards.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from simulate.calibrate import Geometry, capacity_for_accuracy, fit_geometry, geometry_of_space, measure_geometry
from simulate.concepts import ConceptConfig, make_space
from simulate.phase import crossing, poison_volume
from simulate.poison import TARGET_RULES, PoisonConfig, benign_pairs, plan_for_space, poison_pairs
from theory.poisoning import target_rule
from simulate.engine import SweepConfig, run_seed
from simulate.training_set import TrainingSet
from theory.ad import alignment_difficulty_sampled
from implosion_base.validate import check_scalar
from implosion_base.cli import ArgumentParser, dry_run, parse_int_list, parse_seeds, path_arg, run_main
from implosion_base.errors import InputError
from implosion_base.files import atomic_write_text, hold_output
from implosion_base.provenance import command_line, git_commit, utc_now
from implosion_base.records import csv_text
from theory.stats import ci95

__all__ = ["Setting", "predict", "main"]

#: prediction.json's geometry source when no embedding file calibrated it.
DEFAULT_GEOMETRY = "default CLIP-like space"
ROW_KEYS = ("p", "c_p", "seed", "volume", "dominance", "unpoisoned_acc", "meaningless_rate", "salience", "margin",
            "attack_success", "ad", "d_fea", "d_stru")


@dataclass(frozen=True)
class Setting:
    """What is predicted: K, m, the p values and C_P values, and the seeds."""

    n_concepts: int
    benign_per_concept: int
    poison_per_concept: tuple[int, ...]
    poisoned_concepts: tuple[int, ...]
    seeds: tuple[int, ...] = (0, 1, 2)
    ad_samples: int = 200_000
    targets: str = "random"
    real_variant: str = ""
    real_targets: str = ""
    poison_kind: str = "dirty"
    shift: float = 0.5
    real_scenario: str = "continuous"

    def __post_init__(self) -> None:
        check_scalar(self.n_concepts, "--n-concepts", low=2, integer=True)
        check_scalar(self.benign_per_concept, "--benign-per-concept", low=1, integer=True)
        if not self.poison_per_concept:
            raise InputError("--poison-per-concept needs at least one value")
        for p in self.poison_per_concept:
            check_scalar(p, "--poison-per-concept", low=1, integer=True)
        if max(self.poisoned_concepts) >= self.n_concepts:
            raise InputError(f"--poisoned-concepts must stay below --n-concepts ({self.n_concepts}): at C_P = K "
                             "no concept is left unpoisoned")
        if not self.seeds:
            raise InputError("--seeds needs at least one seed")
        object.__setattr__(self, "targets", target_rule(self.targets))
        if self.real_targets:
            object.__setattr__(self, "real_targets", target_rule(self.real_targets, what="--real-targets"))
        PoisonConfig(kind=self.poison_kind, shift=self.shift)  # refuses a bad kind or a shift outside [0, 1]

    @property
    def real_poison_type(self) -> str:
        """The real harness's ``--poison-type`` this prediction stands for: dirty-label for ``dirty``, the
        Nightshade-style perturbation for the feature-shift picture of it (``shift``)."""
        return "nightshade" if self.poison_kind == "shift" else "dirty"

    def poison(self, p: int) -> PoisonConfig:
        """The simulator's poison configuration at ``p`` poison pairs per concept."""
        return PoisonConfig(poison_per_concept=p, targets=self.targets, kind=self.poison_kind, shift=self.shift)


def _ad_of(config: SweepConfig, seed: int, c_p: int, samples: int) -> tuple[float, float, float]:
    """AD of the training set at C_P (D_fea exact, D_stru from ``samples`` random pairs): rebuilt directly."""
    space = make_space(config.concepts, seed)
    plan = plan_for_space(space, config.poison, seed)
    t, v, _ = benign_pairs(space, config.benign_per_concept, seed)
    data = TrainingSet(config.concepts.dim, track_ad=False)
    data.add(t, v)
    for concept in plan.poisoned(c_p):
        data.add(*poison_pairs(space, plan, config.poison, int(concept), seed))
    r = alignment_difficulty_sampled(*data.arrays(), n_samples=samples, seed=seed, alpha=config.alpha)
    return r.ad, r.d_fea, r.d_stru


def predict(setting: Setting, concepts: ConceptConfig) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Rows per (p, C_P, seed) at the requested C_P, and per p the threshold from a dense C_P grid."""
    k, m = setting.n_concepts, setting.benign_per_concept
    dense = sorted(set(range(0, k, max(1, k // 40))) | set(setting.poisoned_concepts) | {0})
    rows, marks = [], []
    for p in setting.poison_per_concept:
        config = SweepConfig(concepts=concepts, poison=setting.poison(p), benign_per_concept=m)
        curve: dict[int, list[float]] = {}
        for seed in setting.seeds:
            for r in run_seed(config, seed, dense, track_ad=False):
                curve.setdefault(r["c_p"], []).append(r["unpoisoned_acc"])
                if r["c_p"] in setting.poisoned_concepts:
                    ad = _ad_of(config, seed, r["c_p"], setting.ad_samples)
                    rows.append({"p": p, "c_p": r["c_p"], "seed": seed, "volume": poison_volume(r["c_p"], p, k, m),
                                 "dominance": p / m, **{key: r[key] for key in ROW_KEYS[5:10]},
                                 "ad": ad[0], "d_fea": ad[1], "d_stru": ad[2]})
        xs = sorted(curve)
        threshold = crossing(xs, [float(np.mean(curve[c])) for c in xs], 0.5, True)
        marks.append({"p": p, "dominance": p / m,
                      "threshold_c_p": threshold if math.isfinite(threshold) else "none",
                      "threshold_volume": poison_volume(threshold, p, k, m) if math.isfinite(threshold) else "none",
                      "acc_at_largest_c_p": float(np.mean(curve[xs[-1]])), "largest_c_p": xs[-1]})
    return rows, marks


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and 95% CI half-width over seeds per (p, C_P)."""
    out = []
    for key in sorted({(r["p"], r["c_p"]) for r in rows}):
        sel = [r for r in rows if (r["p"], r["c_p"]) == key]
        row: dict[str, Any] = {"p": key[0], "c_p": key[1], "volume": sel[0]["volume"], "seeds": len(sel)}
        for name in ("unpoisoned_acc", "meaningless_rate", "attack_success", "ad", "d_stru"):
            vals = np.array([float(r[name]) for r in sel])
            row[name] = float(np.nanmean(vals)) if not np.isnan(vals).all() else float("nan")
            row[name + "_ci95"] = ci95(vals)
        out.append(row)
    return out


def load_geometry(path: Path, labels_key: str) -> Geometry:
    """The six cosines of an embedding file (``text``, ``image`` and a per-pair concept array ``labels_key``)."""
    from implosion_base.pairs_file import load_arrays

    arrays = load_arrays(path, ("text", "image", labels_key))
    labels = np.asarray(arrays[labels_key])
    if labels.ndim != 1 or labels.shape[0] != arrays["text"].shape[0]:
        raise InputError(f"{path}: '{labels_key}' must hold one concept label per pair")
    return measure_geometry(arrays["text"], arrays["image"], labels)


def _poison_words(setting: Setting) -> str:
    """What was simulated, in words, e.g. 'dirty-label, random targets, added'."""
    kind = "dirty-label" if setting.poison_kind == "dirty" else f"feature-shift λ = {setting.shift:g}"
    return f"{kind}, {setting.targets} targets, added"


def _parser() -> ArgumentParser:
    p = ArgumentParser(prog="python -m simulate.predict", description=__doc__.splitlines()[0].strip("`: "))
    p.add_argument("--n-concepts", type=int, required=True, help="K, concepts in the training set")
    p.add_argument("--benign-per-concept", type=int, required=True, help="m, clean pairs per concept")
    p.add_argument("--poison-per-concept", required=True, metavar="LIST", help="p values, e.g. 80,160,240,400")
    p.add_argument("--poisoned-concepts", required=True, metavar="LIST", help="C_P values, e.g. 25,50,100,140")
    cap = p.add_mutually_exclusive_group(required=True)
    cap.add_argument("--dim", type=int, help="the simulator's capacity d, given")
    cap.add_argument("--clean-acc", type=float, help="the real clean model's unpoisoned accuracy: calibrates d")
    p.add_argument("--embeddings", type=Path, help=".npz/.safetensors with text, image and concept labels of the "
                                                   "clean training pairs: calibrates the geometry")
    p.add_argument("--labels-key", default="concept", help="array of concept labels in --embeddings (default concept)")
    p.add_argument("--seeds", default="0,1,2", metavar="LIST", help="seeds (default 0,1,2)")
    p.add_argument("--targets", default="random", help=f"poison targets: {', '.join(TARGET_RULES)} (default random; "
                                                        "simulate.poison)")
    p.add_argument("--real-variant", default="", metavar="TEXT",
                   help="which real runs this prediction stands for when they differ from their preset, named as "
                        "paper_figures names a setting difference, e.g. 'unet.channels: [64, 128] -> [32, 64]' "
                        "(default: the preset's own setting; recorded, not simulated)")
    p.add_argument("--real-targets", default="", metavar="RULE",
                   help=f"the real runs' --targets rule this prediction stands for, one of {', '.join(TARGET_RULES)} "
                        "(default: the simulator's --targets, the same vocabulary; recorded, not simulated)")
    p.add_argument("--poison-kind", default="dirty", choices=["dirty", "shift"],
                   help="dirty-label poisons, or feature-shift ones (the image moved --shift of the way toward the "
                        "target: the picture of a Nightshade-style perturbation, which the real runs are then taken "
                        "to be)")
    p.add_argument("--shift", type=float, default=0.5,
                   help="feature-shift fraction λ in [0, 1] with --poison-kind shift, e.g. 1 − the real poisons' "
                        "measured latent distance ratio")
    p.add_argument("--real-scenario", default="continuous", choices=["continuous", "lora", "scratch"],
                   help="the real runs' --scenario this prediction stands for (recorded, not simulated)")
    p.add_argument("--out", type=path_arg, help="folder for prediction.csv / summary.csv / thresholds.csv / .json")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a == "--calibration" or a.startswith("--calibration=") for a in argv):
        from simulate.learnability import main as learned  # the learnability predictor (probe + calibration)

        return learned(argv)
    args = _parser().parse_args(argv)
    setting = Setting(args.n_concepts, args.benign_per_concept,
                      tuple(parse_int_list(args.poison_per_concept, name="--poison-per-concept")),
                      tuple(parse_int_list(args.poisoned_concepts, name="--poisoned-concepts")),
                      tuple(parse_seeds(args.seeds)), targets=args.targets, real_variant=args.real_variant.strip(),
                      real_targets=args.real_targets, poison_kind=args.poison_kind, shift=args.shift,
                      real_scenario=args.real_scenario)
    if args.dim is not None:
        check_scalar(args.dim, "--dim", low=3, integer=True)
    check_prediction_size(setting, args.dim)
    if dry_run(args, "python -m simulate.predict", {
            "K, m": (setting.n_concepts, setting.benign_per_concept), "p": setting.poison_per_concept,
            "C_P": setting.poisoned_concepts, "seeds": setting.seeds, "targets": setting.targets,
            "poison": _poison_words(setting), "capacity": f"d = {args.dim}" if args.dim is not None else f"calibrated to clean accuracy {args.clean_acc}",
            "geometry": args.embeddings or DEFAULT_GEOMETRY, "out": args.out}):
        return 0
    if args.out is None:
        return _predict(args, setting, None)
    with hold_output(args.out) as out:
        return _predict(args, setting, out)


def check_prediction_size(setting: Setting, dim: int | None) -> None:
    """Refuse, before any work, a prediction whose simulation would not fit this machine (the sweep's
    :func:`simulate.engine.check_size`, at the given d or the largest d calibration may try, for every p)."""
    from simulate.calibrate import DIM_GRID
    from simulate.engine import check_size

    d = dim if dim is not None else max(DIM_GRID)
    k = setting.n_concepts
    for p in setting.poison_per_concept:
        config = SweepConfig(concepts=ConceptConfig(n_concepts=k, dim=d), poison=setting.poison(p),
                             benign_per_concept=setting.benign_per_concept)
        check_size(config, k, len(setting.seeds), min(k, 41) + len(setting.poisoned_concepts))


def _predict(args: Any, setting: Setting, out: Path | None) -> int:
    """The prediction proper: calibrated, simulated, written into ``out`` (when given), then printed."""
    geometry = load_geometry(args.embeddings, args.labels_key) if args.embeddings else None
    base = ConceptConfig(n_concepts=setting.n_concepts)
    concepts = fit_geometry(geometry, setting.n_concepts, base.dim) if geometry else base
    calibration: dict[str, Any] = {"geometry_source": str(args.embeddings) if geometry else DEFAULT_GEOMETRY,
                                   "measured_geometry": geometry.as_dict() if geometry else None}
    if args.clean_acc is not None:
        dim, curve = capacity_for_accuracy(SweepConfig(concepts=concepts, benign_per_concept=setting.benign_per_concept),
                                           args.clean_acc, setting.seeds)
        calibration.update(capacity_source=f"clean accuracy {args.clean_acc}", clean_acc_curve=curve)
    else:
        dim = args.dim
        calibration["capacity_source"] = "given (--dim)"
    concepts = replace(concepts, dim=dim)
    calibration["concept_config"] = asdict(concepts)
    calibration["simulated_geometry"] = geometry_of_space(concepts, min(setting.benign_per_concept, 20)).as_dict()
    rows, marks = predict(setting, concepts)
    summary = summarise(rows)
    if out is not None:
        atomic_write_text(out / "prediction.csv", csv_text(rows))
        atomic_write_text(out / "summary.csv", csv_text(summary))
        atomic_write_text(out / "thresholds.csv", csv_text(marks))
        record = {"tool": "simulate.predict", "setting": asdict(setting), "calibration": calibration,
                  "solver": "ridge", "poison": _poison_words(setting),
                  "real_poison_type": setting.real_poison_type, "date": utc_now(),
                  "git_commit": git_commit(), "command": command_line()}
        atomic_write_text(out / "prediction.json", json.dumps(record, indent=2, default=str) + "\n")
    print(f"prediction: K={setting.n_concepts} m={setting.benign_per_concept} d={dim} "
          f"({calibration['capacity_source']}), geometry: {calibration['geometry_source']}, "
          f"seeds {list(setting.seeds)}")
    print(f"{'p':>5} {'C_P':>5} {'V':>6} {'unpoisoned acc':>16} {'meaningless':>13} {'AD':>15}")
    for r in summary:
        print(f"{r['p']:>5} {r['c_p']:>5} {r['volume']:>6.2f} {r['unpoisoned_acc']:>8.3f} ± {r['unpoisoned_acc_ci95']:.3f} "
              f"{r['meaningless_rate']:>6.3f} ± {r['meaningless_rate_ci95']:.3f} {r['ad']:>7.4f} ± {r['ad_ci95']:.4f}")
    for mk in marks:
        t = mk["threshold_c_p"]
        print(f"p = {mk['p']}: unpoisoned accuracy < 0.5 from C_P = " +
              (f"{t:.1f} (V = {mk['threshold_volume']:.2f})" if t != "none" else
               f"none below C_P = {mk['largest_c_p']} (accuracy there {mk['acc_at_largest_c_p']:.3f})"))
    if out is not None:
        print(f"wrote {out / 'prediction.csv'}, summary.csv, thresholds.csv, prediction.json")
    return 0


def cli() -> None:
    """The ``implosion-predict`` console script: :func:`main` behind the one-line error boundary."""
    run_main(main, prog="implosion-predict")


if __name__ == "__main__":
    run_main(main, prog="python -m simulate.predict")
