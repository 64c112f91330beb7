"""The output layout of an experiment folder: its tables' columns, each point's file stem, and the setting that
every row of one folder must share (docs/design.md, "An empirical run").

``OUT/results.csv`` (one row per point: :data:`COLUMNS`, the last two naming the data set it used,
:mod:`empirical.data_set`; a row marks its point done), ``attention.csv``
(:data:`ATTENTION_COLUMNS`), ``per_concept.csv`` (:data:`PER_CONCEPT_COLUMNS`), ``attention_track.csv``
(:data:`TRACK_COLUMNS`), ``manifest.json`` (the setting, the command, versions, timings), ``plans/``, ``grids/``,
``points/<tag>*`` and ``checkpoints/<tag>/`` with ``tag`` = :func:`point_tag`. ``paper_figures`` reads folders
through these names, never retyping them.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any, Iterator

from empirical.attention import STATISTICS
from empirical.data_set import DATA_SET_COLUMNS
from empirical.evaluate import LATER_MEASURES, MEASURES
from empirical.presets import Preset

KINDS: tuple[str, ...] = ("poisoned", "control")
#: The columns that identify a point (one row in results.csv, several in attention.csv).
POINT_KEY: tuple[str, ...] = ("seed", "scenario", "c_p", "kind", "poison_type", "poison_per_concept", "targets",
                              "steps")
COLUMNS: tuple[str, ...] = (*POINT_KEY, "n_concepts", "n_unpoisoned", *MEASURES, "poison_latent_ratio", "poison_linf",
                            "poison_psnr", "detect_ap", "detect_p_at_k", "detect_base_rate", "train_s", "eval_s",
                            *DATA_SET_COLUMNS)
POISON_REPORT: tuple[str, ...] = ("poison_latent_ratio", "poison_linf", "poison_psnr")
DETECTION: tuple[str, ...] = ("detect_ap", "detect_p_at_k", "detect_base_rate")


def fill_old_row(row: dict[str, str]) -> dict[str, str]:
    """Values of columns added later, for rows written before them (dirty-label was then the only poison)."""
    poisoned = row.get("kind") == "poisoned" and row.get("c_p") != "0"
    return {"poison_type": "dirty" if poisoned else "none",
            **{k: "nan" for k in (*POISON_REPORT, *DETECTION, *LATER_MEASURES)}}


TRACK_COLUMNS: tuple[str, ...] = ("seed", "scenario", "c_p", "kind", "poison_type", "poison_per_concept", "targets",
                                  "step", "concept", "poisoned", "read_right", "prob_right",
                                  *(f"attn_{k}" for k in STATISTICS))


PER_CONCEPT_COLUMNS: tuple[str, ...] = (*POINT_KEY, "concept", "poisoned", "acc", "prob", "read_as",
                                        *(f"attn_{k}" for k in STATISTICS))
ATTENTION_COLUMNS: tuple[str, ...] = (*POINT_KEY, "group", "n_prompts", *(f"attn_{k}" for k in STATISTICS))


def point_tag(scenario: str, seed: int | str, c_p: int | str, kind: str, poison_type: str = "dirty",
              targets: str = "poisoned") -> str:
    """The file stem of one point's grids, tables and checkpoints: ``<scenario>-s<seed>-cp<C_P>-<kind>``, then
    ``-<poison type>`` (``-nightshade``) and ``-targets-<mode>`` when they are not the defaults (so points of one folder never share
    files, and folders written before the suffixes keep their names). ``paper_figures`` finds the files by it."""
    tag = f"{scenario}-s{seed}-cp{c_p}-{kind}"
    if poison_type not in ("dirty", "none"):  # e.g. -nightshade: any registered kind but the first
        tag += f"-{poison_type}"
    if targets != "poisoned" and str(c_p) != "0":  # the clean point is the same for every target mode
        tag += f"-targets-{targets}"
    return tag


def cell(v) -> str:
    """A table cell: floats at full precision (shortest repr that reads back exactly)."""
    return str(float(v)) if isinstance(v, float) else str(v)


def short(v) -> str:
    """A measure as printed: a fraction or distance at four decimals (a results.csv cell holds 17 digits; the
    judge's readings of a few hundred images carry three), whole numbers and words as they are."""
    if isinstance(v, str):
        text = v.strip()
        if text.lstrip("+-").isdigit():
            return text
        try:
            v = float(text)
        except ValueError:
            return v
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def setting_of(preset: Preset, scenario: str, base_seed: int, pretrained: str | None = None,
               judge: str | None = None, benign: int | None = None, train_data: str | None = None,
               control: str = "own") -> dict:
    """What every row of one output folder must share: the preset except the poisoned-phase length (a column of
    results.csv), the scenario, for continuous and lora the base model's seed, and the ``pretrained`` base model's
    content key (``--pretrained``), a CLIP judge's key (``--judge``) and the clean pairs per concept of the mix
    (``--benign-per-concept``), a user's data (``--train-data-dir``: its content key) and a control other than
    the default (``--control matched``); each absent when not given, so folders written before the options stay
    valid."""
    d = json.loads(json.dumps(asdict(preset)))
    for phase in ("continued", "scratch"):
        d[phase].pop("steps")
    d.pop("validation_images")  # what is watched during training, not what is trained or measured
    d["scenario"] = scenario
    d["base_seed"] = base_seed if scenario in ("continuous", "lora") else None
    if pretrained is not None:
        d["pretrained"] = pretrained
    if judge is not None:
        d["judge_model"] = judge
    if benign is not None:
        d["benign_per_concept"] = benign
    if train_data is not None:
        d["train_data"] = train_data
    if control != "own":
        d["control"] = control
    return d


#: Setting keys whose absence means "not given": a folder written without one differs from a run that gives it
#: (other keys a folder lacks were added to the presets later and do not count).
OPTIONAL_SETTING_KEYS = ("pretrained", "judge_model", "benign_per_concept", "train_data", "control")
#: Setting keys written once the run has read its data (the data set it *used*, :mod:`empirical.data_set`): a
#: setting that lacks one has not read its data yet (a command being claimed, a preset's own setting) and does not
#: differ there; :func:`empirical.data_set.check_same_data_set` compares them once the data are read.
USED_SETTING_KEYS = ("data_set",)


def differences(old: dict, new: dict, prefix: str = "") -> Iterator[tuple[str, Any, Any]]:
    """Every key (dotted, in sorted order) where two settings differ, with its old and new values. Keys the old
    setting lacks were added to the presets by a later version and do not count (old folders stay resumable); a
    used-data key (:data:`USED_SETTING_KEYS`) counts only when both settings have it."""
    for k in sorted(set(old) | set(new)):
        if k not in old and not (not prefix and k in OPTIONAL_SETTING_KEYS):
            continue
        if not prefix and k in USED_SETTING_KEYS and (k not in old or k not in new):
            continue
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            if a != b:
                yield from differences(a, b, f"{prefix}{k}.")
        elif a != b:
            yield f"{prefix}{k}", a, b


def first_difference(old: dict, new: dict, prefix: str = "") -> tuple[str, Any, Any] | None:
    """The first of :func:`differences` (None if the settings agree)."""
    return next(differences(old, new, prefix), None)


def setting_difference(old: dict, new: dict) -> str:
    """``first_difference`` as 'key: old -> new' ('none' if the settings agree)."""
    found = first_difference(old, new)
    return "none" if found is None else f"{found[0]}: {found[1]} -> {found[2]}"
