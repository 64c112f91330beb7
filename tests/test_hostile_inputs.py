"""Hostile inputs, one line each: every command answers bad input with one stderr line naming the problem and
exit 2 (never a traceback), and writes nothing. Adding a case is adding a row to ``CASES``.

Each row: (id, module, argument list with ``{tmp}`` for a scratch folder, a setup that writes hostile files into
it, the expected exit status, a phrase the error line must hold). Commands that would start real work are given
``--dry-run`` where the hostile part is checked before work starts.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest

ROOT = Path(__file__).resolve().parents[1]


from hostile_setups import *  # noqa: F401,F403 - the setups the tables name


SWEEP_ARGS = ["--poisoned-concepts", "0,1", "--n-concepts", "10", "--seeds", "0", "--dim", "8", "--quiet",
              "--no-plot", "--out", "{tmp}/out"]
PREDICT = ["--n-concepts", "10", "--benign-per-concept", "2", "--poison-per-concept", "4", "--poisoned-concepts",
           "1", "--dim", "8"]

# (id, module, args, setup, exit status, phrase in the one error line) — the defects of Reliability II
CASES_II: list[tuple[str, str, list[str], Callable[[Path], None], int, str]] = [
    # H4: a folder where the CSV goes is refused before any work, never removed
    ("H4-ad-scores-onto-folder", "theory.ad", ["{tmp}/ok.npz", "--scores", "{tmp}/old.csv"], _folder_with_file, 2,
     "is a folder"),
    # H2: a blocks/ folder the audit did not make is refused (exact mode too), never removed
    ("H2-audit-user-blocks", "dataset_audit", ["{tmp}/ok.npz", "--out", "{tmp}/rep", "--no-predict"],
     _audit_blocks_of_user, 2, "blocks"),
    # H3: export never replaces its source or a folder that is not an earlier export
    ("H3-export-into-own-parent", "paper_figures.export", ["{tmp}/results/run1", "--into", "{tmp}/results"],
     _export_source_inside, 2, "its source"),
    ("H3-export-onto-user-folder", "paper_figures.export", ["{tmp}/run1", "--into", "{tmp}/data"],
     _export_onto_user_folder, 2, "not an earlier export"),
    ("M5-export-onto-symlink", "paper_figures.export", ["{tmp}/run1", "--into", "{tmp}/data"], _export_onto_symlink,
     2, "symlink"),
    # H5: a defence folder of another setting, or with results and no manifest, is refused before any work
    ("H5-defence-other-setting", "empirical.defence", ["--preset", "micro", "--poison-type", "dirty",
                                                      "--poisoned-concepts", "2", "--out", "{tmp}/out",
                                                      "--cache", "{tmp}/c"], _defence_other_setting, 2,
     "another setting"),
    ("H5-defence-no-manifest", "empirical.defence", ["--preset", "micro", "--poison-type", "dirty",
                                                    "--poisoned-concepts", "2", "--out", "{tmp}/out",
                                                    "--cache", "{tmp}/c"], _defence_without_manifest, 2,
     "without a manifest"),
    # M1: integer options of any size
    ("M1-ad-seed", "theory.ad", ["{tmp}/ok.npz", "--sample", "10", "--seed", BIG], _pairs, 2, "--seed"),
    ("M1-sweep-workers", "simulate.sweep", ["--workers", BIG, "--dry-run"], _nothing, 2, "--workers"),
    ("M1-sweep-n-concepts", "simulate.sweep", ["--n-concepts", BIG, "--dry-run"], _nothing, 2, "--n-concepts"),
    ("M1-sweep-dim", "simulate.sweep", ["--dim", str(2**70), "--dry-run"], _nothing, 2, "--dim"),
    ("M1-audit-exact-max", "dataset_audit", ["{tmp}/ok.npz", "--out", "{tmp}/r", "--exact-max", BIG], _pairs, 2,
     "--exact-max"),
    ("M1-run-steps", "empirical.run", ["--preset", "micro", "--steps", BIG, "--dry-run"], _nothing, 2, "--steps"),
    ("M1-run-base-seed", "empirical.run", ["--preset", "micro", "--base-seed", str(2**40), "--dry-run"], _nothing,
     2, "--base-seed"),
    ("M1-predict-dim", "simulate.predict", [*PREDICT[:-1], BIG], _nothing, 2, "--dim"),
    # M2: an npz whose duplicate or shadowing member is what np.load reads
    ("M2-npz-member-twice", "theory.ad", ["{tmp}/twice.npz"], _npz_member_twice, 2, "stored twice"),
    ("M2-npz-shadow", "theory.ad", ["{tmp}/shadow.npz"], _npz_shadow, 2, "stored twice"),
    # M3/M4: sizes checked before any allocation
    ("M3-predict-dim", "simulate.predict", [*PREDICT[:-1], "1000000000"], _nothing, 2, "GiB"),
    ("M3-predict-n-concepts", "simulate.predict", ["--n-concepts", "3000000000", *PREDICT[2:]], _nothing, 2,
     "GiB"),
    ("M3-predict-p", "simulate.predict", [*PREDICT[:5], "1000000000000", *PREDICT[6:]], _nothing, 2, "GiB"),
    ("M3-audit-validate-sim", "dataset_audit", ["--validate", "sim:10000000000x2", "--out", "{tmp}/r"], _nothing,
     2, "sim:"),
    ("M4-ad-sample", "theory.ad", ["{tmp}/ok.npz", "--sample", str(10**18)], _pairs, 2, "--sample"),
    # M5: output paths checked before the work
    ("M5-ad-scores-under-file", "theory.ad", ["{tmp}/ok.npz", "--scores", "{tmp}/afile/s.csv"],
     lambda t: (_pairs(t), _file_not_folder(t)), 2, "not a folder"),
    ("M5-ad-scores-proc", "theory.ad", ["{tmp}/ok.npz", "--scores", "/proc/x.csv"], _pairs, 2, "not writable"),
    ("M5-report-csv-proc", "empirical.report", ["{tmp}/run", "--csv", "/proc/x.csv"], _report_folder, 2,
     "not writable"),
    ("M5-pretrained-proc", "empirical.pretrained", ["tiny", "/proc/m"], _nothing, 2, "not writable"),
    ("M5-tiny-clip-symlink", "empirical.pretrained", ["tiny-clip", "{tmp}/link"], _symlink_to_folder, 2,
     "symlink"),
    # M6/M12: damaged results tables and manifests
    ("M6-sweep-ff-byte", "simulate.sweep", SWEEP_ARGS, _sweep_ff, 2, "not UTF-8"),
    ("M6-sweep-long-field", "simulate.sweep", SWEEP_ARGS, _sweep_long_field, 2, "results"),
    ("M6-sweep-results-folder", "simulate.sweep", SWEEP_ARGS, _sweep_results_folder, 2, "folder"),
    ("M6-sweep-deep-manifest", "simulate.sweep", SWEEP_ARGS, _sweep_deep_manifest, 2, "nested too deeply"),
    ("M6-sweep-other-tool", "simulate.sweep", SWEEP_ARGS, _sweep_other_tool, 2, "columns"),
    ("M12-sweep-abc", "simulate.sweep", [*TINY_SWEEP, "--out", "{tmp}/out"], _sweep_abc, 2, "unpoisoned_acc"),
    ("M6-report-ff-byte", "empirical.report", ["{tmp}/run", "--no-plot"], _report_ff, 2, "not UTF-8"),
    ("M6-report-long-field", "empirical.report", ["{tmp}/run", "--no-plot"], _report_long_field, 2, "results.csv"),
    ("M6-report-other-tool", "empirical.report", ["{tmp}/run", "--no-plot"], _report_other_tool, 2,
     "not an empirical.run"),
    ("M6-report-results-folder", "empirical.report", ["{tmp}/run", "--no-plot"], _report_results_folder, 2,
     "does not exist"),
    ("M12-report-abc", "empirical.report", ["{tmp}/run", "--no-plot"], _report_abc, 2, "unpoisoned_acc"),
    # M9/M10: damaged judge and base-model folders refused at the start (with --dry-run: before any work)
    ("M9-clip-config-list", "empirical.run", ["--preset", "micro", "--judge", "{tmp}/clip", "--dry-run"],
     _clip_config_list, 2, "not a CLIP model folder"),
    ("M9-clip-truncated", "empirical.run", ["--preset", "micro", "--judge", "{tmp}/clip", "--dry-run"],
     _clip_truncated, 2, "cannot load CLIP"),
    ("M9-judge-json-list", "empirical.embed", ["{tmp}/imgs", "--judge", "{tmp}/judge", "--out", "{tmp}/e.npz",
                                              "--quiet"], _judge_list, 2, "no readable judge"),
    ("M9-judge-missing-fields", "empirical.embed", ["{tmp}/imgs", "--judge", "{tmp}/judge", "--out",
                                                   "{tmp}/e.npz", "--quiet"], _judge_missing_fields, 2,
     "no readable judge"),
    ("M9-judge-extra-fields", "empirical.embed", ["{tmp}/imgs", "--judge", "{tmp}/judge", "--out", "{tmp}/e.npz",
                                                 "--quiet"], _judge_extra_fields, 2, "no readable judge"),
    ("M10-sd-no-channels", "empirical.run", ["--preset", "micro", "--pretrained", "{tmp}/sd", "--dry-run"],
     _sd_no_channels, 2, "sd"),
    ("M10-sd-max-length", "empirical.run", ["--preset", "micro", "--pretrained", "{tmp}/sd", "--dry-run"],
     _sd_max_length, 2, "model_max_length"),
    ("M10-sd-no-timesteps", "empirical.run", ["--preset", "micro", "--pretrained", "{tmp}/sd", "--dry-run"],
     _sd_no_timesteps, 2, "num_train_timesteps"),
    ("L-sd-index-list", "empirical.run", ["--preset", "micro", "--pretrained", "{tmp}/sd", "--dry-run"],
     _sd_index_list, 2, "not a JSON object"),
    # M11: the audit's validation inputs
    ("M11-audit-seed", "dataset_audit", ["{tmp}/ok.npz", "--out", "{tmp}/r", "--seed", "-1"], _pairs, 2, "--seed"),
    ("M11-validate-2d-concepts", "dataset_audit", ["--validate", "{tmp}/clean.npz", "--out", "{tmp}/r",
                                                   "--poisoned-concepts", "1"], _concept_2d, 2, "concept"),
    ("M11-mix-poisoned-range", "dataset_audit", ["--validate-mix", "{tmp}/mix.npz", "--out", "{tmp}/r"],
     _mix_poisoned_out_of_range, 2, "poisoned"),
    ("M11-mix-negative-concepts", "dataset_audit", ["--validate-mix", "{tmp}/mix.npz", "--out", "{tmp}/r"],
     _mix_negative_concepts, 2, "outside"),
]

SLOW_II = {"M9-clip-truncated", "M10-sd-no-channels", "M10-sd-max-length", "M10-sd-no-timesteps",
           "L-sd-index-list", "H5-defence-other-setting", "H5-defence-no-manifest", "M12-sweep-abc"}


# (id, module, args, setup, exit status, phrase in the one error line)
CASES: list[tuple[str, str, list[str], Callable[[Path], None], int, str]] = [
    ("ad-missing", "theory.ad", ["{tmp}/nope.npz"], _nothing, 2, "no such file"),
    ("ad-npy-as-npz", "theory.ad", ["{tmp}/x.npz"], _npy_as_npz, 2, "x.npz"),
    ("ad-pickle", "theory.ad", ["{tmp}/pickled.npz"], _object_array, 2, "pickled.npz"),
    ("ad-bf16", "theory.ad", ["{tmp}/bf16.safetensors"], _bf16, 2, "BF16"),
    ("ad-zero-row", "theory.ad", ["{tmp}/zero.npz"], _zero_row, 2, "row 2"),
    ("ad-nan-row", "theory.ad", ["{tmp}/nan.npz"], _nan_row, 2, "NaN"),
    ("ad-bad-seed", "theory.ad", ["{tmp}/ok.npz", "--sample", "10", "--seed", "-1"], _pairs, 2, "--seed"),
    ("ad-device-nope", "theory.ad", ["{tmp}/ok.npz", "--backend", "torch", "--device", "nope"], _pairs, 2,
     "not a torch device"),
    ("ad-device-cuda", "theory.ad", ["{tmp}/ok.npz", "--backend", "torch", "--device", "cuda:9"], _pairs, 2,
     "CUDA"),
    ("ad-alpha-nan", "theory.ad", ["{tmp}/ok.npz", "--alpha", "nan"], _pairs, 2, "alpha"),
    ("ad-scores-folder", "theory.ad", ["{tmp}/ok.npz", "--scores", "{tmp}"], _pairs, 2, "*.csv"),
    ("sweep-ridge-inf", "simulate.sweep", ["--ridge-reg", "inf", "--dry-run"], _nothing, 2, "ridge"),
    ("sweep-spread-inf", "simulate.sweep", ["--text-spread", "inf", "--dry-run"], _nothing, 2, "text"),
    ("sweep-huge", "simulate.sweep", ["--poisoned-concepts", "0..1000000000", "--dry-run"], _nothing, 2,
     "more than 1,000,000 values"),
    ("sweep-huge-k", "simulate.sweep", ["--n-concepts", "2000000000", "--dry-run"], _nothing, 2, ""),
    ("sweep-seeds-word", "simulate.sweep", ["--seeds", "three", "--dry-run"], _nothing, 2, "--seeds"),
    ("sweep-empty-out", "simulate.sweep", ["--out", "", "--dry-run"], _nothing, 2, "empty"),
    ("sweep-out-file", "simulate.sweep", ["--poisoned-concepts", "0,1", "--n-concepts", "10", "--seeds", "1",
                                          "--out", "{tmp}/afile", "--quiet", "--no-plot"], _file_not_folder, 2,
     "not a folder"),
    ("sweep-dask-garbage", "simulate.sweep", ["--poisoned-concepts", "0,1", "--n-concepts", "10", "--seeds", "1",
                                              "--dask", "garbage://x", "--out", "{tmp}/o"], _nothing, 2, "Dask"),
    ("sweep-manifest-list", "simulate.sweep", ["--poisoned-concepts", "0,1", "--n-concepts", "10", "--seeds", "1",
                                               "--out", "{tmp}/out"], _damaged_manifest, 2, "manifest"),
    ("predict-dim-2", "simulate.predict", ["--n-concepts", "10", "--benign-per-concept", "2",
                                           "--poison-per-concept", "4", "--poisoned-concepts", "1", "--dim", "2"],
     _nothing, 2, "--dim"),
    ("predict-targets", "simulate.predict", ["--n-concepts", "10", "--benign-per-concept", "2",
                                             "--poison-per-concept", "4", "--poisoned-concepts", "1", "--dim", "8",
                                             "--targets", "closest"], _nothing, 2, "--targets"),
    ("experiments-workers-0", "simulate.experiments", ["phase", "--workers", "0"], _nothing, 2, "--workers"),
    ("run-threads-huge", "empirical.run", ["--preset", "micro", "--threads", "100000", "--dry-run"], _nothing, 2,
     "--threads"),
    ("run-empty-out", "empirical.run", ["--preset", "micro", "--out", ""], _nothing, 2, "empty"),
    ("run-device-nope", "empirical.run", ["--preset", "micro", "--device", "nope", "--dry-run"], _nothing, 2,
     "not a torch device"),
    ("run-preset", "empirical.run", ["--preset", "huge", "--dry-run"], _nothing, 2, "preset"),
    ("run-manifest-list", "empirical.run", ["--preset", "micro", "--poisoned-concepts", "0", "--out", "{tmp}/out",
                                            "--cache", "{tmp}/c"], _damaged_manifest, 2, "manifest"),
    ("run-own-data-missing", "empirical.run", ["--preset", "micro", "--train-data-dir", "{tmp}/nope",
                                               "--caption-template", "a {}", "--dry-run"], _nothing, 2,
     "does not exist"),
    ("embed-out-folder", "empirical.embed", ["--builtin", "--out", "{tmp}"], _nothing, 2, "--out"),
    ("embed-both", "empirical.embed", ["{tmp}", "--builtin", "--out", "{tmp}/e.npz"], _nothing, 2, "not both"),
    ("defence-type", "empirical.defence", ["--preset", "micro", "--poison-type", "acid", "--dry-run"], _nothing, 2,
     "poison type"),
    ("pretrained-on-file", "empirical.pretrained", ["tiny", "{tmp}/afile"], _file_not_folder, 2, "is a file"),
    ("pretrained-seed", "empirical.pretrained", ["tiny", "{tmp}/t", "--seed", "99999999999"], _nothing, 2,
     "--seed"),
    ("report-missing", "empirical.report", ["{tmp}/nothing"], _nothing, 2, "does not exist"),
    ("figures-unknown", "paper_figures", ["fig99", "--dry-run"], _nothing, 2, "unknown figure"),
    ("figures-results-file", "paper_figures", ["fig3", "--results", "{tmp}/afile", "--out", "{tmp}/o"],
     _file_not_folder, 2, "not a folder"),
]


def _case_params() -> list:
    """Every row of CASES and CASES_II; the slower setups (a model folder built, a tiny sweep run) marked slow."""
    rows = [pytest.param(c, id=c[0]) for c in CASES]
    rows += [pytest.param(c, id=c[0], marks=[pytest.mark.slow] if c[0] in SLOW_II else []) for c in CASES_II]
    return rows


@pytest.mark.parametrize("case", _case_params())
def test_hostile_input_is_one_line(case, tmp_path: Path):
    _, module, args, setup, status, phrase = case
    setup(tmp_path)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args]
    proc = subprocess.run([sys.executable, "-m", module, *argv], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == status, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and len(lines) == 1, proc.stderr[-2000:]
    assert phrase in lines[0], lines[0]
    after = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert after == before, f"{module} wrote {set(after) - set(before)}"
