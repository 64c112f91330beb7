"""``python -m theory.check``: every symbolic and numeric check of the theory, one verdict line each.

Each line is ``name  PASS|FAIL  figure`` where the figure is the number or expression behind the verdict.
Exit status 0 when all pass, 1 otherwise (2 for bad usage). ``--verbose`` also prints the derivatives and the
exact sign conditions. What is checked:

- the block model's relation counts against brute-force counting on its labels;
- the closed form AD(C_P) (all four configurations) against :func:`theory.ad.alignment_difficulty` on explicit,
  randomly rotated embedding instances (≤ 1e-9);
- the numerator of dAD/dC_P is affine in C_P (so the sign condition on an interval is two inequalities);
- Theorem 4.2: a positivity certificate for dAD/dC_P under the theorem's assumptions, per configuration;
- the exact condition against the real AD: on random instances *outside* the idealised assumptions, the sign the
  symbolic numerator predicts for [C, C+1] matches the sign of AD(C+1) − AD(C) computed by theory.ad;
- the boundary: with poisons the majority or with poisons better aligned than benign pairs, AD does not grow —
  the theorem's "there exists a configuration" is not "always"; with concepts not separated at all, dirty-label
  poisons still raise AD (through D_fea alone) — separation is sufficient, not necessary.

Every Theorem 4.2 verdict names its domain: the block model with *identical* cross-modal structure (within- and
across-concept similarities equal in both spaces), dirty-label poisons (s_p ≤ s), and, in add mode, poison the
minority of the data (C_P·p < K·m). The implosion points of the simulator (V = C_P·p/(K·m) ≳ 2) and of CLIP-like
spaces (text across ≈ 0.75 vs image across ≈ 0.25) lie outside it: there the theorem says nothing, and the
numeric checks below say what happens instead.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import sympy as sp

from theory.ad import alignment_difficulty
from theory.block_model import BlockModel, relation_counts
from implosion_base.cli import ArgumentParser, dry_run, run_main
from theory.symbolic import (
    SYM,
    derivative_parts,
    prove_growth,
    readable_derivatives,
    structure_turning_point,
)

CONFIGS = list(itertools.product(("add", "replace"), ("disjoint", "shared")))


@dataclass(frozen=True)
class Verdict:
    name: str
    passed: bool
    figure: str


def _instance(mode: str, targets: str, **kw: float) -> BlockModel:
    base = dict(n_concepts=10, benign_per_concept=5, poison_per_concept=3, text_within=0.7, text_across=0.15,
                image_within=0.55, image_across=0.05, benign_cos=0.35, poison_cos=0.1)
    base.update(kw)
    return BlockModel(mode=mode, targets=targets, **base)  # type: ignore[arg-type]


def check_counts() -> Verdict:
    """Relation counts of the closed form equal brute-force counts over the instance's labels."""
    worst = 0
    cases = 0
    for mode, targets in CONFIGS:
        bm = _instance(mode, targets)
        for c in range(bm.max_poisoned + 1):
            tl, il, _ = bm.labels(c)
            iu = np.triu_indices(tl.size, 1)
            st, si = tl[iu[0]] == tl[iu[1]], il[iu[0]] == il[iu[1]]
            brute = {"same": np.sum(st & si), "text": np.sum(st & ~si), "image": np.sum(~st & si),
                     "cross": np.sum(~st & ~si), "n": tl.size}
            closed = relation_counts(bm.n_concepts, bm.benign_per_concept, bm.poison_per_concept, c, mode, targets)
            worst = max(worst, max(abs(float(closed[k]) - float(brute[k])) for k in brute))
            cases += 1
    return Verdict("relation counts = brute-force counts", worst == 0, f"{cases} cases, max |diff| = {worst:g}")


