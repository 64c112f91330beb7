"""``python -m empirical.report DIR [DIR ...]``: aggregate empirical results over seeds, correlate with AD, plot.

Reads ``results.csv`` from each folder, groups rows by (setting, scenario, targets, steps, p, C_P, kind, poison
type), and prints the mean and a 95% t-interval over seeds of each measure; then the **paired gap** poisoned −
control of every poisoned point whose same-volume control exists (each seed with its own control: mean ± 95% CI
of the per-seed differences and the paired t-test's two-sided p); then the cross-attention statistics
(``attention.csv``) of unpoisoned and poisoned concepts the same way; then Spearman ρ between the AD of the
training mix and each unpoisoned-concept measure over all rows (poisoned and controls alike; when ρ is undefined
the reason is said), and writes ``DIR/report.png`` (first folder): AD and unpoisoned-concept measures vs C_P,
poisoned runs against their controls. ``--csv FILE`` writes the aggregate with its gap columns, ``--json FILE``
the aggregate, the per-seed gaps and the correlations. :func:`load_results` reads a folder's table for analysis.

Folders whose manifests record the same setting (preset, UNet, base model) pool their seeds; each other setting is
labelled with the name of the first folder that holds it. Rows are grouped by the data set they used too
(:mod:`empirical.data_set`: ``emoji-openmoji+noto-150``, a user's data by its content key), and every table and
the plot's legend name it: results of two data sets never pool.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence

import numpy as np

from implosion_base.cli import ArgumentParser, dry_run, path_arg, run_main
from implosion_base.errors import InputError
from implosion_base.files import atomic_write_text, check_output_file
from empirical.data_set import DATA_SET_COLUMNS, row_fill
from empirical.evaluate import LATER_MEASURES
from implosion_base.records import csv_text, read_csv_rows, read_manifest
from theory.stats import mean_ci95
from theory.stats import spearman as stats_spearman

GROUP = ("setting", "data_set", "scenario", "targets", "steps", "poison_per_concept", "c_p", "kind", "poison_type")
ATTENTION = ("attn_concept_mass", "attn_concept_share", "attn_entropy", "attn_concentration")
SHOWN = ("ad", "d_fea", "d_stru", "unpoisoned_acc", "unpoisoned_prob", "unpoisoned_meaningless",
         "unpoisoned_off_render", "unpoisoned_no_standout", "unpoisoned_margin", "fd_unpoisoned", "kid_unpoisoned",
         "poisoned_acc", "attack_success", "unpoisoned_score")
#: The measures each run table must hold as numbers (a table not named here: its point keys only).
TABLE_MEASURES: dict[str, tuple[str, ...]] = {"results.csv": SHOWN, "attention.csv": ATTENTION}
UNPOISONED = ("unpoisoned_acc", "unpoisoned_prob", "fd_unpoisoned", "kid_unpoisoned", "unpoisoned_score")


def settings(folders: Sequence[Path]) -> dict[Path, str]:
    """A label per folder: folders with the same recorded setting share the first one's name."""
    seen: list[tuple[object, str]] = []
    out = {}
    for folder in folders:
        path = Path(folder) / "manifest.json"
        try:
            manifest = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
            setting = manifest.get("setting") if isinstance(manifest, dict) else None
        except (OSError, ValueError, RecursionError):
            setting = None
        label = next((lab for s, lab in seen if setting is not None and s == setting), None)
        if label is None:
            label = Path(folder).name
            seen.append((setting, label))
        out[Path(folder)] = label
    return out


def read_rows(folders: Sequence[Path], name: str = "results.csv", *, required: bool = True
              ) -> list[dict[str, str]]:
    """All rows of the folders' ``name`` tables, each with its folder's setting label and its data set
    (:func:`data_set_labels`; InputError if a folder has no results). Rows written before poison types existed read
    as dirty-label (clean points and controls: none)."""
    rows: list[dict[str, str]] = []
    labels = settings(folders)
    for folder in folders:
        recorded = row_fill(read_manifest(Path(folder) / "manifest.json"))({})
        path = Path(folder) / name
        if not path.is_file():
            if required:
                raise InputError(f"{path} does not exist (run python -m empirical.run --out {folder} first)")
            continue
        table = read_csv_rows(path)
        measures = TABLE_MEASURES.get(name, ())
        for r in table:  # measures added after the table was written read as NaN
            for k in LATER_MEASURES:
                if k in measures:
                    r.setdefault(k, "nan")
        if table:
            check_columns(path, table, name, measures)
        for line, r in enumerate(table, start=2):
            r["setting"] = labels[Path(folder)]
            for k in DATA_SET_COLUMNS:  # side tables and rows written before the columns: the folder's record
                r[k] = r.get(k) or recorded[k]
            if "poison_type" not in r:
                r["poison_type"] = "dirty" if r["kind"] == "poisoned" and r["c_p"] != "0" else "none"
            check_numbers(path, line, r, measures)
            rows.append(r)
    if required and not rows:
        raise InputError("no result rows in " + ", ".join(str(f) for f in folders))
    return data_set_labels(rows)


