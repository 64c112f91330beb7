r"""The learnability predictor: unpoisoned accuracy of a real setting from a cheap probe of its model.

What the real model's runs say (docs/empirical.md): at equal poison volume V = C_P·p/(K·m), a model that learns the
remappings loses less of its never-poisoned concepts than one that cannot; AD and V alone do not tell them apart.
The predictor models the never-poisoned concepts' accuracy of a run in one of two forms (``--form``):

- ``gauged`` (the default; registered 2026-12-07 in docs/predictions/2026-12-07-gauged) — damage that falls
  exponentially with learnability, in units of the data set's clean logit:

  .. math::  \mathrm{acc}(V) = a_0 \, \exp\!\big(-[\gamma_s + A\,V\,e^{-\eta\lambda}] \,/\, g_D\big),
             \qquad g_D = \operatorname{logit}(c_D),

  with :math:`c_D` the competence of the data set's *gauge* probe (its continuous probe of the widest UNet): a data
  set whose concepts a model renders near-perfectly (large logit) loses less to the same poison. For fixed
  :math:`\eta` the model is linear in :math:`(\gamma_s, A)`; :math:`\eta` is the grid value in [0, 8] (step 0.01)
  with the least squared error (profile least squares).
- ``linear`` (registered 2026-12-07 in docs/predictions/2026-12-07-learnability; it missed the data set it was not
  calibrated on) — :math:`\mathrm{acc}(V) = a_0 \exp(-\gamma_s - V[\alpha_s + \beta(1-\lambda)])`, least squares.

:math:`a_0` is the model's competence and :math:`\lambda` its learnability, both read from its probe
(``python -m empirical.probe``: one short poisoned point at a fixed small volume; :math:`\lambda` = the probe's
attack success, :math:`a_0` = its never-poisoned accuracy), s the scenario (continuous, lora, scratch); the
coefficients are fitted on :math:`\log a_0 - \log \mathrm{acc}` over the calibration runs (``calibration.csv``:
measured runs of settings whose probes are in the folder). Scratch has no model before its run: its
:math:`\lambda` is the continuous probe of the same UNet and its :math:`a_0` the mean clean (C_P = 0) scratch
accuracy of the calibration runs on the same data set.

The 90 % interval is the prediction ± the 90 % quantile of the absolute leave-one-out errors of the calibration
runs (each run predicted by the model fitted without it, :math:`\eta` included), in accuracy, clipped to [0, 1].
Baselines fitted on the same runs, for scoring: a constant (their mean accuracy) and a function of V alone
(:math:`\mathrm{acc} = c\,e^{-kV}`).

The calibration folder (``--calibration DIR``) holds ``probes/<name>/probe.json`` and ``calibration.csv``
(:data:`implosion_base.calibration_files.CALIBRATION_COLUMNS`; written by ``python -m empirical.calibration_table``).
This module reads files only: it needs neither torch nor the empirical harness.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from implosion_base.calibration_files import CALIBRATION_COLUMNS, CALIBRATION_FILE, PROBE_FILE, PROBES
from implosion_base.errors import InputError

SCENARIOS: tuple[str, ...] = ("continuous", "lora", "scratch")
#: The model forms (module docstring), the default first.
FORMS: tuple[str, ...] = ("gauged", "linear")
#: The gauged form's grid of η (profile least squares).
ETA_GRID = np.round(np.arange(0.0, 8.0 + 1e-9, 0.01), 2)
#: The interval's coverage.
COVERAGE = 0.90


@dataclass(frozen=True)
class Probe:
    """One probe's record (empirical.probe): the model it probed and what it measured."""

    name: str
    scenario: str
    lora_rank: int | None
    unet_channels: tuple[int, ...]
    data_set: str
    learnability: float
    competence: float

    def matches(self, scenario: str, lora_rank: int | None, unet_channels: tuple[int, ...] | None,
                data_set: str | None) -> bool:
        """Whether this probe is of the model a setting names (scratch: the continuous probe of its UNet)."""
        want = "continuous" if scenario == "scratch" else scenario
        return (self.scenario == want and (want != "lora" or lora_rank is None or self.lora_rank == lora_rank)
                and (unet_channels is None or self.unet_channels == tuple(unet_channels))
                and (data_set is None or self.data_set == data_set))