def check_closed_form_vs_ad() -> Verdict:
    """Closed form equals theory.ad on explicit rotated instances, every configuration and C_P."""
    worst = 0.0
    cases = 0
    for (mode, targets), laion in itertools.product(CONFIGS, (True, False)):
        bm = _instance(mode, targets, laion_scale=laion, alpha=0.7)
        for c in range(bm.max_poisoned + 1):
            t, v = bm.embed(c, rotate_seed=c)
            exact = alignment_difficulty(t, v, alpha=bm.alpha, laion_scale=laion, block=17)
            closed = bm.ad(c)
            worst = max(worst, abs(exact.ad - closed.ad), abs(exact.d_fea - closed.d_fea),
                        abs(exact.d_stru - closed.d_stru))
            cases += 1
    return Verdict("closed form AD(C_P) = theory.ad on embeddings", worst <= 1e-9,
                   f"{cases} instances, max |diff| = {worst:.1e}")


def check_affine_numerator() -> Verdict:
    degrees = {f"{m}/{t}": sp.Poly(derivative_parts(m, t)[0], SYM.C).degree() for m, t in CONFIGS}  # type: ignore[arg-type]
    return Verdict("numerator of dAD/dC_P is affine in C_P", all(d <= 1 for d in degrees.values()),
                   ", ".join(f"{k}: deg {d}" for k, d in degrees.items()))


#: The domain every Theorem 4.2 verdict holds on (theory.symbolic.theorem_assumptions): the block model with
#: identical cross-modal structure (a_t = a_v, b_t = b_v), dirty-label poisons (s_p <= s), and, when poisons are
#: added, poison the minority (C_P p < K m); when they replace, p <= m.
DOMAIN = {"add": "identical cross-modal structure, s_p <= s, C_P*p < K*m",
          "replace": "identical cross-modal structure, s_p <= s, p <= m"}


def check_theorem(mode: str, targets: str, c_min: int) -> Verdict:
    proof = prove_growth(mode, targets, c_min)  # type: ignore[arg-type]
    domain = "C_P >= 0" if c_min == 0 else f"C_P >= {c_min}"
    return Verdict(
        f"Theorem 4.2 ({mode}/{targets}, {domain}; {DOMAIN[mode]}): dAD/dC_P > 0",
        proof.proved,
        f"dD_stru/dC_P = {sp.sstr(proof.d_stru)}",
    )


def check_shared_start() -> Verdict:
    """At C_P = 0 the shared-target derivative can be negative (when p > 4m): the certificate must not claim it."""
    proof = prove_growth("add", "shared", 0)
    s = SYM
    value = proof.d_stru.subs({s.c: 0, s.g: 1, s.q: 1, s.p: 10, s.m: 1})
    return Verdict("shared targets at C_P = 0 need p < 4m (not certified)", (not proof.stru_positive) and value < 0,
                   f"dD_stru/dC_P at p=10, m=1: {float(value):.4f}")


def check_turning_point() -> Verdict:
    num, root = structure_turning_point()
    s = SYM
    ok = sp.simplify(root - s.K * s.m / s.p) == 0
    return Verdict("idealised (identical structure, add): D_stru grows iff C_P*p < K*m", bool(ok), f"numerator {sp.sstr(num)}, root C_P = {root}")