def data_set_labels(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """``rows`` with ``data_set`` a label that names one data set: the recorded label, followed by ``@`` and the
    identity when rows of one label hold two data sets (another concept list from the same source)."""
    ids: dict[str, set[str]] = {}
    for r in rows:
        ids.setdefault(r["data_set"], set()).add(r["data_set_id"])
    for r in rows:
        if len(ids[r["data_set"]]) > 1:
            r["data_set"] = f"{r['data_set']}@{r['data_set_id']}"
    return rows


def check_columns(path: Path, rows: list[dict[str, str]], name: str, measures: Sequence[str]) -> None:
    """``rows`` of ``path`` must be an ``empirical.run`` table (the point's keys and ``measures``): an InputError
    naming the missing columns otherwise (another tool's results.csv, a table cut by hand)."""
    need = {"seed", "c_p", "kind", *(k for k in GROUP if k not in ("setting", "data_set", "poison_type")), *measures}
    missing = sorted(need - set(rows[0]))
    if missing:
        raise InputError(f"{path} is not an empirical.run {name} (no column {', '.join(missing[:4])}"
                         f"{' ...' if len(missing) > 4 else ''})")


def check_numbers(path: Path, line: int, row: dict[str, str], measures: Sequence[str]) -> None:
    """Every measure of ``row`` a number and its C_P and seed whole numbers: an InputError naming the file, the
    line and the column otherwise (never a traceback, never a silent NaN)."""
    for key in ("c_p", "seed"):
        if not str(row[key]).strip().isdigit():
            raise InputError(f"{path} line {line}: {key} {row[key]!r} is not a whole number")
    for m in measures:
        try:
            float(row[m])
        except (TypeError, ValueError):
            raise InputError(f"{path} line {line}: {m} {str(row[m])[:40]!r} is not a number") from None


def mean_ci(values: Sequence[float]) -> tuple[float, float]:
    """Mean and the half-width of a 95% Student-t interval (0 for a single value): :func:`theory.stats.mean_ci95`."""
    return mean_ci95(values)


def aggregate(rows: list[dict[str, str]], group: Sequence[str] = GROUP, shown: Sequence[str] = SHOWN
              ) -> list[dict]:
    """One record per group: the group keys, ``n_seeds``, and (mean, ci) per measure in ``shown``."""
    groups: dict[tuple, list[dict[str, str]]] = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in group), []).append(r)
    c = list(group).index("c_p")
    out = []
    for key, rs in sorted(groups.items(), key=lambda kv: (kv[0][:c], int(kv[0][c]), kv[0][c + 1:])):
        rec = dict(zip(group, key))
        rec["n_seeds"] = len({r["seed"] for r in rs})
        for m in shown:
            rec[m] = mean_ci([float(r[m]) for r in rs])
        out.append(rec)
    return out


def spearman(rows: list[dict[str, str]], measure: str) -> tuple[float, int]:
    """Spearman ρ between ``ad`` and ``measure`` over rows where both are finite, and the number of rows."""
    rho, n, _ = spearman_why(rows, measure)
    return rho, n


def spearman_why(rows: list[dict[str, str]], measure: str) -> tuple[float, int, str]:
    """:func:`spearman` and, when ρ is NaN, why ("" otherwise) (:func:`theory.stats.spearman`)."""
    sel = [r for r in rows if measure in r]
    return stats_spearman([float(r["ad"]) for r in sel], [float(r[measure]) for r in sel], names=("AD", measure))


#: What identifies a poisoned point's same-volume control: everything but kind and poison type.
PAIRING = ("setting", "data_set", "scenario", "targets", "steps", "poison_per_concept", "c_p", "seed")


