r"""``python -m simulate.audit EMB... --out DIR``: how poisoned is a training set, and how close to implosion?

Named for what it does to a data set before training, and placed in ``simulate`` because its last step is the
simulator's prediction (it reads embeddings; ``python -m empirical.embed`` makes them from an image-text folder).

**Input.** One or many embedding shards (:func:`implosion_base.shards.open_shards`): ``.npz`` / ``.safetensors``
with ``text`` and ``image`` (and, in ``.npz``, ``file_name`` / ``caption`` per pair), or LAION-style
``text_emb_XXXX.npy`` / ``img_emb_XXXX.npy`` pairs, memory-mapped, float16/32/64, with their per-pair metadata
from a ``metadata_XXXX.csv`` beside them when there is one; ``--metadata CSV`` gives one side CSV for all pairs in
order (:func:`implosion_base.pairs_file.load_side_metadata`: ``file_name``/``url`` and ``caption``/``text`` columns). Shards
are read block by block: memory stays within ``--memory`` whatever n.

**AD.** Exact (:func:`theory.ad.pair_attribution_streamed`, block pair by block pair) when the n² pair terms are
affordable (n ≤ ``--exact-max``); otherwise D_fea exact over every pair and D_stru from every pair against
``--partners`` random partners, with its 95% interval (:func:`theory.ad.structure_sampled`, one pass). The report
says which and why. The sampled pass is cut into blocks of rows (:mod:`simulate.audit_passes`) that run here, in
``--workers`` local processes or on a Dask cluster (``--dask ADDRESS``) with the same numbers everywhere; each
finished block is recorded in ``DIR/blocks/`` so that a killed audit, run again with the same arguments, resumes
(the folder is removed once the report is written).

**Pair suspicion.** Each pair's share of AD, c_i = α(1 − s_i)/n + (1 − α) r_i/n², with r_i its structure row
sum (exact, or estimated from ``--partners`` random partners), reported as the score n·c_i and its rank. The
flagging rule, stated: a dirty-label pair's caption and image show different concepts, so its text–image cosine
comes from another population than the matched pairs'. A two-component Gaussian mixture is fitted (EM) to the pair
cosines cos(t_i, v_i) and compared with one Gaussian by BIC; when two components win, a pair is flagged when its
posterior probability of belonging to the low-cosine component exceeds 0.5 (else nothing is flagged: the cosines
look like one population; Ashman's D > 2 is also required, so a skewed single population is not split). A global
outlier cut on the score would not do: in a CLIP-like space the matched pairs'
cosines are themselves spread so widely that no single dirty-label pair is an outlier (measured in the tests),
while the two populations still separate. The Iglewicz–Hoaglin modified z-score of the score is reported beside.

**Concepts.** With ``--concepts-file`` (names, one per line) each pair's concept is the name its caption contains
(:mod:`implosion_base.captions`); otherwise the unit text embeddings are clustered by k-means (k-means++ start, Lloyd
iterations, seeded) — captions of one concept embed close together — with K given (``--n-concepts``) or chosen
as the K in 2..``--max-concepts`` with the best mean silhouette on a sample (said in the report). A concept counts
as poisoned when its number of flagged pairs is improbably high for the background flag rate q (the mixture's
expected false-flag rate among matched pairs, so it holds however many concepts are poisoned): one-sided binomial
P(X ≥ f_c | n_c, q) < 0.01/K (Bonferroni).
Hence the estimates Ĉ_P (poisoned concepts), p̂ (median flagged pairs per poisoned concept) and m̂ (median
unflagged pairs per concept).

**Margin.** :func:`simulate.predict.predict` at K, m̂, p̂, Ĉ_P with the concept geometry measured on these
embeddings (:mod:`simulate.calibrate`) and the capacity ``--dim`` (or ``--clean-acc``): the predicted unpoisoned
accuracy now, and the predicted threshold C_P (accuracy < 0.5) at this poison rate, hence how many more concepts
poisoned like these the model would stand — with the spread over simulator seeds, and a plain warning that this
is a model's prediction, not a measurement.

**Output.** ``DIR/pairs.csv`` (index, shard, file_name, caption, cos, s_i, score = n·c_i, z, rank, the mixture's
p_mismatched, flagged, concept),
``DIR/concepts.csv``, ``DIR/report.json``, ``DIR/report.md`` and ``DIR/scores.png``.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from simulate.concepts import nearest_centre, unit_rows
from theory.ad import (DEFAULT_ALPHA, pair_attribution_streamed, pair_scores, pair_terms_streamed, partner_group,
                       ranking, sampled_result)
from implosion_base.cli import ArgumentParser, dry_run, path_arg, run_main
from implosion_base.errors import InputError
from implosion_base.shards import PairShards, open_shards
from implosion_base.pairs_file import load_side_metadata
from implosion_base.files import atomic_write_text, hold_output
from implosion_base.provenance import command_line, git_commit, utc_now
from implosion_base.records import csv_text
from implosion_base.tasks import TaskRecord
from implosion_base.validate import check_alpha, check_scalar, physical_memory

WARNING = ("The margin is the simulator's prediction for a model of the stated capacity trained on data of this "
           "geometry — a model, not a measurement of any real model trained on this data.")


#: Bytes per pair the audit keeps whatever the block size: pair terms, scores, ranks, flags, concepts, row sums.
PER_PAIR_BYTES = 192


@dataclass(frozen=True)
class AuditConfig:
    """Knobs of an audit (see the module docstring)."""

    alpha: float = DEFAULT_ALPHA
    laion_scale: bool = True
    exact_max: int = 20_000
    partners: int = 64
    flag_z: float = 3.5  # the modified z-score reported beside the score (not the flag rule)
    memory_gib: float = 2.0
    n_concepts: int | None = None
    max_concepts: int = 40
    dim: int | None = 64
    clean_acc: float | None = None
    predict: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        check_alpha(self.alpha)
        check_scalar(self.exact_max, "--exact-max", low=2, integer=True)
        check_scalar(self.partners, "--partners", low=2, integer=True)
        check_scalar(self.flag_z, "--flag-z", low=0.0, low_open=True)
        check_scalar(self.memory_gib, "--memory (GiB)", low=0.0, low_open=True)
        check_scalar(self.max_concepts, "--max-concepts", low=2, integer=True)
        for value, name, low in ((self.n_concepts, "--n-concepts", 2), (self.dim, "--dim", 3)):
            if value is not None:
                check_scalar(value, name, low=low, integer=True)
        if self.clean_acc is not None:
            check_scalar(self.clean_acc, "--clean-acc", low=0.0, high=1.0, low_open=True, high_open=True)
        check_scalar(self.seed, "--seed", low=0, high=2**32, high_open=True, integer=True)

    def rows(self, d: int, n: int = 0, concurrent: int = 1) -> int:
        """Pairs per block: what the budget leaves after the per-pair arrays every audit keeps (about
        :data:`PER_PAIR_BYTES` per pair) must hold ``concurrent`` blocks' joint rows (float64, 2d wide) in a few
        copies (one block per worker process). A budget too small for that at 256 pairs a block is an InputError
        saying how much is needed. The numbers never depend on the block size (only the memory does)."""
        free = self.memory_gib * 2**30 - PER_PAIR_BYTES * n
        per_row = 8 * 2 * d * 6 * concurrent
        if free < 256 * per_row:
            need = (PER_PAIR_BYTES * n + 256 * per_row) / 2**30
            raise InputError(f"--memory {self.memory_gib:g} GiB cannot hold the per-pair results of {n:,} pairs and "
                             f"one block of width {d}; give at least --memory {math.ceil(need * 10) / 10:g}")
        return int(min(1 << 20, free / per_row))


# ---------------------------------------------------------------------------------------------------------------
# the pieces


def mixture_flags(x: np.ndarray, *, iters: int = 200) -> tuple[np.ndarray, dict[str, Any]]:
    """Posterior probability of the low-mean component of a two-component 1-D Gaussian mixture fitted by EM to
    ``x`` (started at the lower and upper quartiles) — zero everywhere unless two populations are clearly there:
    two components have the lower BIC *and* Ashman's D = √2·|μ₁ − μ₂|/√(σ₁² + σ₂²) > 2 (the usual criterion for
    a clean separation; a merely skewed single population passes BIC but not D). Also the fit, with the matched
    population's expected false-flag rate (its responsibility-weighted share of flagged pairs)."""
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    mu1, sd1 = float(x.mean()), float(x.std()) or 1e-12
    ll1 = float(np.sum(-0.5 * ((x - mu1) / sd1) ** 2 - np.log(sd1 * math.sqrt(2 * math.pi))))
    bic1 = -2 * ll1 + 2 * math.log(n)
    mu = np.percentile(x, [25, 75]).astype(np.float64)
    sd = np.array([sd1, sd1]) / 2
    w = np.array([0.5, 0.5])
    ll = -np.inf
    for _ in range(iters):
        dens = w / (sd * math.sqrt(2 * math.pi)) * np.exp(-0.5 * ((x[:, None] - mu) / sd) ** 2)
        total = dens.sum(1, keepdims=True) + 1e-300
        resp = dens / total
        new_ll = float(np.log(total).sum())
        nk = resp.sum(0) + 1e-12
        w, mu = nk / n, (resp * x[:, None]).sum(0) / nk
        sd = np.sqrt((resp * (x[:, None] - mu) ** 2).sum(0) / nk) + 1e-6
        if new_ll - ll < 1e-9 * abs(new_ll):
            break
        ll = new_ll
    bic2 = -2 * ll + 5 * math.log(n)
    low = int(np.argmin(mu))
    ashman = float(math.sqrt(2) * abs(mu[1] - mu[0]) / math.sqrt(sd[0] ** 2 + sd[1] ** 2))
    two = bool(bic2 < bic1 and ashman > 2)
    post = resp[:, low] if two else np.zeros(n)
    high = resp[:, 1 - low]
    # the matched population's expected false-flag rate: its responsibility-weighted share of flagged pairs
    false_rate = float(np.sum(high * (post > 0.5)) / max(np.sum(high), 1e-12)) if two else 0.0
    fit = {"weights": w.tolist(), "means": mu.tolist(), "sds": sd.tolist(), "bic_one": bic1, "bic_two": bic2,
           "ashman_d": ashman, "two_populations": two, "false_flag_rate": false_rate}
    return post, fit


