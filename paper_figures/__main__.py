"""``python -m paper_figures {list,all,fig1..fig18,tab1..tab12} [--quick] [--out DIR] [--results DIR]``.

- ``list``: each figure and table, what it shows and the command that feeds it.
- ``all`` or one or more keys: build them into ``--out`` (default ``paper_figures/out``) as PNG + PDF (figures) or
  MD + CSV (tables), then rewrite ``OUT/figures.md``, the index of everything in OUT with its caption, sources and
  what is missing. Data come from ``--results`` (default ``results``); see :mod:`paper_figures.sources` for what
  runs when they are missing and for ``--quick``.

A figure that fails to build is reported on stderr with its reason; the others are still built and the exit
status is 1. Unknown keys and bad folders exit 2 before anything is built.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

from paper_figures.index import write_index
from paper_figures.registry import ITEMS, resolve
from paper_figures.sources import MissingSource, Sources
from implosion_base.cli import ArgumentParser, dry_run, path_arg, run_main
from implosion_base.errors import InputError
from implosion_base.files import atomic_write_text, ensure_writable_dir
from implosion_base.validate import check_threads


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m paper_figures", description=__doc__.splitlines()[0])
    parser.add_argument("what", nargs="+", help="list, all, or figure/table keys (fig3, F3, tab1, ...)")
    parser.add_argument("--quick", action="store_true", help="smallest presets, ignore --results (a few minutes)")
    parser.add_argument("--out", type=path_arg, default=Path("paper_figures/out"))
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads for runs made on the way")
    args = parser.parse_args(argv)
    if args.what == ["list"]:
        if dry_run(args, "python -m paper_figures", {"prints": "the list of figures and tables"}):
            return 0
        for item in ITEMS:
            paper = f" [paper {item.paper}]" if item.paper else ""
            print(f"{item.key:6s} {item.title}{paper}\n       shows: {item.shows}\n       fed by: {item.feeds}")
        return 0
    if "list" in args.what:
        raise InputError("'list' takes no other arguments")
    items = _asked(args.what)
    if args.results.exists() and not args.results.is_dir():
        raise InputError(f"--results {args.results} is not a folder")
    if args.threads is not None:
        check_threads(args.threads)
    if dry_run(args, "python -m paper_figures", {"items": [i.key for i in items], "results": args.results,
                                                 "out": args.out, "quick": args.quick}):
        return 0
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    out = ensure_writable_dir(args.out)
    src = Sources(results=args.results, data=out / "_data", quick=args.quick)
    outcomes = [_build(item, src, out, args.quick) for item in items]
    failed, missing = outcomes.count("failed"), outcomes.count("missing")
    index = write_index(out)
    print(f"index: {index}" + (f" ({missing} item(s) not built for missing data)" if missing else ""))
    return 1 if failed else 0


def _asked(what: list[str]) -> list:
    """The registry items ``what`` names (``all``: every one); an unknown key is an InputError naming the known."""
    if what == ["all"]:
        return list(ITEMS)
    if "all" in what:
        raise InputError("'all' takes no other keys")
    items = []
    for name in what:
        try:
            items.append(resolve(name))
        except KeyError:
            raise InputError(f"unknown figure or table {name!r}; known: "
                             f"{', '.join(i.key for i in ITEMS)} (python -m paper_figures list)") from None
    return items


def _build(item, src: Sources, out: Path, quick: bool) -> str:
    """Build one item into ``out`` with its record ``KEY.json``; "built", "missing" (its data are not there:
    said, not substituted, not a failure) or "failed" (one broken figure must not cost the others)."""
    t0 = time.perf_counter()
    print(f"{item.key}: {item.title}", flush=True)
    try:
        built = item.build(src, out)
    except MissingSource as exc:
        print(f"{item.key}: not built: {exc}", file=sys.stderr)
        return "missing"
    except Exception as exc:  # noqa: BLE001 - reported, and the build goes on
        print(f"{item.key}: not built: {type(exc).__name__}: {exc}", file=sys.stderr)
        return "failed"
    record = {"key": item.key, "title": item.title, "paper": item.paper, "feeds": item.feeds, "quick": quick,
              **asdict(built), "files": [p.name for p in built.files], "seconds": round(time.perf_counter() - t0, 1)}
    atomic_write_text(out / f"{item.key}.json", json.dumps(record, indent=1, default=str))
    status = ", ".join(p.name for p in built.files) or "nothing written"
    print(f"  -> {status} ({record['seconds']} s)" + (f"; missing: {'; '.join(built.missing)}"
                                                      if built.missing else ""), flush=True)
    return "built"


def cli() -> None:
    """The ``implosion-figures`` console script: :func:`main` behind the one-line error boundary."""
    run_main(main, prog="implosion-figures")


if __name__ == "__main__":
    run_main(main, prog="python -m paper_figures")
