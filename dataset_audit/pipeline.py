"""The audit as a pipeline of named steps: AD and each pair's share of it (exact or sampled), the flags, the
concept of each pair, the poisoned concepts and the estimates, the margin.

:func:`audit` returns plain data — ``pairs`` (per-pair arrays), ``concepts`` (one row per concept), ``summary``
(what the report states) and ``names`` — so a caller (the report, the validation, a notebook) reads it without the
toolkit's types.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from dataset_audit.concept_view import assign_concepts, cluster_centres
from dataset_audit.config import AuditConfig
from dataset_audit.estimates import poisoned_concepts
from dataset_audit.execution import Execution, file_stamps
from dataset_audit.flags import flag_pairs, modified_z
from dataset_audit.margin import margin
from implosion_base.errors import InputError
from implosion_base.shards import PairShards
from theory.ad import (ADResult, pair_attribution_streamed, pair_scores, pair_terms_streamed, partner_group, ranking,
                       sampled_result)

@dataclass(frozen=True)
class ADShares:
    """Step 1's result: AD, each pair's share of it and its s_i and cosine, how AD was computed, and the concept
    of each pair when the sampled pass assigned it on the way (else None)."""

    result: ADResult
    share: np.ndarray
    s_i: np.ndarray
    cos: np.ndarray
    mode: dict[str, Any]
    concept: np.ndarray | None = None


def audit(src: PairShards, cfg: AuditConfig, *, concept_names: list[str] | None = None,
          execution: Execution = Execution()) -> dict[str, Any]:
    """Everything the report shows (:mod:`dataset_audit`), as plain data: ``pairs`` (per-pair arrays),
    ``concepts``, ``summary``, ``names``."""
    cfg.validate()
    if src.n < 3:
        raise InputError(f"an audit needs at least 3 pairs, got {src.n}")
    rows = cfg.rows(src.d, src.n, concurrent=max(1, execution.workers))
    centres, how = cluster_centres(src, cfg) if concept_names is None else (None, {})
    ad = ad_shares(src, cfg, rows, centres, execution)
    pairs, rule = pair_flags(ad, cfg)
    labels, names, how = pair_concepts(src, concept_names, centres, how, ad.concept, rows)
    concept_rows, q = poisoned_concepts(labels, pairs["flagged"], len(names), rule["false_flag_rate"])
    for r in concept_rows:
        r["name"] = names[r["concept"]]
    summary = summarise(src, cfg, ad, rule, pairs["flagged"], how, concept_rows, q)
    if cfg.predict:
        summary["margin"] = margin(src, labels, pairs["flagged"], len(names), summary["estimated_m"],
                                   summary["estimated_p"], summary["estimated_c_p"], cfg)
    return {"pairs": {**pairs, "concept": labels}, "concepts": concept_rows, "summary": summary, "names": names}


def ad_shares(src: PairShards, cfg: AuditConfig, rows: int, centres: np.ndarray | None,
              execution: Execution) -> ADShares:
    """Step 1: exact AD and attribution when n ≤ ``exact_max``, else the sampled pass (D_fea exact, each pair's
    structure term from ``partners`` random partners; the nearest centroid of every pair on the way)."""
    from dataset_audit.passes import sampled_pass

    n = src.n
    if n <= cfg.exact_max:
        terms = pair_terms_streamed(src, rows)
        att = pair_attribution_streamed(src, cfg.alpha, cfg.laion_scale, rows=rows, terms=terms)
        return ADShares(att.result, att.contribution, att.score, terms.cos, {
            "ad_mode": "exact",
            "ad_why": f"n = {n:,} <= --exact-max {cfg.exact_max:,}: all n(n-1)/2 pair terms computed"})
    identity = {"shards": list(src.names), "sizes": np.diff(src.offsets).tolist(), "d": src.d, "dtype": str(src.dtype),
                "files": file_stamps(src.files if execution.paths else ())}
    done = sampled_pass(src, list(execution.paths) if execution.paths else None, features=execution.features,
                        partners=cfg.partners, seed=cfg.seed, rows=rows, centres=centres, workers=execution.workers,
                        dask=execution.dask, ray=execution.ray, record_dir=execution.record_dir, identity=identity,
                        log=execution.log or (lambda msg: None))
    st = done.structure
    f = 1.0 - pair_scores(done.terms.cos, cfg.laion_scale)
    result = sampled_result(float(f.mean()), st.d_stru, st.d_stru_ci95, n, st.n_terms, cfg.alpha, cfg.laion_scale)
    share = cfg.alpha * f / n + (1 - cfg.alpha) * st.row_sums / n**2
    why = (f"n = {n:,} > --exact-max {cfg.exact_max:,}: D_fea exact over every pair; each pair's structure term "
           f"from {cfg.partners} random partners (shared within its group of {partner_group(n):,} rows), D_stru "
           f"from those {st.n_terms:,} pair terms with a 95% CI over the {-(-n // partner_group(n)):,} groups")
    return ADShares(result, share, 1.0 - f, done.terms.cos, {"ad_mode": "sampled", "ad_why": why,
                                                              "execution": done.how}, done.concept)


def pair_flags(ad: ADShares, cfg: AuditConfig) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Step 2: each pair's score n·c_i, its modified z and rank, and the flags on the pair cosines
    (:func:`dataset_audit.flags.flag_pairs`: the mixture, or the robust outlier rule); and the rule that flagged."""
    n = len(ad.share)
    score = n * ad.share
    flagged, posterior, rule = flag_pairs(ad.cos, cfg.flag_z, seed=cfg.seed)
    rank = np.empty(n, dtype=np.int64)
    rank[ranking(score)] = np.arange(1, n + 1)
    return {"score": score, "z": modified_z(score), "flagged": flagged, "rank": rank, "s_i": ad.s_i,
            "cos": ad.cos, "posterior": posterior}, rule


