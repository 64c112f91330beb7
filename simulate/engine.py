r"""The simulator's engine: one seed's sweep over C_P (:func:`run_seed`), its configuration, summaries over seeds,
and the local-process runner that streams rows as they are computed (docs/design.md §5).

For every seed: draw a concept space and a poisoning plan, build the benign training set, calibrate / pretrain
the solver on it, then walk C_P upward through the requested points, adding each newly poisoned concept's poison
pairs to the training set (incrementally: Gram statistics and AD are updated, never recomputed) and measuring,
at each point, AD (:mod:`theory.ad`) and the metrics of :mod:`simulate.metrics`. Points do not depend on which
other points were computed, so a sweep resumes, parallelises and runs on Dask with identical numbers. The command
line is :mod:`simulate.sweep`.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from simulate.align import AttentionSolver, CapacitySolver, RidgeSolver
from simulate.concepts import ConceptConfig, make_space
from simulate.metrics import METRIC_NAMES, evaluate
from simulate.poison import PoisonConfig, benign_pairs, plan_for_space, poison_pairs
from simulate.training_set import TrainingSet
from theory.ad import DEFAULT_ALPHA
from implosion_base.errors import InputError
from theory.implosion import make_reference
from implosion_base.records import ResultsTable
from implosion_base.tasks import process_pool, pool_queue
from theory.stats import ci95
from implosion_base.validate import check_scalar, physical_memory

COLUMNS = ["c_p", "seed", "solver", "n_pairs", "ad", "d_fea", "d_stru", *METRIC_NAMES, "seconds"]
Solver = RidgeSolver | CapacitySolver | AttentionSolver


@dataclass(frozen=True)
class SweepConfig:
    """Everything that determines the numbers of a point (points and seeds only choose which points)."""

    concepts: ConceptConfig = field(default_factory=ConceptConfig)
    poison: PoisonConfig = field(default_factory=PoisonConfig)
    solver: Solver = field(default_factory=RidgeSolver)
    benign_per_concept: int = 5
    alpha: float = DEFAULT_ALPHA
    laion_scale: bool = True

    def __post_init__(self) -> None:
        m = self.benign_per_concept
        check_scalar(m, "--benign-per-concept", low=1, integer=True)
        if self.poison.placement == "replace" and self.poison.poison_per_concept > m:
            raise InputError(f"--placement replace needs --poison-per-concept <= --benign-per-concept "
                             f"({self.poison.poison_per_concept} > {m})")

    def identity(self) -> dict[str, Any]:
        """JSON-ready description; two sweeps may share an output folder only if these are equal."""
        out = asdict(self)
        out["solver"] = self.solver.as_dict()
        return out


# ------------------------------------------------------------------------------------------- one seed


def run_seed(config: SweepConfig, seed: int, points: Sequence[int], done: frozenset[int] = frozenset(),
             emit: Callable[[dict[str, Any]], None] | None = None,
             progress: Callable[[int], None] | None = None, track_ad: bool = True) -> list[dict[str, Any]]:
    """Sweep one seed through ``points`` (ascending C_P); skip the evaluation of C_P in ``done`` (the training
    set still advances through them). Each row is passed to ``emit`` as soon as it exists and returned.
    ``track_ad=False`` skips AD (its columns are NaN): for experiments that measure only the model, where the
    incremental AD's O(n) cost per added pair would dominate at large poison volumes."""
    cfg = config
    space = make_space(cfg.concepts, seed)
    plan = plan_for_space(space, cfg.poison, seed)
    bt, bv, _ = benign_pairs(space, cfg.benign_per_concept, seed)
    data = TrainingSet(cfg.concepts.dim, alpha=cfg.alpha, laion_scale=cfg.laion_scale, track_ad=track_ad)
    data.add(bt, bv)
    fitter = cfg.solver.prepare(data, seed)
    clean_outputs = fitter.fit(data).predict(space.text_centroids)
    reference = make_reference(space.image_centroids, seed=seed)
    m, p = cfg.benign_per_concept, cfg.poison.poison_per_concept
    rows: list[dict[str, Any]] = []
    poisoned_so_far = 0
    for c_p in sorted(points):
        start = time.perf_counter()
        for concept in plan.poisoned(c_p)[poisoned_so_far:]:
            if cfg.poison.placement == "replace" and p:
                data.remove(concept * m + np.arange(p))  # benign pairs are added grouped by concept
            if p:
                data.add(*poison_pairs(space, plan, cfg.poison, int(concept), seed))
        poisoned_so_far = c_p
        if c_p not in done:
            model = fitter.fit(data)
            ad = data.ad() if track_ad else None
            nan = float("nan")
            row = {"c_p": c_p, "seed": seed, "solver": cfg.solver.name, "n_pairs": data.n,
                   "ad": ad.ad if ad else nan, "d_fea": ad.d_fea if ad else nan, "d_stru": ad.d_stru if ad else nan,
                   **evaluate(model, space, plan, c_p, clean_outputs, reference),
                   "seconds": round(time.perf_counter() - start, 4)}
            rows.append(row)
            if emit is not None:
                emit(row)
        if progress is not None:
            progress(c_p)
    return rows


# ------------------------------------------------------------------------------------------- summary


