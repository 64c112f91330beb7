"""``python -m paper_figures.export RUN [RUN ...] --into docs/data [--figure-points]``: the small files of run
folders, the ones the figures and tables read, copied where the repository keeps them.

From each RUN (an ``empirical.run`` or ``empirical.defence`` folder) it copies ``results.csv``, ``manifest.json``,
``attention.csv``, ``per_concept.csv``, ``detection.csv``, the precision–recall curves ``pr-*.csv`` and the poison
plans ``plans/*.json`` into ``INTO/<name of RUN>`` — never weights, checkpoints, grids or caches. With
``--figure-points`` it also keeps what the image figures (F2–F4) draw from: for the folder's lowest seed, every
``poisoned``-kind point (the clean model, C_P = 0, included) with its list of poisoned concepts
(``points/<tag>.json``, its per-concept readings dropped: they are in ``per_concept.csv``) and the first
:data:`~paper_figures.attention_figures.SHOWN_PER_PANEL` samples of each grid concept with their concept-token
maps (``points/<tag>-attention.npz``, ≈ 60 KB a point). An existing ``INTO/<name>`` is replaced as a whole
(written beside it, then renamed), so a re-export after a rerun leaves nothing stale.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np

from implosion_base.cli import ArgumentParser, dry_run, path_arg, run_main
from implosion_base.errors import InputError
from implosion_base.files import atomic_write_text, hold_output, save_npz_atomically
from implosion_base.records import read_csv_rows

TABLES: tuple[str, ...] = ("results.csv", "manifest.json", "attention.csv", "per_concept.csv", "detection.csv")
PATTERNS: tuple[str, ...] = ("pr-*.csv", "plans/*.json")


def check_run(run: Path) -> None:
    """A run folder must hold an experiment's tables (results.csv or detection.csv): else an InputError."""
    if not run.exists():
        raise InputError(f"run folder {run} does not exist")
    if not run.is_dir():
        raise InputError(f"{run} is not a folder")
    if not ((run / "results.csv").is_file() or (run / "detection.csv").is_file()):
        raise InputError(f"{run} has neither results.csv (python -m empirical.run) nor detection.csv "
                         f"(python -m empirical.defence)")


def is_export(folder: Path) -> bool:
    """Whether ``folder`` looks like an earlier export — small text tables at the top (``*.csv``, ``*.json``,
    ``*.md``), ``plans/*.json`` and ``points/*.json|npz``, nothing else (no weights, grids or other folders, no
    symlinks): only such a folder is ever replaced by a re-export, stale tables included."""
    allowed = {(): (".csv", ".json", ".md"), ("plans",): (".json",), ("points",): (".json", ".npz")}
    for path in folder.rglob("*"):
        rel = path.relative_to(folder)
        if path.is_symlink():
            return False
        if path.is_dir():
            if rel.parts not in (("plans",), ("points",)):
                return False
        elif path.suffix.lower() not in allowed.get(rel.parts[:-1], ()):
            return False
    return True


def check_destination(run: Path, dest: Path) -> None:
    """``dest`` (``INTO/<run name>``) may receive ``run``'s copy: it is not ``run`` itself, neither lies inside
    the other, it is no symlink, and what stands there is an earlier export (:func:`is_export`) — never a run
    folder or a user's folder, which replacing would delete."""
    src, dst = run.resolve(), dest.resolve()
    if src == dst or src in dst.parents or dst in src.parents:
        raise InputError(f"--into {dest.parent}: the copy {dest} would replace or lie inside its source {run}; "
                         "export into another folder (e.g. docs/data)")
    if dest.is_symlink():
        raise InputError(f"{dest} is a symlink; export into a folder of its own")
    if dest.exists() and not (dest.is_dir() and is_export(dest)):
        raise InputError(f"{dest} exists and is not an earlier export (it holds other files); it is never replaced: "
                         "move it or export into another folder")