def _sign_agreement(seed: int = 0, trials: int = 60) -> tuple[int, int, int]:
    """Random instances outside the idealised assumptions: symbolic sign of N on [C, C+1] vs theory.ad."""
    rng = np.random.default_rng(seed)
    s = SYM
    agree = decided = total = 0
    numerators = {cfg: derivative_parts(*cfg)[0] for cfg in CONFIGS}  # type: ignore[misc]
    for _ in range(trials):
        mode, targets = CONFIGS[rng.integers(len(CONFIGS))]
        m = int(rng.integers(2, 6))
        p = int(rng.integers(1, m + 1)) if mode == "replace" else int(rng.integers(1, 12))
        a_t, a_v = rng.uniform(0.3, 0.8, size=2)
        b_t, b_v = rng.uniform(0.0, 0.3, size=2)
        room = np.sqrt((1 - a_t) * (1 - a_v))
        s_b, s_p = rng.uniform(0.0, room, size=2)
        bm = BlockModel(n_concepts=int(rng.integers(4, 9)), benign_per_concept=m, poison_per_concept=p,
                        text_within=a_t, text_across=b_t, image_within=a_v, image_across=b_v, benign_cos=s_b,
                        poison_cos=s_p, alpha=float(rng.uniform(0, 1)), laion_scale=bool(rng.integers(2)),
                        mode=mode, targets=targets)  # type: ignore[arg-type]
        f_b, f_p = bm.feature_terms()
        g = bm.gaps()
        values = {s.K: bm.n_concepts, s.m: m, s.p: p, s.alpha: bm.alpha, s.f_b: f_b, s.f_p: f_p,
                  s.d_s: g.same, s.d_T: g.text, s.d_I: g.image, s.d_c: g.cross}
        num = sp.lambdify(s.C, numerators[(mode, targets)].subs(values))
        c = int(rng.integers(0, bm.max_poisoned))
        lo, hi = float(num(c)), float(num(c + 1))
        total += 1
        if min(abs(lo), abs(hi)) < 1e-9 or np.sign(lo) != np.sign(hi):
            continue  # derivative changes sign inside [C, C+1]: no prediction
        decided += 1
        diff = alignment_difficulty(*bm.embed(c + 1), alpha=bm.alpha, laion_scale=bm.laion_scale).ad - \
            alignment_difficulty(*bm.embed(c), alpha=bm.alpha, laion_scale=bm.laion_scale).ad
        agree += int(np.sign(diff) == np.sign(lo))
    return agree, decided, total


def check_condition_vs_ad() -> Verdict:
    agree, decided, total = _sign_agreement()
    return Verdict("exact sign condition = sign of theory.ad differences", decided > total // 2 and agree == decided,
                   f"{agree}/{decided} agree ({total - decided} straddle a root)")


def _ad_path(bm: BlockModel, cs: Sequence[int]) -> list[float]:
    return [alignment_difficulty(*bm.embed(c), alpha=bm.alpha, laion_scale=bm.laion_scale).ad for c in cs]


def check_poison_majority() -> Verdict:
    """Outside: poisons added beyond the benign volume (and as well aligned as benign pairs) → AD falls."""
    bm = _instance("add", "disjoint", n_concepts=12, benign_per_concept=3, poison_per_concept=12, poison_cos=0.35)
    cs = list(range(bm.max_poisoned + 1))
    ad = _ad_path(bm, cs)
    turn = bm.n_concepts * bm.benign_per_concept / bm.poison_per_concept  # K m / p
    rising = all(b > a for a, b, c in zip(ad, ad[1:], cs) if c + 1 <= turn)
    falling = all(b < a for a, b, c in zip(ad, ad[1:], cs) if c >= turn)
    return Verdict("outside: poison majority (C_P p > K m) -> AD falls", rising and falling and ad[-1] < max(ad),
                   f"AD(C_P=0..{cs[-1]}) = " + " ".join(f"{x:.4f}" for x in ad) + f"; turn at C_P = {turn:g}")


def check_aligned_poisons() -> Verdict:
    """Outside: poison pairs better aligned than benign ones (s_p > s, feature-space poisons) → AD falls."""
    bm = _instance("replace", "disjoint", benign_cos=0.22, poison_cos=0.36, alpha=0.8)
    cs = list(range(bm.max_poisoned + 1))
    ad = _ad_path(bm, cs)
    return Verdict("outside: s_p > s (aligned poisons) -> AD falls", all(b < a for a, b in zip(ad, ad[1:])),
                   f"AD(C_P=0..{cs[-1]}) = " + " ".join(f"{x:.4f}" for x in ad))