def paired_gaps(rows: list[dict[str, str]], measures: Sequence[str] = SHOWN,
                pairing: Sequence[str] = PAIRING) -> list[dict]:
    """Per poisoned row (C_P > 0) whose control exists — the control row agreeing on every key of ``pairing``
    (by default its folder setting, point and seed) — the group keys, the seed and poisoned − control of each
    measure (NaN where either is NaN or missing)."""
    controls = {tuple(r.get(k) for k in pairing): r for r in rows if r["kind"] == "control"}
    out = []
    for r in rows:
        c = controls.get(tuple(r.get(k) for k in pairing)) if r["kind"] == "poisoned" and r["c_p"] != "0" else None
        if c is None:
            continue
        rec = {k: r.get(k) for k in GROUP}
        rec["seed"] = r["seed"]
        for m in measures:
            rec[m] = _num(r.get(m)) - _num(c.get(m))
        out.append(rec)
    return out


def gap_summary(gaps: list[dict], measures: Sequence[str] = SHOWN) -> dict[tuple, dict[str, tuple]]:
    """Per group: (mean, 95% CI half-width, paired t-test two-sided p, seeds) of each measure's gap (p is NaN
    below two seeds or when every gap is equal)."""
    groups: dict[tuple, list[dict]] = {}
    for g in gaps:
        groups.setdefault(tuple(g[k] for k in GROUP), []).append(g)
    return {key: {m: gap_stats([g[m] for g in gs]) for m in measures} for key, gs in groups.items()}


def gap_stats(gaps: Sequence[float]) -> tuple[float, float, float, int]:
    """(mean, 95% CI half-width, two-sided one-sample t-test p against 0, n) of the finite paired gaps; p is NaN
    below two gaps or when every gap is equal."""
    from scipy import stats

    x = np.array([g for g in gaps if math.isfinite(g)], dtype=float)
    mean, ci = mean_ci(x)
    p = float(stats.ttest_1samp(x, 0.0).pvalue) if len(x) >= 2 and np.ptp(x) > 0 else float("nan")
    return mean, ci, p, len(x)


