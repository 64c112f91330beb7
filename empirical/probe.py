"""``python -m empirical.probe --out DIR [model options]``: how well a model *learns* remappings, measured cheaply.

The learnability probe is one short poisoned point of ``python -m empirical.run`` at a fixed, small poison volume —
C_P = 2K/15 concepts, p = 3m dirty-label pairs each (targets among the poisoned concepts; V = 0.4), 200 optimiser
steps, seed 0, no control (:data:`PROBE`) — with the model options of ``empirical.run`` (``--preset``, ``--scenario
continuous|lora``, ``--lora-rank``, ``--unet-channels``, ``--fonts``, ``--base-seed``, ``--benign-per-concept``,
``--pretrained`` ...). It writes the run folder ``DIR`` (as ``empirical.run`` would) and ``DIR/probe.json``:

- ``learnability`` λ — the probe's attack success: the share of the poisoned concepts' images that the judge reads
  as their targets after the short exposure (how much of the remapping the model took up);
- ``competence`` — the never-poisoned concepts' accuracy after the probe (at this volume, the model's clean
  accuracy to within the probe's small damage);
- ``loss_first`` / ``loss_last`` — the mean training loss of the first and last 20 % of the probe's steps;
- the setting, the data set (:mod:`empirical.data_set`), the command and the git commit.

``python -m simulate.predict --calibration DIR`` reads probes (:mod:`simulate.learnability`). The scratch scenario
has no model to probe before its run: its learnability is its UNet's (probe ``--scenario continuous`` with the same
UNet), which is what the predictor uses.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Sequence

from implosion_base.cli import run_main
from implosion_base.errors import InputError
from implosion_base.files import atomic_write_text

#: The probe's fixed point, the same for every model so that probes compare: C_P = 2K/15 concepts (20 of the cpu
#: preset's 150), p = 3m pairs each (120 at m = 40: per-concept dominance 3), so V = 0.4; 200 steps; seed 0.
PROBE = {"concept_share": 2 / 15, "dominance": 3, "steps": 200, "seed": 0}
#: empirical.run options a probe fixes itself (giving one is refused).
FIXED = ("--poisoned-concepts", "--poison-per-concept", "--steps", "--max-train-steps", "--seeds", "--seed",
         "--targets", "--poison-type", "--no-control", "--control")


def probe_point(k: int, m: int) -> tuple[int, int]:
    """(C_P, p) of the probe of a setting with K concepts and m clean pairs per concept."""
    return max(1, round(PROBE["concept_share"] * k)), PROBE["dominance"] * m


def probe_args(argv: Sequence[str]) -> list[str]:
    """The ``empirical.run`` command line of the probe of the model ``argv`` describes (InputError for an option
    the probe fixes, a missing ``--out``, or the scratch scenario)."""
    from empirical.options import parser
    from empirical.presets import get_preset

    argv = list(argv)
    given = [a.split("=")[0].replace("_", "-") for a in argv if a.startswith("--")]
    fixed = sorted(set(given) & set(FIXED))
    if fixed:
        raise InputError(f"a probe's point is fixed (C_P = 2K/15, p = 3m, {PROBE['steps']} steps, seed "
                         f"{PROBE['seed']}); drop {', '.join(fixed)}")
    if "--out" not in given:
        raise InputError("give --out DIR, the probe's folder")
    args = parser("probe").parse_args(argv)
    if args.scenario == "scratch":
        raise InputError("scratch has no model to probe before its run: probe --scenario continuous with the "
                         "same UNet (its learnability is the scratch scenario's)")
    render = get_preset(args.preset).render
    c_p, p = probe_point(args.concepts or render.concepts, args.benign_per_concept or render.per_concept)
    return [*argv, "--poisoned-concepts", str(c_p), "--poison-per-concept", str(p), "--steps", str(PROBE["steps"]),
            "--seeds", str(PROBE["seed"]), "--no-control"]


def summarise(out: Path) -> dict:
    """``probe.json``'s record (module docstring) from the probe's run folder."""
    with open(out / "results.csv", newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if r["c_p"] != "0" and r["kind"] == "poisoned"]
    if len(rows) != 1:
        raise InputError(f"{out} holds no finished probe point (or more than one); run the probe again")
    row = rows[0]
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    from empirical.layout import point_tag

    tag = point_tag(row["scenario"], row["seed"], row["c_p"], "poisoned", row["poison_type"], row["targets"])
    with open(out / "points" / f"{tag}-loss.csv", newline="", encoding="utf-8") as fh:
        loss = [float(r["loss"]) for r in csv.DictReader(fh)]
    fifth = max(1, len(loss) // 5)
    setting = manifest["setting"]
    return {"probe": {**PROBE, "c_p": int(row["c_p"]), "p": int(row["poison_per_concept"])},
            "scenario": row["scenario"], "preset": setting["name"],
            "lora_rank": setting["lora"]["rank"] if row["scenario"] == "lora" else None,
            "unet_channels": setting["unet"]["channels"], "base_seed": setting.get("base_seed"),
            "benign_per_concept": setting.get("benign_per_concept") or setting["render"]["per_concept"],
            "n_concepts": int(row["n_concepts"]), "data_set": row["data_set"], "data_set_id": row["data_set_id"],
            "learnability": float(row["attack_success"]), "competence": float(row["unpoisoned_acc"]),
            "poisoned_acc": float(row["poisoned_acc"]), "loss_first": sum(loss[:fifth]) / fifth,
            "loss_last": sum(loss[-fifth:]) / fifth, "train_s": float(row["train_s"]),
            "eval_s": float(row["eval_s"]), "command": manifest.get("command"),
            "git_commit": manifest.get("git_commit"), "setting": setting}


def _out(args: Sequence[str]) -> Path:
    """The ``--out`` folder of a command line (``--out DIR`` or ``--out=DIR``)."""
    for i, a in enumerate(args):
        if a.startswith("--out="):
            return Path(a.split("=", 1)[1])
        if a == "--out" and i + 1 < len(args):
            return Path(args[i + 1])
    raise InputError("give --out DIR, the probe's folder")


def main(argv: Sequence[str] | None = None) -> int:
    import sys

    from empirical.run import main as run

    argv = list(sys.argv[1:] if argv is None else argv)
    if "-h" in argv or "--help" in argv or "--version" in argv:  # the model options are empirical.run's; the point is the probe's
        from empirical.options import parser

        parser(__doc__.split("\n\n")[0] + " The probe's point is fixed (C_P = 2K/15, p = 3m, 200 steps, seed 0); these options choose the model.",
               prog="python -m empirical.probe").parse_args([a for a in argv if a in ("-h", "--help", "--version")][:1])
    args = probe_args(argv)
    if "--dry-run" in args:
        return run(args)
    status = run(args)
    out = _out(args)
    if status == 0:
        record = summarise(out)
        atomic_write_text(out / "probe.json", json.dumps(record, indent=1, sort_keys=True) + "\n")
        print(f"learnability {record['learnability']:.3f}  competence {record['competence']:.3f}  loss "
              f"{record['loss_first']:.4f} -> {record['loss_last']:.4f}  ({out / 'probe.json'})")
    return status


def cli() -> None:
    """The ``implosion-probe`` console script: :func:`main` behind the one-line error boundary."""
    run_main(main, prog="implosion-probe")


if __name__ == "__main__":
    run_main(main, prog="python -m empirical.probe")
