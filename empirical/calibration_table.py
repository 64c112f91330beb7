"""``python -m empirical.calibration_table --runs DIR --calibration CAL``: the learnability predictor's calibration
runs, matched to the probes of their models.

For every probe ``CAL/probes/<name>/probe.json`` (``python -m empirical.probe``) it finds the ``empirical.run``
folders under ``--runs`` whose setting is the probed model's — the same preset, UNet, LoRA rank (lora) and data set
(:mod:`empirical.data_set`); any base seed and any number of clean pairs per concept m; a ``scratch`` folder matches
the ``continuous`` probe of its UNet — and writes ``CAL/calibration.csv`` (:data:`implosion_base.
calibration_files.CALIBRATION_COLUMNS`): one row per dirty-label poisoned run (and clean point) with targets among the poisoned
concepts, at the preset's poisoned-phase length, with its same-volume control's accuracy where the folder holds it.
Rows of folders given with ``--exclude NAME`` (held-out settings, say) are left out and the command says which.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Sequence

from implosion_base.calibration_files import CALIBRATION_COLUMNS, CALIBRATION_FILE, PROBE_FILE, PROBES
from implosion_base.cli import ArgumentParser, dry_run, path_arg, run_main
from implosion_base.errors import InputError
from implosion_base.files import atomic_write_text
from implosion_base.records import csv_text

#: Setting keys a calibration run may differ from its probe in (the rest must be equal; the data set is matched on
#: its own).
FREE_KEYS = ("base_seed", "benign_per_concept", "scenario", "nightshade", "lora", "data_set")


def model_of(setting: dict) -> dict:
    """The part of a folder's setting that names the probed model (:data:`FREE_KEYS` removed; LoRA's rank kept
    for lora)."""
    out = {k: v for k, v in setting.items() if k not in FREE_KEYS}
    scenario = setting.get("scenario")
    out["probed_as"] = "continuous" if scenario == "scratch" else scenario
    if scenario == "lora":
        out["lora_rank"] = setting.get("lora", {}).get("rank")
    for phase in ("continued", "scratch", "pretrain"):  # the training phases' own knobs are the model's
        out.pop(phase, None)
    return out


def calibration_rows(run: Path, probe_name: str, setting: dict) -> list[dict]:
    """The calibration rows of one run folder (module docstring)."""
    from empirical.presets import get_preset
    from empirical.report import read_rows

    pre = get_preset(setting["name"])
    scenario = setting["scenario"]
    steps = (pre.scratch if scenario == "scratch" else pre.continued).steps
    m = setting.get("benign_per_concept") or setting["render"]["per_concept"]
    rows = read_rows([run])
    controls = {(r["seed"], r["c_p"]): r for r in rows if r["kind"] == "control"}
    out = []
    for r in rows:
        if (r["kind"] != "poisoned" or r["targets"] != "poisoned" or r["poison_type"] not in ("dirty", "none")
                or int(r["steps"]) != steps):
            continue
        c, p, k = int(r["c_p"]), int(r["poison_per_concept"]), int(r["n_concepts"])
        ctrl = controls.get((r["seed"], r["c_p"]))
        out.append({"folder": run.name, "probe": probe_name, "scenario": scenario, "data_set": r["data_set"],
                    "seed": r["seed"], "base_seed": setting.get("base_seed"), "c_p": c, "p": p, "m": m, "k": k,
                    "volume": c * p / (k * m), "unpoisoned_acc": r["unpoisoned_acc"],
                    "control_acc": ctrl["unpoisoned_acc"] if ctrl else "nan", "attack_success": r["attack_success"]})
    return out


def build(runs: Path, calibration: Path, exclude: Sequence[str] = ()) -> tuple[list[dict], list[str]]:
    """All calibration rows and the names of the run folders that matched no probe."""
    from empirical.layout import first_difference

    probes = {}
    for path in sorted((calibration / PROBES).glob(f"*/{PROBE_FILE}")):
        record = json.loads(path.read_text(encoding="utf-8"))
        probes[path.parent.name] = (model_of(record["setting"]), record["data_set"])
    if not probes:
        raise InputError(f"{calibration / 'probes'} holds no probe.json (python -m empirical.probe --out ...)")
    rows, unmatched = [], []
    for manifest in sorted(runs.rglob("manifest.json")):
        folder = manifest.parent
        setting = json.loads(manifest.read_text(encoding="utf-8")).get("setting")
        if folder.name in exclude or not isinstance(setting, dict) or not (folder / "results.csv").is_file() \
                or calibration in folder.parents:
            continue
        model = model_of(setting)
        got = calibration_rows(folder, "", setting)
        data_set = got[0]["data_set"] if got else None
        # keys the run's (older) setting lacks were added to the presets later and do not count
        name = next((n for n, (mod, ds) in probes.items() if first_difference(model, mod) is None
                     and ds == data_set), None)
        if name is None:
            unmatched.append(folder.name)
            continue
        rows += [{**r, "probe": name} for r in got]
    return rows, unmatched


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m empirical.calibration_table", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=path_arg, required=True, help="folder holding empirical.run folders")
    parser.add_argument("--calibration", type=path_arg, required=True, help="calibration folder with probes/")
    parser.add_argument("--exclude", action="append", default=[], metavar="NAME",
                        help="a run folder's name to leave out (repeatable)")
    args = parser.parse_args(argv)
    for path, opt in ((args.runs, "--runs"), (args.calibration / "probes", "--calibration")):
        if not path.is_dir():
            raise InputError(f"{opt}: {path} is not a folder")
    if dry_run(args, "python -m empirical.calibration_table", {"runs": args.runs, "calibration": args.calibration,
                                                                "exclude": args.exclude or "none"}):
        return 0
    rows, unmatched = build(args.runs, args.calibration, args.exclude)
    if not rows:
        raise InputError(f"no run under {args.runs} matches a probe of {args.calibration}")
    atomic_write_text(args.calibration / CALIBRATION_FILE,
                      csv_text([{k: r[k] for k in CALIBRATION_COLUMNS} for r in rows]))
    print(f"{len(rows)} rows from {len({r['folder'] for r in rows})} folders -> {args.calibration / 'calibration.csv'}"
          f"; {len(unmatched)} folders match no probe ({', '.join(unmatched[:8])}"
          f"{' ...' if len(unmatched) > 8 else ''})", file=sys.stderr)
    return 0


def cli() -> None:
    """The ``implosion-calibration-table`` console script."""
    run_main(main, prog="implosion-calibration-table")


if __name__ == "__main__":
    run_main(main, prog="python -m empirical.calibration_table")
