r"""``python -m dataset_audit.realistic --out DIR``: the audit on known truth in a CLIP-like space.

The validation mixes of :mod:`dataset_audit.validation` put matched pairs at cosine ≈ 0.76 and dirty-label pairs at
≈ 0 — poisons trivially apart. Real CLIP spaces do not: matched pairs sit at 0.25–0.35 with a wide spread, many
captions are weakly aligned, concepts differ in size, some are near duplicates, and text and images lie in cones
of their own (the modality gap). This module builds clean sets with those statistics and poisons them with known
truth, then scores the audit over a grid of poison volume and strength.

**The clean space** (:class:`ClipLikeConfig`). K concept directions :math:`u_c` (unit; a fraction ``duplicates`` of
them near copies of another, :math:`u_{c'} = \mathrm{unit}(u_c + 0.35\,\epsilon)`), concept sizes drawn
log-normal (unequal); two modality directions :math:`m_t, m_v`. A pair of concept c:

.. math::

    t = \mathrm{unit}(a\,m_t + b_i\,u_c + s\,\epsilon_t), \qquad v = \mathrm{unit}(a\,m_v + b\,u_c + s\,\epsilon_v)

with :math:`b_i = b` for a well-aligned caption and :math:`b_i = b\cdot` ``weak_strength`` for a fraction
``weak`` of weakly aligned ones. The defaults give matched cosines ≈ 0.30 ± 0.05 (weak captions ≈ 0.20) and
cosines between concepts ≈ 0.16 — CLIP ViT-B/32's statistics on LAION-like captions (measured on the generated
data and reported beside every grid).

**Poisons** (:func:`dataset_audit.validation.dirty_label_mix`: the toolkit's one plan and item helper): for each of C_P concepts A with a
random target B, p pairs: *dirty-label* — the caption of one of A's pairs with the image of one of B's; or
*Nightshade-like* — the caption and image of one of A's pairs with the image moved a fraction λ (``strength``)
toward one of B's, :math:`v = \mathrm{unit}((1-\lambda) v_A + \lambda v_B)`: the caption cosine falls only partly.

**Scores** per mix (:func:`score_audit`): the flags' precision and recall, the AP of ranking by share of AD, Ĉ_P
and its relative error |Ĉ_P − C_P| / C_P, and p̂; beside them two baselines the audit does not use: the AP of
ranking by the pair cosine (lower first) and by the concept disagreement of
:func:`theory.detection.concept_disagreement` (an image nearer another concept's images than its caption's).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

from dataset_audit.config import AuditConfig
from dataset_audit.validation import dirty_label_mix, score_audit
from implosion_base.cli import ArgumentParser, dry_run, parse_int_list, parse_seeds, path_arg, run_main
from implosion_base.errors import InputError
from implosion_base.files import atomic_write_text, hold_output
from implosion_base.records import csv_text
from implosion_base.validate import check_scalar, unit_rows
from theory.detection import concept_disagreement, rank_quality

__all__ = ["KINDS", "ClipLikeConfig", "clip_like_clean", "poison_clip_like", "space_statistics", "validate_grid"]


@dataclass(frozen=True)
class ClipLikeConfig:
    """A CLIP-like clean space (module docstring)."""

    n_concepts: int = 100
    dim: int = 256
    mean_size: int = 60  # pairs per concept, the mean of a log-normal (sd 0.6 in log space)
    duplicates: float = 0.1  # fraction of concepts that are near copies of another
    weak: float = 0.15  # fraction of weakly aligned captions
    weak_strength: float = 0.3
    modality: float = 1.0  # a: the modality directions' weight
    cone_cosine: float = 0.5  # cos(m_t, m_v): the modality gap
    concept: float = 0.66  # b: the concept direction's weight
    noise: float = 1.3  # s: the per-pair noise's scale (over all dims)

    def __post_init__(self) -> None:
        check_scalar(self.n_concepts, "n_concepts", low=4, integer=True)
        check_scalar(self.dim, "dim", low=8, integer=True)
        check_scalar(self.mean_size, "mean_size", low=4, integer=True)
        for value, name in ((self.duplicates, "duplicates"), (self.weak, "weak"), (self.weak_strength,
                                                                                   "weak_strength"),
                            (self.cone_cosine, "cone_cosine")):
            check_scalar(value, name, low=0.0, high=1.0)


def clip_like_clean(cfg: ClipLikeConfig, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(text, image, concept, weak) of a clean CLIP-like set: unit float32 rows, each pair's concept, and whether
    its caption is weakly aligned."""
    rng = np.random.default_rng([seed, 11])
    d, k = cfg.dim, cfg.n_concepts
    u = unit_rows(rng.standard_normal((k, d)))
    copies = rng.choice(k, size=int(cfg.duplicates * k), replace=False)
    for c in copies:  # a near duplicate of another concept
        other = (c + 1 + rng.integers(k - 1)) % k
        u[c] = unit_rows(u[other] + 0.35 * unit_rows(rng.standard_normal(d)))
    q = np.linalg.qr(rng.standard_normal((d, 3)))[0].T  # orthonormal: the cones' shared axis and their gap
    m_t, m_v = (np.sqrt(cfg.cone_cosine) * q[0] + np.sqrt(1.0 - cfg.cone_cosine) * q[j] for j in (1, 2))
    sizes = np.maximum(4, np.round(cfg.mean_size * rng.lognormal(-0.18, 0.6, k))).astype(int)
    concept = np.repeat(np.arange(k), sizes)
    weak = rng.random(len(concept)) < cfg.weak
    b_text = cfg.concept * np.where(weak, cfg.weak_strength, 1.0)
    noise = cfg.noise / np.sqrt(d)
    text = unit_rows(cfg.modality * m_t + b_text[:, None] * u[concept] +
                     noise * rng.standard_normal((len(concept), d)))
    image = unit_rows(cfg.modality * m_v + cfg.concept * u[concept] + noise * rng.standard_normal((len(concept), d)))
    return text.astype(np.float32), image.astype(np.float32), concept, weak