def load_probes(folder: Path) -> dict[str, Probe]:
    """Every ``probes/<name>/probe.json`` of a calibration folder, by name (InputError naming a bad one)."""
    out = {}
    for path in sorted((Path(folder) / PROBES).glob(f"*/{PROBE_FILE}")):
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
            out[path.parent.name] = Probe(path.parent.name, d["scenario"], d.get("lora_rank"),
                                          tuple(int(c) for c in d["unet_channels"]), d["data_set"],
                                          float(d["learnability"]), float(d["competence"]))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InputError(f"{path}: not a probe record ({type(exc).__name__}: {exc})") from None
    if not out:
        raise InputError(f"{folder} holds no probes/<name>/probe.json (python -m empirical.probe --out ...)")
    return out


def load_calibration(folder: Path) -> list[dict]:
    """``calibration.csv`` of a calibration folder (InputError when absent or missing columns)."""
    path = Path(folder) / CALIBRATION_FILE
    if not path.is_file():
        raise InputError(f"{path} does not exist (python -m empirical.calibration_table writes it)")
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    missing = sorted(set(CALIBRATION_COLUMNS) - set(rows[0] if rows else ()))
    if missing:
        raise InputError(f"{path} lacks columns {', '.join(missing)}")
    return rows


def logit(c: float) -> float:
    """log(c / (1 − c)), the clean logit of an accuracy c (InputError outside (0, 1))."""
    if not 0.0 < c < 1.0:
        raise InputError(f"a gauge competence of {c} has no logit (it must lie strictly between 0 and 1)")
    return math.log(c / (1.0 - c))


def data_set_gauges(probes: dict[str, Probe]) -> dict[str, float]:
    """Per data set: g_D = logit(competence) of its gauge probe, the continuous probe of its widest UNet (ties:
    the first by name)."""
    best: dict[str, Probe] = {}
    for name in sorted(probes):
        pr = probes[name]
        if pr.scenario == "continuous" and (pr.data_set not in best
                                            or sum(pr.unet_channels) > sum(best[pr.data_set].unet_channels)):
            best[pr.data_set] = pr
    return {ds: logit(pr.competence) for ds, pr in best.items()}


def gauge_of(gauges: dict[str, float], data_set: str) -> float:
    """g_D of ``data_set`` (InputError naming it when it has no gauge probe)."""
    if data_set not in gauges:
        raise InputError(f"data set {data_set} has no gauge probe (python -m empirical.probe --scenario continuous "
                         f"with its --fonts); the gauged form needs one")
    return gauges[data_set]


def _design(form: str, scenario: str, volume: float, learnability: float, eta: float = 0.0, gauge: float = 1.0
            ) -> np.ndarray:
    """One row of the model, linear in its coefficients: linear form [γ_s indicators, V·α_s indicators,
    V·(1 − λ)]; gauged form [γ_s indicators, V·e^(−ηλ)] / g_D."""
    s = SCENARIOS.index(scenario)
    if form == "gauged":
        row = np.zeros(len(SCENARIOS) + 1)
        row[s] = 1.0
        row[-1] = volume * math.exp(-eta * learnability)
        return row / gauge
    row = np.zeros(2 * len(SCENARIOS) + 1)
    row[s] = 1.0
    row[len(SCENARIOS) + s] = volume
    row[-1] = volume * (1.0 - learnability)
    return row


