"""``python -m dataset_audit EMB... --out DIR`` (and ``--validate`` / ``--validate-mix``): the command line."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from dataset_audit.config import AuditConfig
from dataset_audit.execution import Execution, check_blocks
from dataset_audit.pipeline import audit
from dataset_audit.report import write_report
from dataset_audit.validation import (
    check_c_ps,
    clean_set,
    load_mix,
    validate,
    validate_mixes,
)
from implosion_base.cli import ArgumentParser, dry_run, path_arg, run_main
from implosion_base.errors import InputError
from implosion_base.files import atomic_write_text, hold_output
from implosion_base.pairs_file import load_side_metadata
from implosion_base.records import csv_text
from implosion_base.shards import open_shards
from implosion_base.tasks import TaskRecord
from implosion_base.validate import check_scalar


def _parser() -> ArgumentParser:
    p = ArgumentParser(prog="python -m dataset_audit", description="How poisoned is a training set, and how close to "
                       "implosion? AD, suspicious pairs, poisoned concepts and the simulator's margin (docs/audit.md).")
    p.add_argument("shards", nargs="*", metavar="EMB", help="embedding files or folders (npz, safetensors, "
                                                             "text_emb_/img_emb_ .npy pairs)")
    p.add_argument("--validate", default=None, metavar="CLEAN",
                   help="instead: audit dirty-label mixes built from this clean embedded set with concept labels "
                        "(empirical.embed --builtin), or from sim:KxM (K concepts x M pairs of the simulator's "
                        "default space), and score the audit against the known poisons")
    p.add_argument("--validate-mix", type=Path, nargs="+", default=None, metavar="MIX",
                   help="instead: audit real training mixes with their truth (python -m empirical.embed --builtin "
                        "--mix ...) and score the audit against it")
    p.add_argument("--poisoned-concepts", default="0,25,50,100", metavar="LIST", help="--validate: C_P values")
    p.add_argument("--poison-per-concept", type=int, default=80, metavar="P", help="--validate: p")
    p.add_argument("--features", default=None, choices=["l14", "b32"],
                   help="which model's features to read where a shard holds several (DataComp's l14_img/l14_txt, "
                        "b32_img/b32_txt; default: l14 when present)")
    p.add_argument("--metadata", type=Path, default=None, metavar="CSV",
                   help="per-pair file names / captions for all shards, one row per pair in order (columns file_name "
                        "or url, caption or text)")
    p.add_argument("--out", type=path_arg, required=True, help="report folder")
    d = AuditConfig()
    p.add_argument("--alpha", type=float, default=d.alpha, help=f"AD's weight of D_fea (default {d.alpha})")
    p.add_argument("--no-laion-scale", action="store_true", help="raw pair cosines instead of clip(4(s-0.2),0,1)")
    p.add_argument("--exact-max", type=int, default=d.exact_max, help=f"exact AD up to this many pairs (default "
                                                                       f"{d.exact_max:,})")
    p.add_argument("--partners", type=int, default=d.partners, help="random partners per pair beyond --exact-max: each pair's structure term and D_stru")
    p.add_argument("--flag-z", type=float, default=d.flag_z,
                   help="when the mixture of pair cosines finds no second population, a pair is flagged when the "
                        "modified z-score of its cosine is below -Z (default 3.5); the report says which rule "
                        "flagged")
    p.add_argument("--memory", type=float, default=d.memory_gib, metavar="GIB", help="memory budget (default 2)")
    p.add_argument("--concepts-file", type=Path, default=None, help="concept names matched in the captions "
                                                                    "(default: k-means of the text embeddings)")
    p.add_argument("--n-concepts", type=int, default=None, help="K for the clustering (default: by silhouette)")
    p.add_argument("--max-concepts", type=int, default=d.max_concepts, help="largest K the silhouette tries")
    cap = p.add_mutually_exclusive_group()
    cap.add_argument("--dim", type=int, default=None, help="the simulator's capacity d for the margin (default 64)")
    cap.add_argument("--clean-acc", type=float, default=None, help="calibrate d to this clean model accuracy")
    p.add_argument("--no-predict", action="store_true", help="skip the simulator's margin")
    p.add_argument("--seed", type=int, default=0)
    run = p.add_argument_group("where the pass over the data runs (the numbers are the same everywhere)")
    run.add_argument("--workers", type=int, default=0, metavar="N",
                     help="local worker processes for the sampled pass (0 or 1: this process); the memory budget "
                          "is shared by them")
    run.add_argument("--dask", default=None, metavar="ADDRESS",
                     help="a Dask scheduler (tcp://host:8786) to run the sampled pass's blocks on; its workers need "
                          "this toolkit installed and the shard paths readable")
    run.add_argument("--ray", default=None, metavar="ADDRESS",
                     help="run the sampled pass's blocks on Ray: 'local' (an instance on this machine for the run), "
                          "'auto' or ray://host:10001 (a cluster whose workers have this toolkit and the shards); "
                          "pip install 'implosion-toolkit[ray]'")
    return p


def _validation(args, cfg: AuditConfig) -> int:
    """``--validate CLEAN`` or ``--validate-mix MIX...``: audit mixes with known poisons, write validation.csv."""
    from implosion_base.cli import parse_int_list

    if args.shards:
        raise InputError("--validate / --validate-mix audit their own mixes; give no embedding files")
    if args.validate is not None and args.validate_mix is not None:
        raise InputError("give --validate or --validate-mix, not both")
    c_ps = parse_int_list(args.poisoned_concepts, name="--poisoned-concepts")
    check_scalar(args.poison_per_concept, "--poison-per-concept", low=1, integer=True)
    what = ({"validate on": args.validate, "C_P": c_ps, "p": args.poison_per_concept} if args.validate else
            {"mixes": [str(m) for m in args.validate_mix]})
    if dry_run(args, "python -m dataset_audit", {**what, "out": args.out}):
        return 0
    if args.validate:  # read and checked before anything is created
        clean = clean_set(args.validate, seed=args.seed)
        check_c_ps(c_ps, len(np.unique(clean[2])))
    else:
        for path in args.validate_mix:
            load_mix(path)
    with hold_output(args.out) as out:
        rows = (validate(clean, c_ps, args.poison_per_concept, cfg, seed=args.seed) if args.validate else
                validate_mixes(args.validate_mix, cfg))
        atomic_write_text(out / "validation.csv", csv_text(rows))
    for r in rows:
        print(f"{r['poison_type']:>10} C_P {r['c_p']:>4} p {r['p']}: flagged {r['flagged']} (precision "
              f"{r['precision']:.3f}, recall {r['recall']:.3f}, AP {r['ap_of_score']:.3f}); estimated C_P "
              f"{r['estimated_c_p']}, p {r['estimated_p']}; AD {r['ad']:.4f}")
    print(f"wrote {out / 'validation.csv'}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from implosion_base.captions import read_concepts_file

    args = _parser().parse_args(argv)
    cfg = AuditConfig(alpha=args.alpha, laion_scale=not args.no_laion_scale, exact_max=args.exact_max,
                      partners=args.partners, flag_z=args.flag_z, memory_gib=args.memory,
                      n_concepts=args.n_concepts, max_concepts=args.max_concepts,
                      dim=args.dim if args.dim is not None or args.clean_acc is not None else 64,
                      clean_acc=args.clean_acc, predict=not args.no_predict, seed=args.seed)
    cfg.validate()
    check_scalar(args.workers, "--workers", low=0, integer=True)
    chosen = [name for name, on in (("--workers", args.workers > 1), ("--dask", args.dask), ("--ray", args.ray)) if on]
    if len(chosen) > 1:
        raise InputError(f"give {' or '.join(chosen)}, not {'both' if len(chosen) == 2 else 'all'}")
    if args.validate is not None or args.validate_mix is not None:
        return _validation(args, cfg)
    if not args.shards:
        raise InputError("give embedding files (or --validate CLEAN)")
    names = read_concepts_file(args.concepts_file) if args.concepts_file else None
    src = open_shards(args.shards, features=args.features)
    if args.metadata is not None:
        src.labels.update(load_side_metadata(args.metadata, src.n))
    cfg.rows(src.d, src.n, max(1, args.workers))  # a budget too small for this data is refused before any write
    if dry_run(args, "python -m dataset_audit", {"pairs": f"{src.n:,} in {len(src.names)} shard(s), d = {src.d}",
                                                  "layout": ", ".join(src.layouts),
                                                  "AD": "exact" if src.n <= cfg.exact_max else "sampled",
                                                  "concepts": "from --concepts-file" if names else "k-means",
                                                  "out": args.out}):
        return 0
    blocks = args.out / "blocks"
    check_blocks(blocks)  # refused here, before anything is created
    with hold_output(args.out) as out:
        check_blocks(blocks)
        execution = Execution(workers=args.workers, dask=args.dask, ray=args.ray, paths=tuple(map(str, args.shards)),
                              features=args.features, record_dir=blocks, log=lambda msg: print(msg, file=sys.stderr))
        res = audit(src, cfg, concept_names=names, execution=execution)
        write_report(out, src, res, cfg)
        if (blocks / TaskRecord.HEAD).is_file():  # the audit's own record (never a folder a user made)
            shutil.rmtree(blocks)  # the report holds everything the recorded blocks did
    s = res["summary"]
    print(f"{s['n']:,} pairs: AD {s['ad']:.5f} ({s['ad_mode']})")
    print(f"flagged {s['flagged']:,} pairs; estimated C_P {s['estimated_c_p']} of {s['n_concepts']} concepts, "
          f"p {s['estimated_p']}, m {s['estimated_m']}")
    m = s.get("margin")
    if m and m.get("prediction", True) is not None:
        print(f"margin (a model's prediction): unpoisoned accuracy now {m['predicted_unpoisoned_acc_now']:.3f}, "
              f"threshold C_P {m['threshold_c_p']}")
    print(f"wrote {out / 'report.html'} (and report.md), report.json, pairs.csv / pairs.parquet, concepts.csv, "
          "scores.png")
    return 0


def cli() -> None:
    """The ``implosion-audit`` console script: :func:`main` behind the one-line error boundary."""
    run_main(main, prog="implosion-audit")
