"""Which concept each pair belongs to, when no names are given: k-means of the unit text embeddings (k-means++
start, Lloyd iterations, seeded), K given or chosen by the best mean silhouette on a sample, every pair then
assigned to its nearest centroid by cosine, block by block."""

from __future__ import annotations

from typing import Any

import numpy as np

from dataset_audit.config import AuditConfig
from implosion_base.errors import InputError
from implosion_base.shards import PairShards
from implosion_base.validate import unit_rows


def kmeans(x: np.ndarray, k: int, *, seed: int = 0, iters: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """(centroids, labels) of k-means on the rows of ``x``: k-means++ start, Lloyd iterations until no label
    changes (at most ``iters``); empty clusters re-seeded at the farthest point."""
    rng = np.random.default_rng(seed)
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    if not 1 <= k <= n:
        raise InputError(f"k-means needs 1 <= K <= n, got K = {k}, n = {n}")
    xx = np.einsum("ij,ij->i", x, x)  # |x_i|², once: every squared distance is |x|² − 2⟨x, c⟩ + |c|²
    centres = [x[rng.integers(n)]]
    d2 = np.maximum(xx - 2 * x @ centres[0] + centres[0] @ centres[0], 0.0)
    for _ in range(1, k):
        centres.append(x[rng.choice(n, p=d2 / d2.sum())] if d2.sum() > 0 else x[rng.integers(n)])
        d2 = np.minimum(d2, np.maximum(xx - 2 * x @ centres[-1] + centres[-1] @ centres[-1], 0.0))
    c = np.array(centres)
    labels = np.full(n, -1)
    for _ in range(iters):
        dist = xx[:, None] - 2 * x @ c.T + (c * c).sum(1)[None, :]
        new = dist.argmin(1)
        if np.array_equal(new, labels):
            break
        labels = new
        counts = np.bincount(labels, minlength=k)
        sums = np.eye(k)[labels].T @ x  # one product gives every centre's member sum
        c = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], x[dist.min(1).argmax()])
    return c, labels


def silhouette(x: np.ndarray, labels: np.ndarray, distances: np.ndarray | None = None) -> float:
    """Mean silhouette (cosine distance) of ``labels`` on the unit rows ``x``: (b − a)/max(a, b) per point.
    ``distances``: 1 − x xᵀ when already computed (one matrix for every K a search tries)."""
    d = 1.0 - x @ x.T if distances is None else distances
    ks = np.unique(labels)
    if len(ks) < 2:
        return -1.0
    own = np.searchsorted(ks, labels)
    counts = np.bincount(own, minlength=len(ks))
    mean_to = (d @ np.eye(len(ks))[own]) / counts[None, :]  # each point's mean distance to every cluster
    size = counts[own]
    a = mean_to[np.arange(len(x)), own] * size / np.maximum(size - 1, 1)  # exclude the point itself
    mean_to[np.arange(len(x)), own] = np.inf
    b = mean_to.min(1)
    s = np.where(size > 1, (b - a) / np.maximum(np.maximum(a, b), 1e-12), 0.0)
    return float(s.mean())


def unit64(a: np.ndarray) -> np.ndarray:
    """Rows of a shard block (float16 or 32) as float64 unit rows (:func:`implosion_base.validate.unit_rows`)."""
    return unit_rows(np.asarray(a, dtype=np.float64))


def cluster_centres(src: PairShards, cfg: AuditConfig) -> tuple[np.ndarray, dict[str, Any]]:
    """k-means centroids of the unit text embeddings, fitted on a sample of at most 20,000 pairs; K given or chosen
    by the best mean silhouette on at most 2,000 sampled pairs. Returns (unit-free centroids k × d, how K was
    chosen). :func:`assign_concepts` (or the sampled pass) then gives every pair its nearest centroid."""
    rng = np.random.default_rng([cfg.seed, 1])
    sample = np.sort(rng.choice(src.n, size=min(src.n, 20_000), replace=False))
    xs = unit64(src.take(sample)[0])
    how: dict[str, Any] = {"method": "k-means of the text embeddings"}
    if cfg.n_concepts is not None:
        k = cfg.n_concepts
        how["k"] = f"{k} (given: --n-concepts)"
    else:
        sub = xs[rng.choice(len(xs), size=min(len(xs), 2_000), replace=False)]
        distances = 1.0 - sub @ sub.T
        scores = {}
        for kk in range(2, min(cfg.max_concepts, len(sub) // 5) + 1):
            scores[kk] = silhouette(sub, kmeans(sub, kk, seed=cfg.seed)[1], distances)
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


def nearest_centre(rows: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Each row's concept: argmax_k ⟨unit(x_i), c_k⟩ over unit centroids ``centres`` (k × d) — which is argmax_k
    ⟨x_i, c_k⟩, a row's norm scaling all its k products alike — computed in float32 (float16 shards are read in
    it; no float64 copy), the same numbers however the rows are cut into blocks."""
    return (np.asarray(rows, np.float32) @ np.asarray(centres, np.float32).T).argmax(1)