@dataclass(frozen=True)
class Fit:
    """The fitted form and coefficients (η and the data sets' gauges for the gauged form), the calibration's
    leave-one-out errors and the baselines' parameters."""

    coef: np.ndarray
    loo_errors: np.ndarray
    constant: float
    v_alone: tuple[float, float]
    clean_scratch: dict[str, float]
    n: int
    form: str = "linear"
    eta: float = 0.0
    gauges: dict[str, float] = field(default_factory=dict)

    @property
    def half_width(self) -> float:
        """The interval's half-width: the COVERAGE quantile of the absolute leave-one-out errors."""
        return float(np.quantile(np.abs(self.loo_errors), COVERAGE))

    def gauge(self, data_set: str) -> float:
        """g_D of a data set (gauged form; 1 for the linear form)."""
        return gauge_of(self.gauges, data_set) if self.form == "gauged" else 1.0

    def predict(self, scenario: str, volume: float, probe: Probe, competence: float) -> float:
        x = _design(self.form, scenario, volume, probe.learnability, self.eta, self.gauge(probe.data_set))
        return float(competence * math.exp(-x @ self.coef))


def _rows_with_probes(rows: list[dict], probes: dict[str, Probe]) -> list[tuple[dict, Probe, float]]:
    """(row, its probe, its competence a0) of every poisoned calibration row (C_P > 0)."""
    clean = clean_scratch(rows)
    out = []
    for r in rows:
        if int(r["c_p"]) == 0:
            continue
        if r["probe"] not in probes:
            raise InputError(f"calibration.csv names probe {r['probe']!r}, which the folder does not hold")
        probe = probes[r["probe"]]
        a0 = clean.get(r["data_set"]) if r["scenario"] == "scratch" else probe.competence
        if a0 is None:
            raise InputError(f"no clean scratch run of data set {r['data_set']} in calibration.csv")
        out.append((r, probe, a0))
    return out


def clean_scratch(rows: list[dict]) -> dict[str, float]:
    """Per data set: the mean clean (C_P = 0) accuracy of its scratch calibration runs."""
    acc: dict[str, list[float]] = {}
    for r in rows:
        if r["scenario"] == "scratch" and int(r["c_p"]) == 0:
            acc.setdefault(r["data_set"], []).append(float(r["unpoisoned_acc"]))
    return {k: float(np.mean(v)) for k, v in acc.items()}


def _fit_gauged(scen: np.ndarray, v: np.ndarray, lam: np.ndarray, g: np.ndarray, y: np.ndarray
                ) -> tuple[float, np.ndarray]:
    """(η, coefficients) of the gauged form: for each η of :data:`ETA_GRID` the linear least squares in
    (γ_s, A), all η at once through the normal equations (pseudo-inverse: a scenario without runs keeps γ_s = 0);
    the η of least squared error."""
    n_s = len(SCENARIOS)
    x = np.zeros((len(ETA_GRID), len(y), n_s + 1))
    x[:, np.arange(len(y)), scen] = 1.0
    x[:, :, -1] = v[None, :] * np.exp(-ETA_GRID[:, None] * lam[None, :])
    x /= g[None, :, None]
    xtx = np.einsum("eni,enj->eij", x, x)
    xty = np.einsum("eni,n->ei", x, y)
    c = np.einsum("eij,ej->ei", np.linalg.pinv(xtx, hermitian=True), xty)
    sse = np.sum((np.einsum("eni,ei->en", x, c) - y[None, :]) ** 2, axis=1)
    best = int(np.argmin(sse))
    return float(ETA_GRID[best]), c[best]


