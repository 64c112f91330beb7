"""The learnability predictor's calibration folder, shared by its writers (``empirical.probe``,
``empirical.calibration_table``) and its reader (``simulate.learnability``):

- ``probes/<name>/probe.json`` — one probe of one model (its setting, data set, learnability and competence);
- ``calibration.csv`` — the measured runs the predictor is fitted on, one row per run (:data:`CALIBRATION_COLUMNS`),
  each naming the probe of its model.
"""

from __future__ import annotations

PROBES = "probes"
PROBE_FILE = "probe.json"
CALIBRATION_FILE = "calibration.csv"
CALIBRATION_COLUMNS: tuple[str, ...] = ("folder", "probe", "scenario", "data_set", "seed", "base_seed", "c_p", "p",
                                        "m", "k", "volume", "unpoisoned_acc", "control_acc", "attack_success")