def check_not_separated() -> Verdict:
    """Outside the theorem's premise: concepts not separated at all (within = across in both spaces, so the
    graphs carry no concept structure and D_stru cannot move), dirty-label poisons (s_p < s) → AD still grows, all
    through D_fea. Separation is sufficient for growth, not necessary. This can fail: were D_stru to move, or
    D_fea not to grow, the path would not be strictly increasing with a constant D_stru."""
    bm = _instance("replace", "disjoint", text_within=0.5, text_across=0.5, image_within=0.3, image_across=0.3,
                   benign_cos=0.35, poison_cos=0.1)
    cs = list(range(bm.max_poisoned + 1))
    res = [alignment_difficulty(*bm.embed(c, rotate_seed=c), alpha=bm.alpha) for c in cs]
    ad = [r.ad for r in res]
    stru = [r.d_stru for r in res]
    grows = all(b > a for a, b in zip(ad, ad[1:]))
    flat = max(stru) - min(stru) < 1e-9
    return Verdict("outside: no separation, s_p < s -> AD still grows (D_fea)", grows and flat,
                   f"AD(C_P=0..{cs[-1]}) = " + " ".join(f"{x:.4f}" for x in ad) +
                   f"; D_stru spread {max(stru) - min(stru):.1e}")


def check_perfect_alignment() -> Verdict:
    """AD = 0 when each image equals its text (graphs agree, pairs perfectly aligned)."""
    x = np.random.default_rng(0).normal(size=(40, 16))
    r = alignment_difficulty(x, 3.0 * x)
    return Verdict("AD = 0 for identical text and image graphs", abs(r.ad) < 1e-12, f"AD = {r.ad:.1e}")


CHECKS: list[Callable[[], Verdict]] = [
    check_perfect_alignment,
    check_counts,
    check_closed_form_vs_ad,
    check_affine_numerator,
    lambda: check_theorem("add", "disjoint", 0),
    lambda: check_theorem("replace", "disjoint", 0),
    lambda: check_theorem("replace", "shared", 0),
    lambda: check_theorem("add", "shared", 1),
    check_shared_start,
    check_turning_point,
    check_condition_vs_ad,
    check_poison_majority,
    check_aligned_poisons,
    check_not_separated,
]


def _verbose() -> None:
    print("\nDerivatives (dAD/dC_P = alpha dD_fea/dC_P + (1-alpha) dD_stru/dC_P; its numerator over the common")
    print("positive denominator is affine in C_P, so AD grows on [C0, C1] iff that numerator is > 0 at C0 and C1):")
    for mode, targets in CONFIGS:
        d_fea, num, den = readable_derivatives(mode, targets)  # type: ignore[arg-type]
        print(f"  {mode}/{targets}:")
        print(f"    dD_fea/dC_P  = {sp.sstr(d_fea)}")
        print(f"    dD_stru/dC_P = ({sp.sstr(num)}) / ({sp.sstr(den)})")
    print("  gaps: delta_s=|a_v-a_t|, delta_T=|b_v-a_t|, delta_I=|a_v-b_t|, delta_c=|b_v-b_t|; f = 1 - sigma(cos)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m theory.check", description=__doc__.splitlines()[0])
    parser.add_argument("--verbose", action="store_true", help="also print derivatives and sign conditions")
    args = parser.parse_args(argv)
    if dry_run(args, "python -m theory.check", {"checks": len(CHECKS), "verbose": args.verbose}):
        return 0
    verdicts = []
    for check in CHECKS:
        v = check()
        verdicts.append(v)
        print(f"{v.name:<66} {'PASS' if v.passed else 'FAIL'}  {v.figure}", flush=True)
    failed = sum(not v.passed for v in verdicts)
    print(f"{len(verdicts) - failed}/{len(verdicts)} checks passed")
    if args.verbose:
        _verbose()
    return 1 if failed else 0


def cli() -> None:
    """The ``implosion-check`` console script: :func:`main` behind the one-line error boundary."""
    run_main(main, prog="implosion-check")


if __name__ == "__main__":
    run_main(main, prog="python -m theory.check")