def fit(rows: list[dict], probes: dict[str, Probe], form: str = FORMS[0]) -> Fit:
    """Least squares of the module docstring (``form``) over the calibration rows, with leave-one-out errors."""
    if form not in FORMS:
        raise InputError(f"unknown form {form!r}; choose from {', '.join(FORMS)}")
    data = _rows_with_probes(rows, probes)
    n_coef = len(SCENARIOS) + 2 if form == "gauged" else 2 * len(SCENARIOS) + 1  # gauged: γ_s, A and η
    if len(data) < n_coef + 1:
        raise InputError(f"{len(data)} poisoned calibration runs are too few for the {form} form's {n_coef} "
                         f"coefficients")
    acc = np.array([max(float(r["unpoisoned_acc"]), 0.01) for r, _, _ in data])
    a0 = np.array([a for _, _, a in data])
    y = np.log(a0) - np.log(acc)
    v = np.array([float(r["volume"]) for r, _, _ in data])
    lam = np.array([probe.learnability for _, probe, _ in data])
    gauges = data_set_gauges(probes) if form == "gauged" else {}
    g = np.array([gauge_of(gauges, r["data_set"]) if gauges else 1.0 for r, _, _ in data])
    scen = np.array([SCENARIOS.index(r["scenario"]) for r, _, _ in data])
    x = None if form == "gauged" else np.stack([_design(form, r["scenario"], v[i], lam[i])
                                                for i, (r, _, _) in enumerate(data)])

    def solve(keep: np.ndarray) -> tuple[float, np.ndarray]:
        if x is None:
            return _fit_gauged(scen[keep], v[keep], lam[keep], g[keep], y[keep])
        return 0.0, np.linalg.lstsq(x[keep], y[keep], rcond=None)[0]

    def exponent(i: int, eta: float, c: np.ndarray) -> float:
        r, probe, _ = data[i]
        return float(_design(form, r["scenario"], v[i], probe.learnability, eta, g[i]) @ c)

    everyone = np.ones(len(data), bool)
    eta, coef = solve(everyone)
    loo = np.empty(len(data))
    for i in range(len(data)):
        keep = everyone.copy()
        keep[i] = False
        e, c = solve(keep)
        loo[i] = a0[i] * math.exp(-exponent(i, e, c)) - acc[i]
    slope, intercept = np.polyfit(v, np.log(acc), 1)
    return Fit(coef, loo, float(np.mean(acc)), (float(math.exp(intercept)), float(-slope)), clean_scratch(rows),
               len(data), form, eta, gauges)


def choose_probe(probes: dict[str, Probe], scenario: str, lora_rank: int | None,
                 unet_channels: tuple[int, ...] | None, data_set: str | None, name: str | None) -> Probe:
    """The probe of the model a setting names (by ``name``, or the one probe that matches; InputError naming
    the candidates otherwise)."""
    if name is not None:
        if name not in probes:
            raise InputError(f"no probe {name!r}; the folder holds {', '.join(sorted(probes))}")
        return probes[name]
    found = [p for p in probes.values() if p.matches(scenario, lora_rank, unet_channels, data_set)]
    if len(found) != 1:
        what = f"{scenario}" + (f" rank {lora_rank}" if lora_rank else "") + (f" data set {data_set}" if data_set
                                                                              else "")
        raise InputError(f"{len(found)} probes match {what} ({', '.join(p.name for p in found) or 'none'}); "
                         f"name one with --probe")
    return found[0]


def predictions(fitted: Fit, probe: Probe, scenario: str, k: int, m: int, p: int, c_ps: Sequence[int]
                ) -> list[dict]:
    """One record per C_P: V, the predicted unpoisoned accuracy, its 90 % interval and the baselines'."""
    if scenario == "scratch":
        a0 = fitted.clean_scratch.get(probe.data_set)
        if a0 is None:
            raise InputError(f"scratch needs a clean scratch run of data set {probe.data_set} in the calibration")
    else:
        a0 = probe.competence
    out = []
    for c in c_ps:
        v = c * p / (k * m)
        acc = min(1.0, max(0.0, fitted.predict(scenario, v, probe, a0)))  # an accuracy, whatever the fit says
        h = fitted.half_width
        out.append({"c_p": int(c), "volume": v, "unpoisoned_acc": acc, "low": max(0.0, acc - h),
                    "high": min(1.0, acc + h), "half_width": h, "probe": probe.name, "data_set": probe.data_set,
                    "learnability": probe.learnability, "competence": a0, "form": fitted.form,
                    "gauge": fitted.gauge(probe.data_set), "baseline_constant": fitted.constant,
                    "baseline_v_alone": fitted.v_alone[0] * math.exp(-fitted.v_alone[1] * v)})
    return out