def _num(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


#: Columns of the run tables that hold whole numbers (read as ``int`` by :func:`load_results`).
WHOLE = ("seed", "c_p", "poison_per_concept", "steps", "n_concepts", "n_unpoisoned", "n_pairs", "n_prompts")
#: Columns that hold words.
WORDS = ("setting", "data_set", "data_set_id", "scenario", "kind", "poison_type", "targets", "concept", "group", "read_as")


def load_results(folder: Path | str, table: str = "results.csv") -> list[dict]:
    """The rows of one run folder's ``table`` (results.csv, attention.csv, per_concept.csv) as a list of dicts,
    whatever is installed: whole-number columns (:data:`WHOLE`) as ``int``, words as ``str``, every other value
    as ``float`` where it parses (``pandas.DataFrame(load_results(f))`` for a frame)."""
    rows = read_rows([Path(folder)], table)
    for r in rows:
        for k, v in r.items():
            if k in WORDS:
                continue
            try:
                r[k] = int(v) if k in WHOLE else float(v)
            except (TypeError, ValueError):
                pass
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m empirical.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", type=Path, help="output folders of python -m empirical.run")
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument("--csv", type=path_arg, default=None, metavar="FILE",
                        help="write the aggregate (mean and CI per measure, and the poisoned - control gaps)")
    parser.add_argument("--json", type=path_arg, default=None, metavar="FILE",
                        help="write the aggregate, the per-seed gaps and the AD correlations as JSON")
    args = parser.parse_args(argv)
    args.folders = unique_folders(args.folders)
    for opt, path in (("--csv", args.csv), ("--json", args.json)):
        if path is not None:
            check_output_file(path, name=opt)
    if not args.no_plot:
        check_output_file(args.folders[0] / "report.png", name="the plot")
    missing = [f for f in args.folders if not (Path(f) / "results.csv").is_file()]
    if dry_run(args, "python -m empirical.report", {"folders": [str(f) for f in args.folders],
                                                    "missing results.csv": [str(f) for f in missing] or "none",
                                                    "csv": args.csv, "json": args.json, "plot": not args.no_plot}):
        return 0
    rows = read_rows(args.folders)
    records = aggregate(rows)
    _print(records, GROUP, SHOWN)
    gaps = paired_gaps(rows)
    summary = gap_summary(gaps)
    if summary:
        print("\npoisoned - control, each seed with its own control (mean ± 95% CI, paired t-test p)")
        for key, rec in summary.items():
            cells = [f"{m} {gap_cell(v)}" for m, v in rec.items()
                     if m in UNPOISONED + ("unpoisoned_meaningless", "unpoisoned_off_render", "unpoisoned_no_standout")
                     and math.isfinite(v[0])]
            print("  ".join(shown_key(key, GROUP)) + f"  seeds {max(v[3] for v in rec.values())}:  " + "  ".join(cells))
    att = read_rows(args.folders, "attention.csv", required=False)
    if att:
        print("\ncross-attention statistics of the concept's tokens (empirical.attention), per concept group")
        _print(aggregate(att, (*GROUP, "group"), ATTENTION), (*GROUP, "group"), ATTENTION)
    correlations = []
    for m in UNPOISONED:
        rho, n, why = spearman_why(rows, m)
        correlations.append({"measure": m, "rho": rho, "n": n, "why_nan": why})
        print(f"Spearman rho(AD, {m}) = {rho:+.3f} over {n} runs" + (f" ({why})" if why else ""))
    if args.csv is not None:
        atomic_write_text(args.csv, csv_text(flat_records(records, summary)))
        print(f"table: {args.csv}")
    if args.json is not None:
        doc = {"aggregate": flat_records(records, summary), "gaps": gaps, "correlations": correlations}
        atomic_write_text(args.json, json.dumps(doc, indent=1, default=float) + "\n")
        print(f"json: {args.json}")
    if not args.no_plot:
        path = args.folders[0] / "report.png"
        from empirical.report_plot import plot

        plot(records, path)
        print(f"plot: {path}")
    return 0


def unique_folders(folders: Sequence[Path]) -> list[Path]:
    """``folders`` with each folder once (by its resolved path; a note on stderr for each repeat): a folder given
    twice must not count its rows twice."""
    import sys

    seen: dict[Path, Path] = {}
    for folder in map(Path, folders):
        key = folder.resolve()
        if key in seen:
            print(f"note: {folder} is {seen[key]} given again; its rows are counted once", file=sys.stderr)
            continue
        seen[key] = folder
    return list(seen.values())


def flat_records(records: list[dict], summary: dict[tuple, dict[str, tuple]]) -> list[dict]:
    """The aggregate as flat rows: group keys, seeds, ``<m>_mean`` / ``<m>_ci95`` per measure, and for poisoned
    groups with controls ``gap_<m>_mean`` / ``gap_<m>_ci95`` / ``gap_<m>_p`` (empty otherwise)."""
    out = []
    for rec in records:
        row = {k: rec[k] for k in GROUP}
        row["n_seeds"] = rec["n_seeds"]
        for m in SHOWN:
            row[f"{m}_mean"], row[f"{m}_ci95"] = rec[m]
        gap = summary.get(tuple(rec[k] for k in GROUP), {})
        for m in SHOWN:
            g = gap.get(m)
            row[f"gap_{m}_mean"], row[f"gap_{m}_ci95"], row[f"gap_{m}_p"] = (g[:3] if g else ("", "", ""))
        out.append(row)
    return out


def _print(records: list[dict], group: Sequence[str], shown: Sequence[str]) -> None:
    names = {"poison_per_concept": "p", "poison_type": "poison"}
    print("  ".join([names.get(k, k) for k in group] + ["seeds"] + [m.removeprefix("attn_") for m in shown]))
    for rec in records:
        cells = shown_key(tuple(rec[k] for k in group), group) + [str(rec["n_seeds"])]
        cells += [mean_cell(*rec[m], rec["n_seeds"]) for m in shown]
        print("  ".join(cells))


def mean_cell(mean: float, ci: float, n: int) -> str:
    """A mean with its 95% interval, ``0.617±0.090``; with one seed there is no interval: ``0.617 (n = 1)``."""
    return f"{mean:.3f} (n = 1)" if n <= 1 else f"{mean:.3f}±{ci:.3f}"


def gap_cell(stat: tuple[float, float, float, int]) -> str:
    """A paired gap ``(mean, ci, p, n)``: ``-0.271±0.055 (p 0.0081)``; one seed: ``-0.271 (n = 1)`` (no
    interval and no test)."""
    mean, ci, p, n = stat
    return f"{mean:+.3f} (n = 1)" if n <= 1 else f"{mean:+.3f}±{ci:.3f} (p {p:.2g})"


def shown_key(key: tuple, group: Sequence[str]) -> list[str]:
    """A group's keys as printed: the C_P = 0 point of kind ``poisoned`` is the clean model and reads ``clean``."""
    cells = [str(k) for k in key]
    if "kind" in group and "c_p" in group and str(key[list(group).index("c_p")]) == "0" \
            and cells[list(group).index("kind")] == "poisoned":
        cells[list(group).index("kind")] = "clean"
    return cells


def cli() -> None:
    """The ``implosion-report`` console script: :func:`main` behind the one-line error boundary."""
    run_main(main, prog="implosion-report")


if __name__ == "__main__":
    run_main(main, prog="python -m empirical.report")
