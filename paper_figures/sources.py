"""Where each figure's numbers come from, and what runs when they are missing.

A :class:`Sources` answers three questions for the figure builders:

- ``sim(name)`` — a simulator table (``ad_regimes``, ``single_concept``, ``implosion_regimes``, ``phase``,
  ``ad_volume``) as written by
  ``python -m simulate.experiments all --out RESULTS/experiments``;
- ``empirical()`` — every empirical run found under RESULTS (each ``*/results.csv`` with its manifest, plus the
  cross-attention tables, saved attention maps and the detector's precision–recall curves of
  ``python -m empirical.defence``), as one :class:`Empirical`;
- ``notes`` — per figure, which data were used and what command gives the full version.

With ``quick`` (``python -m paper_figures all --quick``) nothing is read from RESULTS: the smallest commands are run
in-process into ``OUT/_data`` (a 200-concept universe with C_P up to 100 for the simulator, the ``micro`` preset
with 8 concepts for the empirical harness) so the whole set builds in a few minutes; their numbers only show that
the pipeline works. Quick data are kept in ``OUT/_data`` and reused. Without ``quick`` nothing is ever substituted:
a simulator table RESULTS lacks is a :class:`MissingSource` (the figure is not built, and the command that makes
its data is named), and the empirical figures say which runs they miss.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from implosion_base.records import read_csv_rows


class MissingSource(Exception):
    """A figure's data are not in RESULTS (and ``--quick`` was not asked for): the message names the command."""


SIM_TABLES = ("ad_regimes", "single_concept", "implosion_regimes", "phase", "ad_volume")
SIM_COMMAND = "python -m simulate.experiments all --out results/experiments"
PRESET_RANK = ("gpu", "cpu", "smoke", "micro")
EMP_COMMANDS = {
    "continuous": "python -m empirical.run --preset cpu --scenario continuous --poisoned-concepts 0,25,50,100 "
                  "--seeds 0,1,2 --out results/emp-cpu",
    "scratch": "python -m empirical.run --preset cpu --scenario scratch --poisoned-concepts 0,100 --seeds 0,1,2 "
               "--out results/emp-cpu-scratch",
    "lora": "python -m empirical.run --preset cpu --scenario lora --poisoned-concepts 0,25,50,100 "
            "--out results/emp-cpu-lora",
    "p": "python -m empirical.run --preset cpu --poisoned-concepts 25 --poison-per-concept P [--poison-type "
         "nightshade] --no-control --out results/emp-cpu-pP",
    "defence": "python -m empirical.defence --preset cpu --poisoned-concepts 25,50,100 --poison-type "
               "dirty,nightshade --out results/defence-cpu",
}
# quick empirical data: micro preset, the paper's eight concepts. The plan order poisons red apple -> top hat and
# top hat first, then fish -> bicycle and bicycle; turtle, spiral shell, balloon and bird come last.
QUICK_EMP: tuple[tuple[str, list[str]], ...] = (
    ("continuous", ["--scenario", "continuous", "--poisoned-concepts", "0,2,4", "--seeds", "0"]),
    ("scratch", ["--scenario", "scratch", "--poisoned-concepts", "0,4", "--no-control", "--seeds", "0"]),
    ("lora", ["--scenario", "lora", "--poisoned-concepts", "0,4", "--no-control", "--seeds", "0"]),
    ("p1", ["--poisoned-concepts", "2", "--poison-per-concept", "1", "--no-control"]),
    ("p2", ["--poisoned-concepts", "2", "--poison-per-concept", "2", "--no-control"]),
    ("ns-p2", ["--poisoned-concepts", "2", "--poison-per-concept", "2", "--poison-type", "nightshade",
               "--no-control"]),
    ("ns-p4", ["--poisoned-concepts", "2", "--poison-per-concept", "4", "--poison-type", "nightshade",
               "--no-control"]),
)
QUICK_DEFENCE = ["--poisoned-concepts", "2,4", "--poison-type", "dirty,nightshade"]


def numeric(rows: list[dict[str, str]]) -> list[dict[str, Any]]:
    """Rows with every value that reads as a number turned into one (labels stay strings)."""
    out = []
    for r in rows:
        row: dict[str, Any] = {}
        for k, v in r.items():
            try:
                row[k] = float(v)
            except (TypeError, ValueError):
                row[k] = v
        out.append(row)
    return out


def read_csv(path: Path) -> list[dict[str, str]]:
    """A CSV's rows, old column spellings renamed (:func:`implosion_base.records.read_csv_rows`)."""
    return read_csv_rows(path)


