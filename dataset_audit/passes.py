"""The dataset audit's pass over data larger than memory, as independent block tasks (:mod:`implosion_base.tasks`).

One read of every row gives everything the sampled audit needs per pair: the pair cosine and norms, the structure
row sum against random partners (:func:`theory.ad.structure_block`) and, when concepts come from clustering, the
nearest k-means centroid of the unit text embedding. The rows are cut into blocks of whole partner groups
(:func:`theory.ad.structure_blocks`) and each block is one task, run here, in ``--workers`` local processes or on a
Dask cluster (``--dask``) or on Ray (``--ray``), recorded under ``DIR/blocks/`` as it finishes so that a killed audit resumes where it
stopped. Every quantity of a row is computed within its partner group, seeded by the group, so the results are
bit-identical whatever the block size, the number of workers or the order in which blocks finish.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import numpy as np

from dataset_audit.concept_view import nearest_centre
from implosion_base.shards import PairShards, float32_rows, open_shards
from implosion_base.tasks import Task, TaskRecord, run_tasks
from implosion_base.validate import usable_cores
from theory.ad import (
    PairTerms,
    StructureBlock,
    StructureSample,
    combine_structure,
    partner_group,
    structure_block,
    structure_blocks,
)

__all__ = ["PassResult", "ShardPaths", "sampled_pass"]


@dataclass(frozen=True)
class ShardPaths:
    """How a worker process opens the same shards: their paths, in order, and the embedding model read."""

    paths: tuple[str, ...]
    features: str | None = None


@lru_cache(maxsize=2)
def _opened(paths: tuple[str, ...], features: str | None) -> PairShards:
    """The shards at ``paths``, opened once per worker process (a cache of file handles' metadata, not of rows)."""
    return open_shards(list(paths), labels=False, features=features)


@lru_cache(maxsize=1)
def _buffers(rows: int, d: int, dtype: str) -> tuple[np.ndarray | None, ...]:
    """A process's block buffers, reused from block to block (fresh pages cost as much as reading them): (text,
    image) as read and, for float16 shards, as float32; ``rows`` the pass's largest block."""
    read = tuple(np.empty((rows, d), np.dtype(dtype)) for _ in "tv")
    wide = tuple(np.empty((rows, d), np.float32) for _ in "tv") if np.dtype(dtype) == np.float16 else (None, None)
    return read + wide


def _source(source: PairShards | ShardPaths) -> PairShards:
    return _opened(source.paths, source.features) if isinstance(source, ShardPaths) else source


def block_task(source: PairShards | ShardPaths, a: int, b: int, partners: int, seed: int,
               centres: np.ndarray | None, threads: int = 1, capacity: int = 0) -> dict[str, np.ndarray]:
    """Rows a..b−1: :func:`theory.ad.structure_block`'s arrays, plus (with ``centres``, unit k × d) each pair's
    concept argmax_k ⟨unit(t_i), c_k⟩, computed partner group by partner group like the rest. Rows are read into
    the process's buffers for blocks of ``capacity`` rows and float16 rows converted once, in ``threads`` threads."""
    src = _source(source)
    buffers = _buffers(max(capacity, b - a), src.d, np.dtype(src.dtype).str)
    read = src.block(a, b, out=buffers[:2])
    rows = tuple(float32_rows(read, threads, outs=buffers[2:]))
    out = structure_block(src, a, b, partners, seed, rows=rows).arrays()
    if centres is not None:
        size = partner_group(src.n)
        out["concept"] = np.concatenate([nearest_centre(rows[0][g:g + size], centres)
                                         for g in range(0, b - a, size)])
    return out


@dataclass(frozen=True)
class PassResult:
    """What the pass gives: pair terms, the structure sample, each pair's concept (or None), and how it ran."""

    terms: PairTerms
    structure: StructureSample
    concept: np.ndarray | None
    how: dict[str, Any]


def sampled_pass(src: PairShards, paths: list[str] | None, *, features: str | None = None, partners: int, seed: int,
                 rows: int,
                 centres: np.ndarray | None = None, workers: int = 0, dask: str | None = None, ray: str | None = None,
                 record_dir: Path | None = None, identity: dict[str, Any] | None = None,
                 log: Callable[[str], None] = lambda msg: None) -> PassResult:
    """Run the pass over ``src`` in blocks of at most ``rows`` rows. ``paths`` (the shard files, in order) lets
    workers open the shards themselves; without them (an in-memory source) the pass runs here. With
    ``record_dir``, finished blocks are recorded there under ``identity`` (what the numbers depend on) and
    reused by a rerun; a record made with another block layout keeps its layout."""
    remote = workers > 1 or dask or ray
    if remote and paths is None:
        raise ValueError("workers need shard files to open")
    source: PairShards | ShardPaths = ShardPaths(tuple(str(Path(p).resolve()) for p in paths), features) \
        if paths is not None and remote else src
    record = None
    layout = structure_blocks(src.n, rows)
    if record_dir is not None:
        ident = {**(identity or {}), "partner_group": partner_group(src.n), "partners": partners, "seed": seed,
                 "centres": None if centres is None else _digest(centres)}
        record = TaskRecord(record_dir, ident)
        old = record.read_note("layout")
        if old:
            layout = [(int(a), int(b)) for a, b in old]
        else:
            record.write_note("layout", layout)
    threads = 1 if remote else usable_cores()
    capacity = max(b - a for a, b in layout)
    tasks = [Task(f"rows-{a:012d}-{b:012d}", block_task, (source, a, b, partners, seed, centres, threads, capacity))
             for a, b in layout]
    reused = [0]

    def seen(key: str, result: dict, recorded: bool) -> None:
        reused[0] += recorded

    results = run_tasks(tasks, workers=workers, dask=dask, ray=ray, record=record, on_result=seen)
    if reused[0]:
        log(f"resumed: {reused[0]} of {len(tasks)} blocks were recorded in {record_dir}")
    blocks = [StructureBlock.from_arrays(results[t.key]) for t in tasks]
    terms, st = combine_structure(blocks, src.n)
    concept = np.concatenate([results[t.key]["concept"] for t in tasks]) if centres is not None else None
    how = {"blocks": len(tasks), "blocks_resumed": reused[0],
           "execution": f"Dask scheduler {dask}" if dask else f"Ray at {ray}" if ray
           else f"{workers} local processes" if workers > 1
           else "this process"}
    return PassResult(terms, st, concept, how)


def _digest(a: np.ndarray) -> str:
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(a, dtype=np.float64).tobytes()).hexdigest()[:16]