def summarise(rows: list[dict[str, Any]], points: Sequence[int]) -> dict[int, dict[str, tuple[float, float]]]:
    """Per C_P: (mean, 95% CI half-width) over seeds of AD and every metric."""
    out: dict[int, dict[str, tuple[float, float]]] = {}
    for c_p in points:
        sel = [r for r in rows if int(r["c_p"]) == c_p]
        if not sel:
            continue
        stats = {}
        for key in ("ad", "d_fea", "d_stru", *METRIC_NAMES):
            vals = np.array([float(r[key]) for r in sel])
            stats[key] = (float(np.nanmean(vals)) if not np.isnan(vals).all() else float("nan"), ci95(vals))
        stats["n_seeds"] = (len(sel), 0.0)
        out[c_p] = stats
    return out


MAX_ROWS = 10_000_000


def memory_needed(config: SweepConfig, max_cp: int) -> int:
    """Bytes one seed's sweep holds at its largest C_P: the pairs (text, image, in the training set and in the
    incremental AD: 4 copies of n × d float64), the centroids and the d × d statistics."""
    k, d = config.concepts.n_concepts, config.concepts.dim
    n = k * config.benign_per_concept + max_cp * config.poison.poison_per_concept
    return 8 * (4 * n * d + 4 * k * d + 3 * d * d)


def check_size(config: SweepConfig, max_cp: int, seeds: int, points: int) -> None:
    """Refuse, before anything is written, a sweep whose rows or one seed's memory would not fit: at most
    ``MAX_ROWS`` rows, and one seed's working set within half the machine's memory (each worker holds one)."""
    if seeds * points > MAX_ROWS:
        raise InputError(f"--seeds {seeds} x {points} points = {seeds * points:,} rows; at most {MAX_ROWS:,}")
    need, have = memory_needed(config, max_cp), physical_memory()
    if have and need > have // 2:
        raise InputError(f"one seed of this sweep needs about {need / 2**30:.1f} GiB (K, m, p, d and C_P up to "
                         f"{max_cp}); this machine has {have / 2**30:.1f} GiB: lower --n-concepts, --dim, "
                         "--benign-per-concept, --poison-per-concept or --concepts")


def point_keys(rows: list[dict[str, str]], path: Path) -> set[tuple[int, int]]:
    """The (C_P, seed) of every row; a row whose C_P or seed is not a whole number, or a point recorded twice, is
    an InputError naming the row (a resumed sweep must neither crash nor average two results of one point)."""
    keys: set[tuple[int, int]] = set()
    for i, r in enumerate(rows, start=2):
        try:
            key = (int(r["c_p"]), int(r["seed"]))
        except (TypeError, ValueError):
            raise InputError(f"{path} line {i}: c_p {r['c_p']!r} / seed {r['seed']!r} are not whole numbers; "
                             "remove that line to resume, or use another --out") from None
        if key in keys:
            raise InputError(f"{path} line {i}: C_P {key[0]}, seed {key[1]} is recorded twice; remove one line to "
                             "resume, or use another --out")
        for col in ("n_pairs", "ad", "d_fea", "d_stru", *METRIC_NAMES, "seconds"):
            try:
                float(r[col])
            except (TypeError, ValueError, KeyError):
                raise InputError(f"{path} line {i}: {col} {str(r.get(col))[:40]!r} is not a number; remove that "
                                 "line to resume, or use another --out") from None
        keys.add(key)
    return keys


def run_seed_rows(config: SweepConfig, seed: int, points: list[int], done: frozenset[int]) -> list[dict]:
    """Dask entry point: one seed, rows returned when it is finished."""
    return run_seed(config, seed, points, done)


_ROWS: Any = None  # the queue a worker process sends its rows through (set once per worker process)


def _init_worker(queue: Any) -> None:
    """Worker start: remember the row queue (:func:`implosion_base.tasks.process_pool` does the rest)."""
    global _ROWS
    _ROWS = queue


def _run_seed_streaming(config: SweepConfig, seed: int, points: list[int], done: frozenset[int]) -> int:
    """Worker entry point: one seed, each row sent to the parent as soon as it exists."""
    return len(run_seed(config, seed, points, done, emit=_ROWS.put))


def run_in_workers(config: SweepConfig, seeds: list[int], points: list[int], done: dict[int, frozenset[int]],
                   workers: int, table: ResultsTable, step: Callable[[dict[str, Any]], None]) -> None:
    """Seeds on ``workers`` local processes; every row reaches ``table`` as soon as a worker computes it, so a
    Ctrl-C or a kill keeps every finished point (the workers are stopped, never orphaned)."""
    import queue as queue_mod

    rows = pool_queue()
    received = 0

    def drain(wait: float) -> None:
        nonlocal received
        while True:
            try:
                row = rows.get(timeout=wait)
            except queue_mod.Empty:
                return
            table.append([row])
            step(row)
            received += 1
            wait = 0.0

    with process_pool(workers, initializer=_init_worker, initargs=(rows,)) as pool:
        try:
            futs = [pool.submit(_run_seed_streaming, config, s, points, done[s]) for s in seeds]
            while not all(f.done() for f in futs):
                drain(0.2)
            sent = sum(f.result() for f in futs)  # a worker's exception surfaces here
            deadline = time.monotonic() + 60
            while received < sent and time.monotonic() < deadline:
                drain(0.5)
        except BaseException:
            drain(0.5)  # every row already sent reaches the table; the pool then stops the workers
            raise