def num(value: Any) -> float:
    """A table cell as a float (nan for empty or non-numeric cells)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


@dataclass
class Empirical:
    """Every empirical run found: result rows (each with ``folder``, ``preset``, ``variant``), attention rows,
    detector rows and the folders they came from. ``variant`` is "" for a preset's own setting, else how it
    differs: its fonts (the data set) when they differ, then every other setting key that differs (e.g.
    ``unet.channels: [64, 128] -> [32, 64]``); ``model_variant`` is that second part alone, ``variant_keys`` its
    keys (comma-separated) and ``first_variant`` the fonts and the first key alone (what a registered simulator
    prediction's ``--real-variant`` names)."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    attention: list[dict[str, Any]] = field(default_factory=list)
    detection: list[dict[str, Any]] = field(default_factory=list)
    folders: list[Path] = field(default_factory=list)
    quick: bool = False
    skipped: list[str] = field(default_factory=list)  # folders with a results.csv that could not be read, and why

    @property
    def concepts(self) -> int:
        """The largest number of concepts among the chosen preset's own-setting runs (the headline universe)."""
        return max((int(r["n_concepts"]) for r in self.rows if r["preset"] == self.preset and not r["variant"]),
                   default=0)

    @property
    def preset(self) -> str | None:
        """The largest preset with rows (gpu > cpu > smoke > micro)."""
        have = {r["preset"] for r in self.rows}
        return next((p for p in PRESET_RANK if p in have), None)

    def default_p(self) -> int:
        from empirical.presets import get_preset

        return get_preset(self.preset).poison_per_concept if self.preset else 0

    def main(self, scenario: str, *, kinds: tuple[str, ...] = ("poisoned", "control")) -> list[dict[str, Any]]:
        """Rows of the headline experiment of ``scenario``: the chosen preset's own setting, its default steps and
        p, targets among the poisoned concepts, dirty-label poisons (and the clean points and controls)."""
        from empirical.presets import get_preset

        if self.preset is None:
            return []
        pre = get_preset(self.preset)
        steps = (pre.scratch if scenario == "scratch" else pre.continued).steps
        return [r for r in self.rows if self._own(r) and
                r["scenario"] == scenario and r["targets"] == "poisoned" and int(r["steps"]) == steps and
                int(r["poison_per_concept"]) == pre.poison_per_concept and r["kind"] in kinds and
                r["poison_type"] in ("dirty", "none")]

    def _own(self, r: dict[str, Any]) -> bool:
        """A row of the chosen preset's own setting and headline universe."""
        return r["preset"] == self.preset and r["variant"] == "" and int(r["n_concepts"]) == self.concepts

    def by_p(self, scenario: str = "continuous") -> list[dict[str, Any]]:
        """Poisoned rows of the preset's own setting with C_P > 0, any p and poison type (Conjecture 4.1)."""
        from empirical.presets import get_preset

        if self.preset is None:
            return []
        steps = get_preset(self.preset).continued.steps
        return [r for r in self.rows if self._own(r) and
                r["scenario"] == scenario and r["targets"] == "poisoned" and int(r["steps"]) == steps and
                r["kind"] == "poisoned" and int(r["c_p"]) > 0]

    def attention_main(self, scenario: str) -> list[dict[str, Any]]:
        keys = {(r["folder"], r["seed"], r["c_p"], r["kind"]) for r in self.main(scenario)}
        return [a for a in self.attention if (a["folder"], a["seed"], a["c_p"], a["kind"]) in keys
                and a.get("poison_type", "dirty") in ("dirty", "none")]


def shown_seed_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows the image figures draw from a set of result rows: kind ``poisoned`` (C_P = 0 is the clean model)
    of the lowest seed among them (the figures show one seed, the lowest); [] when there are none."""
    rows = [r for r in rows if r.get("kind") == "poisoned"]
    if not rows:
        return []
    low = min(int(r["seed"]) for r in rows)
    return [r for r in rows if int(r["seed"]) == low]


def point_files(row: dict[str, Any]) -> tuple[Path, Path]:
    """The (json, attention npz) files a result row's point wrote."""
    from empirical.layout import point_tag

    tag = point_tag(row["scenario"], row["seed"], row["c_p"], row["kind"], row.get("poison_type", "dirty"),
                    row.get("targets", "poisoned"))
    base = Path(row["folder"]) / "points"
    if not (base / f"{tag}.json").is_file():  # written before the target mode was part of the name
        tag = point_tag(row["scenario"], row["seed"], row["c_p"], row["kind"], row.get("poison_type", "dirty"))
    return base / f"{tag}.json", base / f"{tag}-attention.npz"


@dataclass
class PointImages:
    """The saved grid of one point: images (N, H, W, 3) uint8, concept-token maps (N, H, W), concept per image,
    and the concepts that point poisoned."""

    images: np.ndarray
    maps: np.ndarray
    concepts: np.ndarray
    poisoned: list[str]

    def of(self, concept: str) -> tuple[np.ndarray, np.ndarray]:
        m = self.concepts == concept
        return self.images[m], self.maps[m].astype(np.float32)


def load_point(row: dict[str, Any]) -> PointImages | None:
    """The saved images and maps of a result row (None when the run predates saved maps)."""
    js, npz = point_files(row)
    if not (js.is_file() and npz.is_file()):
        return None
    with np.load(npz, allow_pickle=False) as z:
        images, maps, concepts = z["images"], z["maps"], z["concepts"]
    return PointImages(images, maps, concepts, json.loads(js.read_text(encoding="utf-8"))["poisoned"])


def load_plan_targets(row: dict[str, Any]) -> dict[str, str]:
    """concept -> target of the row's seed (from the folder's saved plan)."""
    path = Path(row["folder"]) / "plans" / f"plan-seed{row['seed']}-{row['targets']}.json"
    if not path.is_file():
        return {}
    return {p["concept"]: p["target"] for p in json.loads(path.read_text(encoding="utf-8"))["pairs"]}


@dataclass
class Sources:
    """Figure data: from ``results`` (or, with ``quick``, only from small runs into ``data``); see the module
    docstring."""

    results: Path
    data: Path
    quick: bool = False
    verbose: bool = True
    _sim: dict[str, tuple[list[dict[str, str]], str]] = field(default_factory=dict)
    _emp: Empirical | None = None

    def say(self, text: str) -> None:
        if self.verbose:
            print(text, flush=True)

    # ------------------------------------------------------------------------------------------- simulator
    def sim(self, name: str) -> tuple[list[dict[str, str]], str]:
        """(rows, provenance) of simulator table ``name``; builds the quick version when needed."""
        if name not in SIM_TABLES:
            raise KeyError(name)
        if name in self._sim:
            return self._sim[name]
        full = self.results / "experiments" / f"{name}.csv"
        if not self.quick:
            if not full.is_file():
                raise MissingSource(f"{full} is missing: run `python -m simulate.experiments all --out "
                                    f"{self.results / 'experiments'}`, or use --quick for throwaway data")
            self._sim[name] = (read_csv(full), f"{full} ({SIM_COMMAND})")
            return self._sim[name]
        path = self.data / "sim" / f"{name}.csv"
        if not path.is_file():
            self._build_sim(name, path.parent)
        self._sim[name] = (read_csv(path), f"quick build: a 200-concept universe, C_P ≤ 100, one seed (for the "
                                            f"paper-size data run `{SIM_COMMAND}`)")
        return self._sim[name]

    def _build_sim(self, name: str, out: Path) -> None:
        from simulate.experiments import (
            Scale,
            experiment_ad,
            experiment_ad_volume,
            experiment_implosion,
            experiment_phase,
            experiment_single,
        )
        from simulate.ad_volume import configurations
        from simulate.phase import PhaseGrid

        out.mkdir(parents=True, exist_ok=True)
        scale = Scale(universe=200, max_cp=100)
        self.say(f"  building quick simulator data: {name}")
        with contextlib.redirect_stdout(io.StringIO()):
            if name == "ad_regimes":
                experiment_ad(out, seeds=(0,), step=20, scale=scale)
            elif name == "single_concept":
                experiment_single(out, seeds=(0,), trials=8, poison_counts=(0, 5, 10, 20, 50), scale=scale)
            elif name == "phase":
                experiment_phase(out, PhaseGrid(n_concepts=(100, 200), dims=(16, 64), dominance=(1.0, 5.0, 20.0),
                                                volumes=(0.5, 1.0, 2.0, 4.0, 8.0), budgets=(0.5, 2.0),
                                                budget_concepts=100, budget_dim=16, seeds=(0,)))
            elif name == "ad_volume":
                experiment_ad_volume(out, seeds=(0, 1), volumes=(1.0, 2.0, 4.0),
                                     configs=configurations(k=200, m=5, p=50, dim=32))
            else:
                experiment_implosion(out, seeds=(0,), step=25, scale=scale, solvers=("ridge",), knobs=("capacity (d)",))

    # ------------------------------------------------------------------------------------------- empirical
    def empirical(self) -> Empirical:
        """All empirical runs under RESULTS (none: an empty :class:`Empirical`, whose figures name the missing
        runs), or with ``quick`` the small runs built into ``data``."""
        if self._emp is not None:
            return self._emp
        emp = Empirical()
        if not self.quick:
            emp = collect(sorted(p.parent for p in self.results.glob("*/results.csv")),
                          sorted(p.parent for p in self.results.glob("*/detection.csv")))
            for why in emp.skipped:
                print(f"paper_figures: skipped results folder {why}", file=sys.stderr)
        if self.quick:
            self._build_empirical()
            base = self.data / "emp"
            emp = collect(sorted(p.parent for p in base.glob("*/results.csv")), [base / "defence"])
            emp.quick = True
        self._emp = emp
        return emp

    def _build_empirical(self) -> None:
        from empirical.defence import main as defence_main
        from empirical.run import main as run_main

        base = self.data / "emp"
        common = ["--preset", "micro", "--concepts", "8", "--cache", str(self.data / "cache"), "--quiet"]
        for name, args in QUICK_EMP:
            if (base / name / "results.csv").is_file() and _finished(base / name):
                continue
            self.say(f"  building quick empirical data: {name}")
            with contextlib.redirect_stdout(io.StringIO()):
                run_main(common + args + ["--out", str(base / name)])
        if not (base / "defence" / "detection.csv").is_file():
            self.say("  building quick detector data")
            with contextlib.redirect_stdout(io.StringIO()):
                defence_main(["--preset", "micro", "--cache", str(self.data / "cache"), *QUICK_DEFENCE,
                              "--out", str(base / "defence")])


def _finished(folder: Path) -> bool:
    path = folder / "manifest.json"
    try:
        return bool(json.loads(path.read_text(encoding="utf-8")).get("finished"))
    except (OSError, ValueError):
        return False


def collect(folders: list[Path], defence: list[Path]) -> Empirical:
    """Read result, attention and detector tables; tag each row with its folder, preset and setting variant."""
    from empirical.presets import get_preset
    from empirical.report import read_rows
    from empirical.layout import differences, setting_of
    from implosion_base.errors import InputError

    emp = Empirical()
    for folder in folders:
        try:
            manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
            setting = manifest["setting"]
            preset = get_preset(setting["name"])
        except (OSError, ValueError, KeyError, TypeError, InputError) as exc:
            # not an empirical.run folder, or one from an unknown preset: not a figure source, said so
            emp.skipped.append(f"{folder}: {type(exc).__name__}: {exc}")
            continue
        scenario = setting.get("scenario", manifest.get("scenario"))
        base_seed = setting.get("base_seed")
        own = setting_of(preset, scenario, 0 if base_seed is None else base_seed)
        # the number of concepts is a column of its own (n_concepts); everything else must be the preset's
        own["render"]["concepts"] = setting.get("render", {}).get("concepts", own["render"]["concepts"])
        # the fonts (the data set) are always named when they differ, and the model's differences after them
        # (a one-font LoRA rank 32 is neither the two-font rank 32 nor the one-font rank 8)
        fonts = setting.get("render", {}).get("fonts", own["render"]["fonts"])
        data = "" if fonts == own["render"]["fonts"] else f"render.fonts: {own['render']['fonts']} -> {fonts}"
        own["render"]["fonts"] = fonts
        # every other difference (a small UNet at m = 20 is neither the small UNet nor the full UNet at m = 20); the
        # folder's setting first: keys added later do not count
        diffs = list(differences(setting, own))
        named = [f"{key}: {preset_value} -> {value}" for key, value, preset_value in diffs]
        model = ", ".join(named)
        variant = ", ".join(v for v in (data, model) if v)
        # what a registered simulator prediction names (``--real-variant``: one difference, matched as registered)
        first_variant = ", ".join(v for v in (data, named[0] if named else "") if v)
        benign = setting.get("benign_per_concept") or setting.get("render", {}).get("per_concept")
        for r in read_rows([folder]):
            r.update(folder=str(folder), preset=preset.name, variant=variant, model_variant=model,
                     first_variant=first_variant, variant_keys=",".join(d[0] for d in diffs),
                     benign_per_concept=str(benign), base_seed=str(base_seed))
            emp.rows.append(r)
        for a in read_rows([folder], "attention.csv", required=False):
            a.update(folder=str(folder), preset=preset.name, variant=variant)
            emp.attention.append(a)
        emp.folders.append(folder)
    for folder in defence:
        path = folder / "detection.csv"
        if not path.is_file():
            continue
        for r in read_csv(path):
            pr = folder / f"pr-{r['poison_type']}-cp{r['c_p']}-s{r['seed']}.csv"
            r.update(folder=str(folder), pr=str(pr) if pr.is_file() else "")
            emp.detection.append(r)
        emp.folders.append(folder)
    return emp
