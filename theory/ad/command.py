"""``python -m theory.ad FILE``: AD of a pairs file, exact or sampled, its top pairs and a per-pair score table."""

from __future__ import annotations

import json
from typing import Any, Sequence

import numpy as np

from implosion_base.cli import ArgumentParser, dry_run, path_arg, run_main
from implosion_base.errors import InputError
from implosion_base.validate import check_alpha, check_scalar
from theory.ad.exact import pair_attribution
from theory.ad.kernel import DEFAULT_ALPHA, DEFAULT_BLOCK, Attribution, ranking
from theory.ad.sampled import alignment_difficulty_sampled

__all__ = ["cli", "main", "score_rows"]

def score_rows(att: Attribution, names: dict[str, np.ndarray] | None = None) -> list[dict[str, Any]]:
    """One row per pair, in file order: index, the pair's labels (``file_name``, ``caption`` when given), its
    score s_i, its feature share α(1−s_i)/n, its structure share (1−α)r_i/n², its share of AD (their sum) and its
    rank by share (1 = largest; ties by index)."""
    names = names or {}
    rank = np.empty(att.contribution.size, dtype=np.int64)
    rank[ranking(att.contribution)] = np.arange(1, att.contribution.size + 1)
    return [{"index": i, **{k: str(v[i]) for k, v in names.items()}, "s_i": float(att.score[i]),
             "feature_share": float(att.feature[i]), "structure_share": float(att.structure[i]),
             "share_of_ad": float(att.contribution[i]), "rank": int(rank[i])} for i in range(att.contribution.size)]


#: The most random pairs ``--sample`` draws (about a minute on one core; more gives no useful precision).
MAX_SAMPLES = 10**9


def _parser() -> ArgumentParser:
    p = ArgumentParser(
        prog="python -m theory.ad",
        description="Alignment Difficulty of the text-image pairs in FILE (.npz or .safetensors with arrays "
        "'text' and 'image', n x d).",
    )
    p.add_argument("file", metavar="FILE", help=".npz or .safetensors file holding arrays 'text' and 'image'")
    p.add_argument("--alpha", type=float, default=DEFAULT_ALPHA, help="weight of D_fea in [0, 1] (default 0.8)")
    p.add_argument("--no-laion-scale", action="store_true", help="use raw pair cosines instead of clip(4(s-0.2),0,1)")
    p.add_argument("--sample", type=int, metavar="N", help="estimate D_stru from N random pairs (with a 95%% CI)")
    p.add_argument("--seed", type=int, default=0, help="seed of --sample (default 0)")
    p.add_argument("--block", type=int, default=DEFAULT_BLOCK, help="tile size of the exact computation")
    p.add_argument("--precision", choices=["auto", "float32", "float64"], default="auto")
    p.add_argument("--backend", choices=["numpy", "torch"], default="numpy")
    p.add_argument("--device", default=None, help="torch device, e.g. cuda:0 (backend torch)")
    p.add_argument("--top", type=int, default=0, metavar="K",
                   help="also report the K pairs with the largest share of AD (exact mode), with their file_name "
                        "and caption when FILE holds them")
    p.add_argument("--scores", type=path_arg, default=None, metavar="CSV",
                   help="write every pair (index, file_name, caption, s_i, feature and structure shares, share of "
                        "AD, rank) to CSV (exact mode)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m theory.ad FILE [--alpha A] [--no-laion-scale] [--sample N] [--seed S] [--json]``."""
    from implosion_base.pairs_file import PAIR_LABELS, load_pair_labels, load_pairs
    from implosion_base.files import atomic_write_text
    from implosion_base.records import csv_text

    args = _parser().parse_args(argv)
    check_alpha(args.alpha)
    if args.sample is not None:
        check_scalar(args.sample, "--sample", low=2, high=MAX_SAMPLES, integer=True)
    check_scalar(args.seed, "--seed", low=0, integer=True)
    check_scalar(args.top, "--top", low=0, integer=True)
    if (args.top or args.scores) and args.sample is not None:
        raise InputError("--top and --scores need the exact computation; drop --sample")
    if args.scores is not None and args.scores.suffix.lower() != ".csv":
        raise InputError(f"--scores {args.scores}: the table is written as CSV; name it *.csv")
    if args.scores is not None:
        from implosion_base.files import check_output_file

        check_output_file(args.scores, name="--scores")  # before any work: a folder there is never replaced
    if dry_run(args, "python -m theory.ad", {"input": args.file, "mode": "sampled" if args.sample else "exact",
                                             "alpha": args.alpha, "laion_scale": not args.no_laion_scale,
                                             "scores": args.scores, "top": args.top}):
        return 0
    text, image = load_pairs(args.file)
    names = load_pair_labels(args.file, len(text)) if (args.top or args.scores) else {}
    laion = not args.no_laion_scale
    top: list[dict[str, float]] = []
    if args.sample is not None:
        res = alignment_difficulty_sampled(text, image, args.sample, args.alpha, laion, seed=args.seed)
    else:
        att = pair_attribution(text, image, args.alpha, laion, block=args.block, precision=args.precision,
                               backend=args.backend, device=args.device)
        res = att.result
        top = [{"index": int(i), **{k: str(v[i]) for k, v in names.items()},
                "contribution": float(att.contribution[i])} for i in att.top(args.top)]
        if args.scores is not None:
            atomic_write_text(args.scores, csv_text(score_rows(att, names)))
    out = res.as_dict()
    if top:
        out["top"] = top
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"pairs      n = {res.n}")
    print(f"D_fea        = {res.d_fea:.8f}")
    line = f"D_stru       = {res.d_stru:.8f}"
    if res.d_stru_ci95 is not None:
        line += f"   95% CI [{res.d_stru_ci95[0]:.8f}, {res.d_stru_ci95[1]:.8f}] from {res.n_samples} pairs"
    print(line)
    line = f"AD           = {res.ad:.8f}   (alpha={res.alpha}, laion_scale={res.laion_scale})"
    if res.ci95 is not None:
        line += f"   95% CI [{res.ci95[0]:.8f}, {res.ci95[1]:.8f}]"
    print(line)
    for row in top:
        label = "  ".join(row[k] for k in PAIR_LABELS if k in row)
        print(f"  pair {row['index']:>8d}  share of AD {row['contribution']:.3e}" + (f"  {label}" if label else ""))
    if args.scores is not None:
        print(f"wrote {args.scores} ({res.n} pairs)")
    return 0


def cli() -> None:
    """The ``implosion-ad`` console script: :func:`main` behind the one-line error boundary."""
    run_main(main, prog="implosion-ad")