def figure_rows(run: Path) -> list[dict[str, str]]:
    """The rows whose points the image figures draw: kind ``poisoned`` (C_P = 0 is the clean model) of the lowest
    seed in ``run/results.csv`` (the figures show one seed, the lowest)."""
    from paper_figures.sources import shown_seed_rows

    if not (run / "results.csv").is_file():
        return []
    return [dict(r, folder=str(run)) for r in shown_seed_rows(read_csv_rows(run / "results.csv"))]


def slim_point(js: Path, npz: Path, dest: Path, shown: int) -> None:
    """Write ``dest/<js name>`` with only the point's row and poisoned concepts, and ``dest/<npz name>`` with the
    first ``shown`` samples of each concept (images, concept-token maps, concept names; order kept)."""
    record = json.loads(js.read_text(encoding="utf-8"))
    atomic_write_text(dest / js.name, json.dumps({"row": record["row"], "poisoned": record["poisoned"]}, indent=1))
    with np.load(npz, allow_pickle=False) as z:
        images, maps, concepts = z["images"], z["maps"], z["concepts"]
    keep = np.concatenate([np.flatnonzero(concepts == c)[:shown] for c in dict.fromkeys(concepts.tolist())])
    save_npz_atomically(dest / npz.name, images=images[keep], maps=maps[keep], concepts=concepts[keep])


def export_run(run: Path, into: Path, *, figure_points: bool = False) -> tuple[Path, list[str]]:
    """Copy ``run``'s small files into ``into/<run name>`` (replacing it whole). Returns (destination, files
    written, relative to it)."""
    from paper_figures.attention_figures import SHOWN_PER_PANEL
    from paper_figures.sources import point_files

    check_run(run)
    dest = into / run.name
    check_destination(run, dest)
    tmp = into / f".{run.name}.export-tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    written: list[str] = []
    for name in TABLES:
        if (run / name).is_file():
            shutil.copyfile(run / name, tmp / name)
            written.append(name)
    for pattern in PATTERNS:
        for path in sorted(run.glob(pattern)):
            rel = path.relative_to(run)
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, tmp / rel)
            written.append(str(rel))
    if figure_points:
        (tmp / "points").mkdir(exist_ok=True)
        for row in figure_rows(run):
            js, npz = point_files(row)
            if js.is_file() and npz.is_file():
                slim_point(js, npz, tmp / "points", SHOWN_PER_PANEL)
                written += [f"points/{js.name}", f"points/{npz.name}"]
    if dest.exists():
        print(f"replacing {dest}", file=sys.stderr)
        shutil.rmtree(dest)
    tmp.rename(dest)
    return dest, written


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m paper_figures.export", description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=path_arg, metavar="RUN", help="run folders (empirical.run or "
                                                                               "empirical.defence --out)")
    parser.add_argument("--into", type=path_arg, required=True, help="where the copies go (docs/data)")
    parser.add_argument("--figure-points", action="store_true",
                        help="also keep the lowest seed's poisoned points' sample images and maps (for F2–F4)")
    args = parser.parse_args(argv)
    shared = sorted(n for n, k in Counter(r.name for r in args.runs).items() if k > 1)
    if shared:
        raise InputError(f"two RUN folders share a name ({', '.join(shared)}); each becomes INTO/<name>")
    for run in args.runs:
        check_run(run)
        check_destination(run, args.into / run.name)
    if dry_run(args, "python -m paper_figures.export", {"runs": args.runs, "into": args.into,
                                                        "figure points": args.figure_points}):
        return 0
    with hold_output(args.into, name="--into") as into:
        for run in args.runs:
            dest, written = export_run(run, into, figure_points=args.figure_points)
            size = sum((dest / w).stat().st_size for w in written)
            print(f"{run} -> {dest}: {len(written)} files, {size / 1024:.0f} KB")
    return 0


if __name__ == "__main__":
    run_main(main, prog="python -m paper_figures.export")