def main(argv: Sequence[str]) -> int:
    """``python -m simulate.predict --calibration DIR ...``: the learnability predictor's answer for a setting,
    one line (``--json``: one JSON object) per C_P; ``--out DIR`` also writes ``prediction.json`` (the answer, the
    probe and the fit, to commit before the run)."""
    from implosion_base.cli import ArgumentParser, dry_run, parse_int_list, path_arg
    from implosion_base.files import atomic_write_text
    from implosion_base.provenance import command_line, git_commit, utc_now
    from implosion_base.validate import check_scalar

    p = ArgumentParser(prog="python -m simulate.predict --calibration",
                       description="the learnability predictor (simulate.learnability)")
    p.add_argument("--calibration", type=path_arg, required=True, help="folder with probes/ and calibration.csv")
    p.add_argument("--scenario", required=True, choices=SCENARIOS, help="the real run's scenario")
    p.add_argument("--lora-rank", type=int, default=None, help="lora: the adapter rank (selects the probe)")
    p.add_argument("--unet-channels", default=None, metavar="LIST", help="the UNet's channels (selects the probe)")
    p.add_argument("--data-set", default=None, help="the data set's label, e.g. emoji-openmoji-150 (selects the probe)")
    p.add_argument("--probe", default=None, metavar="NAME", help="the probe to use, by folder name")
    p.add_argument("--n-concepts", type=int, required=True, help="K")
    p.add_argument("--benign-per-concept", type=int, required=True, help="m")
    p.add_argument("--poison-per-concept", type=int, required=True, help="p")
    p.add_argument("--poisoned-concepts", required=True, metavar="LIST", help="C_P values, e.g. 50,100")
    p.add_argument("--form", choices=FORMS, default=FORMS[0], help="the model's form (module docstring)")
    p.add_argument("--json", action="store_true", help="one JSON object per C_P")
    p.add_argument("--out", type=path_arg, default=None, help="folder for prediction.json")
    args = p.parse_args(argv)
    for name in ("n_concepts", "benign_per_concept", "poison_per_concept"):
        check_scalar(getattr(args, name), "--" + name.replace("_", "-"), low=1, integer=True)
    c_ps = parse_int_list(args.poisoned_concepts, name="--poisoned-concepts")
    if max(c_ps) > args.n_concepts:
        raise InputError(f"--poisoned-concepts {max(c_ps)} exceeds --n-concepts {args.n_concepts}")
    channels = tuple(parse_int_list(args.unet_channels, name="--unet-channels")) if args.unet_channels else None
    if dry_run(args, "python -m simulate.predict --calibration", {"calibration": args.calibration,
                                                                   "scenario": args.scenario, "C_P": c_ps}):
        return 0
    probes = load_probes(args.calibration)
    fitted = fit(load_calibration(args.calibration), probes, args.form)
    probe = choose_probe(probes, args.scenario, args.lora_rank, channels, args.data_set, args.probe)
    records = predictions(fitted, probe, args.scenario, args.n_concepts, args.benign_per_concept,
                          args.poison_per_concept, c_ps)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        setting = {k: v for k, v in vars(args).items() if k not in ("json", "out", "dry_run")}
        setting.update(unet_channels=list(channels) if channels else None, poisoned_concepts=c_ps,
                       calibration=str(args.calibration))
        doc = {"tool": "simulate.predict --calibration", "setting": setting,
               "predictions": records, "form": fitted.form, "coefficients": fitted.coef.tolist(), "eta": fitted.eta,
               "gauges": fitted.gauges, "calibration_runs": fitted.n,
               "loo_errors": fitted.loo_errors.tolist(), "date": utc_now(), "git_commit": git_commit(),
               "command": command_line()}
        atomic_write_text(args.out / "prediction.json", json.dumps(doc, indent=1, default=str) + "\n")
    for r in records:
        if args.json:
            print(json.dumps(r, sort_keys=True))
        else:
            print(f"C_P {r['c_p']:>4}  V {r['volume']:5.2f}  unpoisoned acc {r['unpoisoned_acc']:.3f} "
                  f"[{r['low']:.3f}, {r['high']:.3f}]  (probe {r['probe']}: learnability {r['learnability']:.3f}, "
                  f"competence {r['competence']:.3f}; constant {r['baseline_constant']:.3f}, V alone "
                  f"{r['baseline_v_alone']:.3f})")
    return 0