def poison_clip_like(clean: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], c_p: int, p: int, kind: str,
                     strength: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[int]]:
    """The clean set plus p poison pairs for each of the plan's first ``c_p`` concepts (module docstring;
    :func:`dataset_audit.validation.dirty_label_mix`): (text, image, caption concept, poison mask, poisoned
    concepts)."""
    if kind not in ("dirty", "nightshade"):
        raise InputError(f"poison kind must be dirty or nightshade, got {kind!r}")
    text, image, concept, _ = clean
    return dirty_label_mix(text, image, concept, c_p, p, seed, shift=1.0 if kind == "dirty" else strength)


def space_statistics(clean: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], seed: int = 0) -> dict[str, float]:
    """The clean set's matched cosines (all, well and weakly aligned), cosines of pairs across concepts (text of
    one pair, image of another), and concept sizes: what makes the space CLIP-like."""
    text, image, concept, weak = clean
    cos = np.sum(text * image, axis=1, dtype=np.float64)
    rng = np.random.default_rng(seed)
    i, j = rng.integers(len(text), size=(2, 20_000))
    across = concept[i] != concept[j]
    cross = np.sum(text[i[across]] * image[j[across]], axis=1, dtype=np.float64)
    sizes = np.bincount(concept)
    return {"pairs": len(text), "matched_mean": float(cos.mean()), "matched_sd": float(cos.std()),
            "well_aligned_mean": float(cos[~weak].mean()), "weak_mean": float(cos[weak].mean()),
            "weak_fraction": float(weak.mean()), "across_mean": float(cross.mean()), "across_sd": float(cross.std()),
            "size_min": int(sizes.min()), "size_max": int(sizes.max())}


#: The grid of ``python -m dataset_audit.realistic``: poison kinds with their strength, p, C_P.
KINDS: tuple[tuple[str, float], ...] = (("dirty", 1.0), ("nightshade", 0.9), ("nightshade", 0.6), ("nightshade", 0.3))