def pair_concepts(src: PairShards, concept_names: list[str] | None, centres: np.ndarray | None,
                  how: dict[str, Any], assigned: np.ndarray | None, rows: int
                  ) -> tuple[np.ndarray, list[str], dict[str, Any]]:
    """Step 3: each pair's concept — the name its caption contains (``concept_names``), or its nearest k-means
    centroid (assigned by the sampled pass, or here block by block) — with the concepts' names and how."""
    if concept_names is None:
        labels = assigned if assigned is not None else assign_concepts(src, centres, rows)
        return labels, [f"cluster {j}" for j in range(len(centres))], how
    from implosion_base.captions import concept_of_captions

    if "caption" not in src.labels:
        raise InputError("--concepts-file matches names in captions, but the embedding files hold no 'caption' "
                         "array (python -m empirical.embed writes one)")
    labels, names, why = concept_of_captions(list(src.labels["caption"]), names=concept_names)
    return labels, names, {"method": "names of --concepts-file found in the captions", "k": f"{len(names)} (given)",
                           "left_out": why}


def summarise(src: PairShards, cfg: AuditConfig, ad: ADShares, rule: dict[str, Any], flagged: np.ndarray,
              how: dict[str, Any], concept_rows: list[dict[str, Any]], q: float) -> dict[str, Any]:
    """Step 4: what the report states — AD and how, the flag rule and count, the concept view, and the estimates
    Ĉ_P (poisoned concepts), p̂ (median flagged pairs per poisoned concept), m̂ (median unflagged pairs)."""
    poisoned = [r for r in concept_rows if r["poisoned"]]
    r = ad.result
    return {
        "n": src.n, "shards": len(src.names), "layouts": src.layouts, "d": src.d, **ad.mode, "ad": r.ad, "d_fea": r.d_fea,
        "d_stru": r.d_stru, "ad_ci95": r.ci95, "d_stru_ci95": r.d_stru_ci95, "alpha": cfg.alpha,
        "laion_scale": cfg.laion_scale, "flag_rule": rule["rule"], "flag_why": rule["why"],
        "flag_cosine_cut": rule["cosine_cut"], "mixture": rule["mixture"], "flagged": int(flagged.sum()),
        "concepts": how, "n_concepts": len(concept_rows), "background_flag_rate": q,
        "poisoned_rule": f"binomial P(X >= flagged | pairs, q = {q:.4f}) < 0.01/K", "estimated_c_p": len(poisoned),
        "estimated_p": int(np.median([r["flagged"] for r in poisoned])) if poisoned else 0,
        "estimated_m": int(np.median([r["pairs"] - r["flagged"] for r in concept_rows if r["pairs"]])),
    }