def modified_z(x: np.ndarray) -> np.ndarray:
    """Iglewicz–Hoaglin modified z-scores 0.6745 (x − median)/MAD (MAD = 0: mean absolute deviation × 1.2533)."""
    x = np.asarray(x, dtype=np.float64)
    med = float(np.median(x))
    mad = float(np.median(np.abs(x - med)))
    if mad > 0:
        return 0.6745 * (x - med) / mad
    mean_ad = float(np.mean(np.abs(x - med)))
    return (x - med) / (1.2533 * mean_ad) if mean_ad > 0 else np.zeros_like(x)


def kmeans(x: np.ndarray, k: int, *, seed: int = 0, iters: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """(centroids, labels) of k-means on the rows of ``x``: k-means++ start, Lloyd iterations until no label
    changes (at most ``iters``); empty clusters re-seeded at the farthest point."""
    rng = np.random.default_rng(seed)
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    if not 1 <= k <= n:
        raise InputError(f"k-means needs 1 <= K <= n, got K = {k}, n = {n}")
    centres = [x[rng.integers(n)]]
    d2 = np.sum((x - centres[0]) ** 2, axis=1)
    for _ in range(1, k):
        centres.append(x[rng.choice(n, p=d2 / d2.sum())] if d2.sum() > 0 else x[rng.integers(n)])
        d2 = np.minimum(d2, np.sum((x - centres[-1]) ** 2, axis=1))
    c = np.array(centres)
    labels = np.full(n, -1)
    for _ in range(iters):
        dist = (x * x).sum(1)[:, None] - 2 * x @ c.T + (c * c).sum(1)[None, :]
        new = dist.argmin(1)
        if np.array_equal(new, labels):
            break
        labels = new
        for j in range(k):
            members = x[labels == j]
            c[j] = members.mean(0) if len(members) else x[dist.min(1).argmax()]
    return c, labels


def silhouette(x: np.ndarray, labels: np.ndarray) -> float:
    """Mean silhouette (cosine distance) of ``labels`` on the unit rows ``x``: (b − a)/max(a, b) per point."""
    d = 1.0 - x @ x.T
    ks = np.unique(labels)
    if len(ks) < 2:
        return -1.0
    mean_to = np.stack([d[:, labels == k].mean(1) for k in ks], axis=1)
    own = np.searchsorted(ks, labels)
    size = np.array([np.sum(labels == k) for k in ks])[own]
    a = mean_to[np.arange(len(x)), own] * size / np.maximum(size - 1, 1)  # exclude the point itself
    mean_to[np.arange(len(x)), own] = np.inf
    b = mean_to.min(1)
    s = np.where(size > 1, (b - a) / np.maximum(np.maximum(a, b), 1e-12), 0.0)
    return float(s.mean())


def _unit(a: np.ndarray) -> np.ndarray:
    """Rows of a shard block (float16 or 32) as float64 unit rows (:func:`simulate.concepts.unit_rows`)."""
    return unit_rows(np.asarray(a, dtype=np.float64))


def cluster_centres(src: PairShards, cfg: AuditConfig) -> tuple[np.ndarray, dict[str, Any]]:
    """k-means centroids of the unit text embeddings, fitted on a sample of at most 20,000 pairs; K given or chosen
    by the best mean silhouette on at most 2,000 sampled pairs. Returns (unit-free centroids k × d, how K was
    chosen). :func:`assign_concepts` (or the sampled pass) then gives every pair its nearest centroid."""
    rng = np.random.default_rng([cfg.seed, 1])
    sample = np.sort(rng.choice(src.n, size=min(src.n, 20_000), replace=False))
    xs = _unit(src.take(sample)[0])
    how: dict[str, Any] = {"method": "k-means of the text embeddings"}
    if cfg.n_concepts is not None:
        k = cfg.n_concepts
        how["k"] = f"{k} (given: --n-concepts)"
    else:
        sub = xs[rng.choice(len(xs), size=min(len(xs), 2_000), replace=False)]
        scores = {}
        for kk in range(2, min(cfg.max_concepts, len(sub) // 5) + 1):
            scores[kk] = silhouette(sub, kmeans(sub, kk, seed=cfg.seed)[1])
        if not scores:
            raise InputError(f"too few pairs ({src.n}) to find concepts by clustering; give --concepts-file")
        k = max(scores, key=lambda kk: (round(scores[kk], 6), -kk))
        how["k"] = f"{k} (best mean silhouette {scores[k]:.3f} over K = 2..{max(scores)} on {len(sub)} pairs)"
        how["silhouette"] = {str(kk): round(s, 4) for kk, s in scores.items()}
    if k > len(xs):
        raise InputError(f"--n-concepts {k} exceeds the {len(xs)} pairs to cluster")
    return kmeans(xs, k, seed=cfg.seed)[0], how


def assign_concepts(src: PairShards, centres: np.ndarray, rows: int) -> np.ndarray:
    """Each pair's nearest centroid by cosine (argmax of ⟨unit(t_i), c_k⟩), block by block."""
    labels = np.empty(src.n, dtype=np.int64)
    for a in range(0, src.n, rows):
        b = min(src.n, a + rows)
        labels[a:b] = nearest_centre(src.block(a, b)[0], centres)
    return labels


def poisoned_concepts(labels: np.ndarray, flagged: np.ndarray, k: int, false_rate: float
                      ) -> tuple[list[dict[str, Any]], float]:
    """Per concept: pairs, flagged pairs, flagged fraction, the binomial p-value of its flag count against the
    background rate q — the matched population's false-flag rate from the mixture (floored at 1/n), which does not
    depend on how many concepts are poisoned — and whether it counts as poisoned (p < 0.01/K); and q."""
    from scipy import stats

    rows = []
    counts = np.bincount(labels[labels >= 0], minlength=k)
    hits = np.bincount(labels[(labels >= 0) & flagged], minlength=k)
    frac = np.divide(hits, counts, out=np.zeros(k), where=counts > 0)
    q = float(max(false_rate, 1.0 / max(1, len(labels))))
    for c in range(k):
        p = float(stats.binom.sf(hits[c] - 1, counts[c], q)) if counts[c] else 1.0
        rows.append({"concept": c, "pairs": int(counts[c]), "flagged": int(hits[c]), "flagged_fraction": float(frac[c]),
                     "p_value": p, "poisoned": bool(counts[c] and p < 0.01 / k)})
    return rows, q


# ---------------------------------------------------------------------------------------------------------------
# the audit


@dataclass(frozen=True)
class Execution:
    """Where the sampled pass runs (:mod:`simulate.audit_passes`): here, in ``workers`` local processes or on the
    Dask scheduler at ``dask``; ``paths`` the shard files (workers open them themselves); ``record_dir`` where
    finished blocks are recorded for a resume. None of it changes a number."""

    workers: int = 0
    dask: str | None = None
    paths: tuple[str, ...] | None = None
    record_dir: Path | None = None
    log: Any = None


def _file_stamps(paths: Sequence[str]) -> list[list]:
    """(name, size, modification time in ns) of every file named in ``paths`` or inside a folder there: a shard
    rewritten since finished blocks were recorded (same sizes, new content) makes the record another
    computation's, never silently reused. Only files count: a folder inside a shard folder (the report folder
    itself, when ``--out`` lies there) is not data."""
    out = []
    for p in map(Path, paths):
        for f in sorted(p.iterdir()) if p.is_dir() else [p]:
            if f.is_file() and not f.name.startswith("."):
                st = f.stat()
                out.append([str(f.resolve()), st.st_size, st.st_mtime_ns])
    return out


def _check_blocks(blocks: Path) -> None:
    """``OUT/blocks`` is where the sampled pass records finished blocks, and the audit removes it when the report is
    written: something there that is not such a record (a user's folder or file) is refused, never removed."""
    if blocks.is_symlink() or (blocks.exists() and not (blocks.is_dir() and (blocks / TaskRecord.HEAD).is_file())):
        raise InputError(f"{blocks} exists and is not an audit's record of finished blocks; it would be removed "
                         "after the report: move it or use another --out")


def audit(src: PairShards, cfg: AuditConfig, *, concept_names: list[str] | None = None,
          execution: Execution = Execution()) -> dict[str, Any]:
    """Everything the report shows (module docstring), as plain data: ``pairs`` (per-pair arrays), ``concepts``,
    ``summary``."""
    from simulate.audit_passes import sampled_pass

    cfg.validate()
    if src.n < 3:
        raise InputError(f"an audit needs at least 3 pairs, got {src.n}")
    n = src.n
    rows = cfg.rows(src.d, n, concurrent=max(1, execution.workers))
    clustered = concept_names is None
    centres, how = cluster_centres(src, cfg) if clustered else (None, {})
    labels = None
    if n <= cfg.exact_max:
        terms = pair_terms_streamed(src, rows)
        att = pair_attribution_streamed(src, cfg.alpha, cfg.laion_scale, rows=rows, terms=terms)
        result, share, s_i = att.result, att.contribution, att.score
        mode = {"ad_mode": "exact",
                "ad_why": f"n = {n:,} <= --exact-max {cfg.exact_max:,}: all n(n-1)/2 pair terms computed"}
    else:
        identity = {"shards": list(src.names), "sizes": np.diff(src.offsets).tolist(), "d": src.d,
                    "dtype": str(src.dtype), "files": _file_stamps(execution.paths or ())}
        done = sampled_pass(src, list(execution.paths) if execution.paths else None, partners=cfg.partners,
                            seed=cfg.seed, rows=rows, centres=centres, workers=execution.workers,
                            dask=execution.dask, record_dir=execution.record_dir, identity=identity,
                            log=execution.log or (lambda msg: None))
        terms, st, labels = done.terms, done.structure, done.concept
        f = 1.0 - pair_scores(terms.cos, cfg.laion_scale)
        result = sampled_result(float(f.mean()), st.d_stru, st.d_stru_ci95, n, st.n_terms, cfg.alpha,
                                cfg.laion_scale)
        share = cfg.alpha * f / n + (1 - cfg.alpha) * st.row_sums / n**2
        s_i = 1.0 - f
        mode = {"ad_mode": "sampled",
                "ad_why": f"n = {n:,} > --exact-max {cfg.exact_max:,}: D_fea exact over every pair; each pair's "
                f"structure term from {cfg.partners} random partners (shared within its group of "
                f"{partner_group(n):,} rows), D_stru from those {st.n_terms:,} pair terms with a 95% CI over the "
                f"{-(-n // partner_group(n)):,} groups", "execution": done.how}
    score = n * share
    z = modified_z(score)
    posterior, fit = mixture_flags(terms.cos)
    flagged = posterior > 0.5
    rank = np.empty(n, dtype=np.int64)
    rank[ranking(score)] = np.arange(1, n + 1)

    if not clustered:
        from implosion_base.captions import concept_of_captions

        if "caption" not in src.labels:
            raise InputError("--concepts-file matches names in captions, but the embedding files hold no 'caption' "
                             "array (python -m empirical.embed writes one)")
        labels, names, why = concept_of_captions(list(src.labels["caption"]), names=concept_names)
        how = {"method": "names of --concepts-file found in the captions", "k": f"{len(names)} (given)",
               "left_out": why}
    else:
        labels = labels if labels is not None else assign_concepts(src, centres, rows)
        names = [f"cluster {j}" for j in range(len(centres))]
    k = len(names)
    concept_rows, q = poisoned_concepts(labels, flagged, k, fit["false_flag_rate"])
    for r in concept_rows:
        r["name"] = names[r["concept"]]
    poisoned = [r for r in concept_rows if r["poisoned"]]
    c_p = len(poisoned)
    p_hat = int(np.median([r["flagged"] for r in poisoned])) if poisoned else 0
    m_hat = int(np.median([r["pairs"] - r["flagged"] for r in concept_rows if r["pairs"]]))
    summary: dict[str, Any] = {
        "n": n, "shards": len(src.names), "d": src.d, **mode, "ad": result.ad, "d_fea": result.d_fea,
        "d_stru": result.d_stru, "ad_ci95": result.ci95, "d_stru_ci95": result.d_stru_ci95,
        "alpha": cfg.alpha, "laion_scale": cfg.laion_scale,
        "flag_rule": "posterior > 0.5 of the low-cosine component of a two-component Gaussian mixture of the pair "
                     "cosines, when BIC prefers two components to one and Ashman's D > 2",
        "mixture": fit,
        "flagged": int(flagged.sum()), "concepts": how, "n_concepts": k, "background_flag_rate": q,
        "poisoned_rule": f"binomial P(X >= flagged | pairs, q = {q:.4f}) < 0.01/K",
        "estimated_c_p": c_p, "estimated_p": p_hat, "estimated_m": m_hat,
    }
    if cfg.predict:
        summary["margin"] = margin(src, labels, flagged, k, m_hat, p_hat, c_p, cfg)
    return {"pairs": {"score": score, "z": z, "flagged": flagged, "rank": rank, "s_i": s_i, "concept": labels,
                      "cos": terms.cos, "posterior": posterior},
            "concepts": concept_rows, "summary": summary, "names": names}


def margin(src: PairShards, labels: np.ndarray, flagged: np.ndarray, k: int, m: int, p: int, c_p: int,
           cfg: AuditConfig) -> dict[str, Any]:
    """The simulator's prediction at the estimated K, m, p, C_P with this data's measured geometry — measured on
    the unflagged pairs, the clean geometry the simulator adds its poisons to (see the module docstring) — or why
    there is none."""
    from dataclasses import replace

    from simulate.calibrate import capacity_for_accuracy, fit_geometry, measure_geometry
    from simulate.concepts import ConceptConfig
    from simulate.predict import Setting, predict, summarise
    from simulate.engine import SweepConfig

    if m < 1:
        return {"prediction": None, "why": "no concept has unflagged pairs"}
    rate = p if c_p else max(1, m)
    rng = np.random.default_rng([cfg.seed, 2])
    usable = np.flatnonzero((labels >= 0) & ~flagged)
    idx = np.sort(rng.choice(usable, size=min(len(usable), 20_000), replace=False))
    t, v = src.take(idx)
    geometry = measure_geometry(_unit(t), _unit(v), labels[idx], seed=cfg.seed)
    base = fit_geometry(geometry, k, ConceptConfig(n_concepts=k).dim)
    if cfg.clean_acc is not None:
        dim, _ = capacity_for_accuracy(SweepConfig(concepts=base, benign_per_concept=m), cfg.clean_acc)
        capacity = f"d = {dim}, calibrated to clean accuracy {cfg.clean_acc}"
    else:
        dim = cfg.dim
        capacity = f"d = {dim} (given; the real model's capacity is not known to the audit)"
    concepts = replace(base, dim=dim)
    asked = tuple(sorted({0, min(c_p, k - 1)}))
    setting = Setting(k, m, (rate,), asked, seeds=(0, 1, 2), ad_samples=20_000)
    rows, marks = predict(setting, concepts)
    summary = {r["c_p"]: r for r in summarise(rows)}
    now = summary[asked[-1]]
    threshold = marks[0]["threshold_c_p"]
    more = None if threshold == "none" else max(0.0, float(threshold) - c_p)
    return {"geometry": geometry.as_dict(), "capacity": capacity, "p_used": rate,
            "p_source": "estimated p" if c_p else "no poisoned concept found: the rate of a concept's own data (p = m)",
            "predicted_unpoisoned_acc_now": now["unpoisoned_acc"], "predicted_unpoisoned_acc_now_ci95":
            now["unpoisoned_acc_ci95"], "predicted_clean_acc": summary[0]["unpoisoned_acc"],
            "threshold_c_p": threshold, "more_concepts_before_threshold": more, "warning": WARNING}


# ---------------------------------------------------------------------------------------------------------------
# validation on known truth


def dirty_label_mix(text: np.ndarray, image: np.ndarray, concept: np.ndarray, c_p: int, p: int, seed: int
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[int]]:
    """A clean embedded mix plus dirty-label poisons made in embedding space: for each of ``c_p`` seeded concepts
    A with a seeded target B ≠ A, ``p`` pairs (the text of one of A's pairs, the image of one of B's). A joint
    embedder embeds caption and image separately, so these are exactly the embeddings of dirty-label pairs.
    Returns (text, image, concept of each caption, poison mask, poisoned concepts)."""
    rng = np.random.default_rng([seed, 3])
    ks = np.unique(concept)
    chosen = [int(c) for c in rng.permutation(ks)[:c_p]]
    ts, vs, cs = [text], [image], [concept]
    for a in chosen:
        b = int(rng.choice(ks[ks != a]))
        ia = rng.choice(np.flatnonzero(concept == a), size=p)
        ib = rng.choice(np.flatnonzero(concept == b), size=p)
        ts.append(text[ia])
        vs.append(image[ib])
        cs.append(np.full(p, a))
    truth = np.r_[np.zeros(len(text), bool), np.ones(c_p * p, bool)]
    return np.concatenate(ts), np.concatenate(vs), np.concatenate(cs), truth, chosen


def score_audit(t: np.ndarray, v: np.ndarray, captions: Sequence[str], names: list[str], truth: np.ndarray,
                chosen: Sequence[int], cfg: AuditConfig) -> dict[str, Any]:
    """Audit the pairs (t, v) with concept names matched in their captions, and score the audit against the known
    poison pairs ``truth`` and poisoned concepts ``chosen`` (indices into ``names``): flags' precision and recall,
    the average precision of ranking by score, estimated vs true C_P and p, and the audit's AD."""
    from theory.detection import rank_quality

    src = PairShards([("mix", t, v, {"caption": np.asarray(captions, dtype=str)})])
    res = audit(src, cfg, concept_names=names) if cfg.n_concepts is None else audit(src, cfg)
    flagged = res["pairs"]["flagged"]
    ap = rank_quality(res["pairs"]["score"], truth).average_precision  # NaN without poisons
    found = {names.index(r["name"]) for r in res["concepts"] if r["poisoned"] and r["name"] in names}
    s = res["summary"]
    return {"c_p": len(chosen), "n": len(t), "ad": s["ad"], "flagged": int(flagged.sum()),
            "precision": float(np.sum(flagged & truth) / flagged.sum()) if flagged.sum() else float("nan"),
            "recall": float(np.sum(flagged & truth) / truth.sum()) if truth.sum() else float("nan"),
            "ap_of_score": ap, "estimated_c_p": s["estimated_c_p"], "estimated_p": s["estimated_p"],
            "poisoned_found": len(found & set(chosen)), "false_concepts": len(found - set(chosen)),
            "predicted_acc_now": s.get("margin", {}).get("predicted_unpoisoned_acc_now", float("nan")),
            "predicted_threshold_c_p": s.get("margin", {}).get("threshold_c_p", "")}


def clean_set(spec: str, labels_key: str = "concept", seed: int = 0
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """The clean pairs ``--validate`` poisons: an embedded file with concept labels (``python -m empirical.embed
    --builtin``), or ``sim:KxM`` — K concepts × M pairs of the simulator's default CLIP-like space (seeded).
    Returns (text, image, concept, where they come from)."""
    if spec.startswith("sim:"):
        from simulate.concepts import ConceptConfig, make_space
        from simulate.poison import benign_pairs

        try:
            k, m = (int(x) for x in spec[4:].lower().split("x"))
        except ValueError:
            raise InputError(f"--validate {spec!r}: the simulator's clean set is written sim:KxM, e.g. sim:150x40") \
                from None
        check_scalar(k, "--validate sim: K", low=2, integer=True)
        check_scalar(m, "--validate sim: M", low=2, integer=True)
        dim = ConceptConfig().dim
        if k * m > MAX_VALIDATE_PAIRS or k * dim * 8 * 4 > (physical_memory() or 2**34) // 2:
            raise InputError(f"--validate {spec!r}: {k:,} x {m:,} pairs is more than an audit validation builds "
                             f"(at most {MAX_VALIDATE_PAIRS:,} pairs); use a smaller sim:KxM")
        t, v, c = benign_pairs(make_space(ConceptConfig(n_concepts=k), seed), m, seed)
        return t, v, np.asarray(c), f"the simulator's default space, K = {k}, m = {m}"
    from implosion_base.pairs_file import load_arrays

    arrays = load_arrays(Path(spec), ("text", "image", labels_key))
    concept = np.asarray(arrays[labels_key])
    check_labels(concept, len(arrays["text"]), None, f"{spec}: '{labels_key}'")
    return arrays["text"], arrays["image"], concept, Path(spec).name


#: The most pairs ``--validate sim:KxM`` builds (each mix is audited exactly or sampled as any other data).
MAX_VALIDATE_PAIRS = 10_000_000


def check_labels(labels: np.ndarray, n: int, k: int | None, what: str) -> None:
    """``labels`` must be one whole number ≥ 0 (below ``k`` when given) per pair: an InputError naming ``what``
    otherwise (a 2-D array, floats, negatives or labels past the concept list)."""
    if labels.ndim != 1 or len(labels) != n or (n and labels.dtype.kind not in "iu"):
        raise InputError(f"{what} must hold one integer concept label per pair ({n}), got dtype {labels.dtype} "
                         f"shape {labels.shape}")
    if n and (labels.min() < 0 or (k is not None and labels.max() >= k)):
        raise InputError(f"{what} holds concept labels outside 0..{'K-1' if k is None else k - 1} "
                         f"({int(labels.min())}..{int(labels.max())})")


def check_c_ps(c_ps: Sequence[int], k: int) -> None:
    """Every C_P below the clean set's K concepts (at C_P = K none is left unpoisoned): InputError otherwise."""
    if max(c_ps) >= k:
        raise InputError(f"--poisoned-concepts {max(c_ps)}: the clean set has only {k} concepts (at C_P = K none is "
                         "left unpoisoned)")


def validate(clean: str | tuple, c_ps: Sequence[int], p: int, cfg: AuditConfig, *, labels_key: str = "concept",
             seed: int = 0) -> list[dict[str, Any]]:
    """Audit dirty-label mixes built from a clean set (:func:`clean_set`, or its result when already read): one
    :func:`score_audit` row per C_P."""
    text, image, concept, where = clean if isinstance(clean, tuple) else clean_set(str(clean), labels_key, seed)
    ks = [int(k) for k in np.unique(concept)]
    check_c_ps(c_ps, len(ks))
    names = [f"concept {k}" for k in ks]
    out = []
    for c_p in c_ps:
        t, v, c, truth, chosen = dirty_label_mix(text, image, concept, c_p, p, seed)
        row = score_audit(t, v, [f"concept {k}" for k in c], names, truth, [ks.index(k) for k in chosen], cfg)
        out.append({"source": f"{where} + dirty-label pairs made in embedding space", "poison_type": "dirty",
                    "p": p, **row})
    return out


#: Arrays a mix file of ``python -m empirical.embed --builtin --mix`` holds.
MIX_ARRAYS = ("text", "image", "caption", "is_poison", "poisoned", "poison_type", "names", "concept")


def validate_mixes(paths: Sequence[Path], cfg: AuditConfig) -> list[dict[str, Any]]:
    """Audit real training mixes with their truth (``empirical.embed --builtin --mix``): one :func:`score_audit`
    row per file, with the true p (poison pairs per poisoned concept)."""
    out = []
    for path, a in zip(paths, [load_mix(p) for p in paths]):  # every file checked before the first is audited
        truth = np.asarray(a["is_poison"], bool)
        chosen = [int(k) for k in a["poisoned"]]
        p = int(np.median(np.bincount(a["concept"][truth])[chosen])) if chosen else 0
        row = score_audit(a["text"], a["image"], list(a["caption"]), [str(x) for x in a["names"]], truth, chosen,
                          cfg)
        out.append({"source": Path(path).name, "poison_type": str(a["poison_type"]) if chosen else "none",
                    "p": p, **row})
    return out


def load_mix(path: Path) -> dict[str, np.ndarray]:
    """A mix file's arrays (:data:`MIX_ARRAYS`), checked: concept labels inside the concept list, poisoned concepts
    among them, one truth flag per pair; an InputError naming the file otherwise."""
    from implosion_base.pairs_file import load_arrays

    a = load_arrays(path, MIX_ARRAYS)
    k = len(np.atleast_1d(a["names"]))
    check_labels(np.asarray(a["concept"]), len(a["text"]), k, f"{path}: 'concept'")
    check_labels(np.atleast_1d(np.asarray(a["poisoned"])), len(np.atleast_1d(a["poisoned"])), k,
                 f"{path}: 'poisoned'")
    truth = np.asarray(a["is_poison"], bool)
    if len(truth) != len(a["text"]) or (truth.any() and not len(np.atleast_1d(a["poisoned"]))):
        raise InputError(f"{path}: is_poison must mark one entry per pair, and poisons need poisoned concepts")
    return a


# ---------------------------------------------------------------------------------------------------------------
# output


def write_report(out: Path, src: PairShards, res: dict[str, Any], cfg: AuditConfig) -> None:
    """pairs.csv, concepts.csv, report.json, report.md and scores.png in ``out`` (each written atomically)."""
    pr, names = res["pairs"], res["names"]
    shard = src.shard_of(np.arange(src.n))
    lines = []
    for i in range(src.n):
        c = int(pr["concept"][i])
        lines.append({"index": i, "shard": src.names[shard[i]],
                      **{k: str(v[i]) for k, v in src.labels.items()},
                      "cos": float(pr["cos"][i]), "s_i": float(pr["s_i"][i]), "score": float(pr["score"][i]),
                      "z": float(pr["z"][i]), "rank": int(pr["rank"][i]),
                      "p_mismatched": float(pr["posterior"][i]), "flagged": int(pr["flagged"][i]),
                      "concept": names[c] if c >= 0 else ""})
    atomic_write_text(out / "pairs.csv", csv_text(lines))
    atomic_write_text(out / "concepts.csv", csv_text(res["concepts"]))
    s = res["summary"]
    record = {"tool": "simulate.audit", "summary": s, "config": asdict(cfg), "shards": src.names,
              "date": utc_now(), "git_commit": git_commit(), "command": command_line()}
    atomic_write_text(out / "report.json", json.dumps(record, indent=1, default=float) + "\n")
    atomic_write_text(out / "report.md", report_markdown(s, res["concepts"]))
    _plot(out / "scores.png", pr["score"], pr["flagged"])


def report_markdown(s: dict[str, Any], concepts: list[dict[str, Any]]) -> str:
    """The human report: AD and how it was computed, the flag rule and count, the concept view, the margin."""
    ci = f" (95% CI {s['ad_ci95'][0]:.5f} – {s['ad_ci95'][1]:.5f})" if s.get("ad_ci95") else ""
    out = [f"# Dataset audit\n\n{s['n']:,} pairs in {s['shards']} shard(s), d = {s['d']}.\n",
           f"## Alignment Difficulty\n\nAD = {s['ad']:.5f}{ci}, D_fea = {s['d_fea']:.5f}, D_stru = {s['d_stru']:.5f} "
           f"(α = {s['alpha']}, LAION rescaling {'on' if s['laion_scale'] else 'off'}). Computed {s['ad_mode']}: "
           f"{s['ad_why']}.\n",
           f"## Suspicious pairs\n\n{s['flagged']:,} pairs flagged by the rule: {s['flag_rule']}; "
           "every pair's score, z and rank are in `pairs.csv`.\n",
           f"## Concepts\n\n{s['concepts']['method']}; K = {s['concepts']['k']}. Background flag rate "
           f"q = {s['background_flag_rate']:.4f}; a concept counts as poisoned when {s['poisoned_rule']}. "
           f"Estimated: **C_P = {s['estimated_c_p']}** of {s['n_concepts']} concepts, **p = {s['estimated_p']}** "
           f"flagged pairs per poisoned concept, m = {s['estimated_m']} unflagged pairs per concept.\n",
           "| concept | pairs | flagged | fraction | p-value | poisoned |\n|---|---|---|---|---|---|"]
    for r in sorted(concepts, key=lambda r: r["p_value"])[:30]:
        out.append(f"| {r['name']} | {r['pairs']} | {r['flagged']} | {r['flagged_fraction']:.3f} | "
                   f"{r['p_value']:.2g} | {'yes' if r['poisoned'] else 'no'} |")
    m = s.get("margin")
    if m:
        if m.get("prediction", True) is None:
            out.append(f"\n## Margin\n\nNo prediction: {m['why']}.\n")
        else:
            more = m["more_concepts_before_threshold"]
            thr = m["threshold_c_p"]
            thr = thr if thr == "none" else f"{float(thr):.1f}"
            out.append(
                f"\n## Margin (a model's prediction)\n\nSimulator at this data's geometry, {m['capacity']}, "
                f"p = {m['p_used']} ({m['p_source']}): predicted unpoisoned accuracy now "
                f"{m['predicted_unpoisoned_acc_now']:.3f} ± {m['predicted_unpoisoned_acc_now_ci95']:.3f} "
                f"(clean {m['predicted_clean_acc']:.3f}); predicted threshold (accuracy < 0.5) at C_P = "
                f"{thr}" + ("" if more is None else f", i.e. about {more:.0f} more concepts poisoned at this rate") + ".\n\n"
                f"**{m['warning']}**\n")
    return "\n".join(out) + "\n"


def _plot(path: Path, score: np.ndarray, flagged: np.ndarray) -> None:
    """Histogram of the pair scores, the flagged pairs (the mixture rule, not a score cut) drawn apart, in the
    house style at column width (:mod:`implosion_base.plotting`)."""
    from implosion_base.plotting import COLUMN, POISONED, UNPOISONED, pyplot, save_png

    fig, ax = pyplot().subplots(figsize=(COLUMN, 2.4))
    bins = np.linspace(float(score.min()), float(score.max()) + 1e-12, 81)
    ax.hist(score[~flagged], bins=bins, color=UNPOISONED, alpha=0.8, label="not flagged")
    if flagged.any():
        ax.hist(score[flagged], bins=bins, color=POISONED, alpha=0.6, label="flagged (mixture of pair cosines)")
    ax.legend()
    ax.set_yscale("log")
    ax.set_xlabel("pair score n·c_i (share of AD × n)")
    ax.set_ylabel("pairs")
    save_png(fig, path)


# ---------------------------------------------------------------------------------------------------------------
# command line


def _parser() -> ArgumentParser:
    p = ArgumentParser(prog="python -m simulate.audit", description=__doc__.splitlines()[0].strip("`: "))
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
    p.add_argument("--flag-z", type=float, default=d.flag_z, help="modified z-score cut (default 3.5)")
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
    if dry_run(args, "python -m simulate.audit", {**what, "out": args.out}):
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
    if args.workers > 1 and args.dask:
        raise InputError("give --workers or --dask, not both")
    if args.validate is not None or args.validate_mix is not None:
        return _validation(args, cfg)
    if not args.shards:
        raise InputError("give embedding files (or --validate CLEAN)")
    names = read_concepts_file(args.concepts_file) if args.concepts_file else None
    src = open_shards(args.shards)
    if args.metadata is not None:
        src.labels.update(load_side_metadata(args.metadata, src.n))
    cfg.rows(src.d, src.n, max(1, args.workers))  # a budget too small for this data is refused before any write
    if dry_run(args, "python -m simulate.audit", {"pairs": f"{src.n:,} in {len(src.names)} shard(s), d = {src.d}",
                                                  "AD": "exact" if src.n <= cfg.exact_max else "sampled",
                                                  "concepts": "from --concepts-file" if names else "k-means",
                                                  "out": args.out}):
        return 0
    blocks = args.out / "blocks"
    _check_blocks(blocks)  # refused here, before anything is created
    with hold_output(args.out) as out:
        _check_blocks(blocks)
        execution = Execution(workers=args.workers, dask=args.dask, paths=tuple(map(str, args.shards)),
                              record_dir=blocks, log=lambda msg: print(msg, file=sys.stderr))
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
    print(f"wrote {out / 'report.md'}, report.json, pairs.csv, concepts.csv, scores.png")
    return 0


def cli() -> None:
    """The ``implosion-audit`` console script: :func:`main` behind the one-line error boundary."""
    run_main(main, prog="implosion-audit")


if __name__ == "__main__":
    run_main(main, prog="python -m simulate.audit")