def validate_grid(cfg: ClipLikeConfig, c_ps: Sequence[int], ps: Sequence[int], seeds: Sequence[int],
                  kinds: Sequence[tuple[str, float]] = KINDS, log=lambda m: None) -> list[dict[str, Any]]:
    """One row per (seed, kind, strength, p, C_P): the audit's scores against the truth (module docstring)."""
    rows = []
    names = [f"concept {k}" for k in range(cfg.n_concepts)]
    for seed in seeds:
        clean = clip_like_clean(cfg, seed)
        for kind, strength in kinds:
            for p in ps:
                for c_p in c_ps:
                    t, v, c, truth, chosen = poison_clip_like(clean, c_p, p, kind, strength, seed)
                    row = score_audit(t, v, [names[k] for k in c], names, truth, chosen,
                                      AuditConfig(predict=False, seed=seed))
                    cos_ap = rank_quality(-np.sum(t * v, axis=1, dtype=np.float64), truth).average_precision
                    gap_ap = rank_quality(concept_disagreement(v, c), truth).average_precision
                    rows.append({"seed": seed, "kind": kind, "strength": strength, "p": p, **row,
                                 "ap_of_cosine": cos_ap, "ap_of_disagreement": gap_ap,
                                 "c_p_error": abs(row["estimated_c_p"] - c_p) / c_p if c_p else float("nan")})
                    log(f"seed {seed} {kind} {strength:g} p {p} C_P {c_p}: precision {row['precision']:.3f} "
                        f"recall {row['recall']:.3f} AP {row['ap_of_score']:.3f} C_P-hat {row['estimated_c_p']}")
    return rows


def _parser() -> ArgumentParser:
    d = ClipLikeConfig()
    p = ArgumentParser(prog="python -m dataset_audit.realistic", description=__doc__.splitlines()[0].strip("`: "))
    p.add_argument("--out", type=path_arg, required=True, help="folder for realistic.csv and space.csv")
    p.add_argument("--poisoned-concepts", default="5,10,20", metavar="LIST", help="C_P values (default 5,10,20)")
    p.add_argument("--poison-per-concept", default="5,10,20,40,80", metavar="LIST", help="p values")
    p.add_argument("--seeds", default="0,1,2", metavar="LIST", help="seeds, a list (default 0,1,2)")
    p.add_argument("--n-concepts", type=int, default=d.n_concepts, help=f"K (default {d.n_concepts})")
    p.add_argument("--dim", type=int, default=d.dim, help=f"embedding width (default {d.dim})")
    p.add_argument("--mean-size", type=int, default=d.mean_size, help=f"mean pairs per concept (default {d.mean_size})")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    import sys

    args = _parser().parse_args(argv)
    cfg = ClipLikeConfig(n_concepts=args.n_concepts, dim=args.dim, mean_size=args.mean_size)
    c_ps = parse_int_list(args.poisoned_concepts, name="--poisoned-concepts")
    ps = parse_int_list(args.poison_per_concept, name="--poison-per-concept")
    seeds = parse_seeds(args.seeds)
    if max(c_ps) >= cfg.n_concepts or min(c_ps) < 1 or min(ps) < 1:
        raise InputError(f"--poisoned-concepts must lie in 1..{cfg.n_concepts - 1} and --poison-per-concept be >= 1")
    if dry_run(args, "python -m dataset_audit.realistic", {"space": asdict(cfg), "C_P": c_ps, "p": ps,
                                                            "seeds": seeds, "kinds": KINDS, "out": args.out}):
        return 0
    with hold_output(args.out) as out:
        space = [{"seed": s, **space_statistics(clip_like_clean(cfg, s), s)} for s in seeds]
        atomic_write_text(out / "space.csv", csv_text(space))
        rows = validate_grid(cfg, c_ps, ps, seeds, log=lambda m: print(m, file=sys.stderr, flush=True))
        atomic_write_text(out / "realistic.csv", csv_text(rows))
    s = space[0]
    print(f"space: matched cosine {s['matched_mean']:.3f} ± {s['matched_sd']:.3f} (weak captions "
          f"{s['weak_mean']:.3f}), across concepts {s['across_mean']:.3f}; {len(rows)} mixes -> {out}/realistic.csv")
    return 0


def cli() -> None:
    """The ``implosion-audit-realistic`` console script."""
    run_main(main, prog="implosion-audit-realistic")


if __name__ == "__main__":
    run_main(main, prog="python -m dataset_audit.realistic")
