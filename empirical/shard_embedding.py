"""Embedding a data set shard by shard into the layout ``clip-retrieval inference`` writes — ``OUT/img_emb/
img_emb_N.npy`` and ``OUT/text_emb/text_emb_N.npy`` (float16 unit rows) and ``OUT/metadata/metadata_N.parquet``
(``image_path``, ``caption``, ``key`` and the samples' JSON fields as columns) — so the output feeds
``python -m dataset_audit``, autofaiss and clip-retrieval unchanged (:mod:`implosion_base.layouts.clip_retrieval`
reads it back).

One partition per input — a webdataset tar (:mod:`empirical.webdataset`, streamed) or an image-text folder
(:mod:`empirical.folder_data`) — ``N`` zero-padded to their count as clip-retrieval pads it. The three files of a
partition are written atomically, the metadata last: a partition whose metadata exists is done, and a rerun skips
it ("partition N already done, skipped"), so a killed run resumes shard by shard. ``OUT/manifest.json`` records the
embedding model and the inputs; a folder holding another model's or other inputs' partitions is refused.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from implosion_base.errors import InputError
from implosion_base.files import atomic_path
from implosion_base.records import claim_run_folder, key_difference, write_manifest
from implosion_base.validate import unit_rows

__all__ = ["embed_partitions", "partition_tags"]


def partition_tags(count: int) -> list[str]:
    """The partition numbers as clip-retrieval writes them: zero-padded to the digits of ``count``."""
    width = int(math.log10(max(count, 1))) + 1
    return [str(k).zfill(width) for k in range(count)]


def _samples(source: Path, size: int | None) -> Iterator[tuple[np.ndarray, str, dict[str, Any]]]:
    """(image, caption, metadata row) of every usable sample of a tar or an image-text folder."""
    if source.is_dir():
        from empirical.folder_data import iter_image_folder

        for _, image, caption, name in iter_image_folder(source, size=size):
            yield image, caption, {"image_path": name}
        return
    from empirical.webdataset import iter_tar_samples

    for _, image, caption, key, meta in iter_tar_samples(source, size=size):
        extra = {k: (v if isinstance(v, str) else json.dumps(v)) for k, v in meta.items()
                 if k not in ("image_path", "caption", "key")}
        yield image, caption, {"image_path": key, "key": key, **extra}


def _identity(inputs: list[Path], model: str) -> dict[str, Any]:
    return {"model": model, "inputs": [[str(p.resolve()), p.stat().st_size if p.is_file() else None]
                                       for p in inputs]}


def embed_partitions(inputs: list[Path], embedder, out: Path, *, batch_size: int = 64,
                     log: Callable[[str], None] = lambda m: None) -> list[int]:
    """Embed each input as one partition of ``out`` (module docstring); returns the pairs of every partition
    (those already done are counted from their metadata)."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise InputError("writing the clip-retrieval layout needs pyarrow (pip install 'implosion-toolkit[audit]')") \
            from None
    tags = partition_tags(len(inputs))
    done = [(out / "metadata" / f"metadata_{t}.parquet").is_file() for t in tags]
    manifest = claim_run_folder(out, "embedding", _identity(inputs, embedder.name), has_results=any(done),
                                difference=key_difference,
                                refusal=lambda d: f"{out} holds partitions of another embedding ({d}); use another --out")
    write_manifest(out / "manifest.json", manifest)
    for sub in ("img_emb", "text_emb", "metadata"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    counts = []
    for source, tag, finished in zip(inputs, tags, done):
        if finished:
            log(f"partition {tag} ({source.name}) already done, skipped")
            counts.append(pq.read_metadata(out / "metadata" / f"metadata_{tag}.parquet").num_rows)
            continue
        text, image, rows = _embed_one(source, embedder, batch_size)
        if not rows:
            raise InputError(f"{source}: no readable image-text pairs")
        for name, arr in (("img_emb", image), ("text_emb", text)):
            with atomic_path(out / name / f"{name}_{tag}.npy") as tmp:
                np.save(tmp, arr)
        columns = sorted({k for r in rows for k in r} - {"image_path", "caption"})
        table = pa.table({c: [r.get(c, "") for r in rows] for c in ("image_path", "caption", *columns)})
        with atomic_path(out / "metadata" / f"metadata_{tag}.parquet") as tmp:
            pq.write_table(table, tmp)  # written last: its presence marks the partition done
        log(f"partition {tag} ({source.name}): {len(rows)} pairs")
        counts.append(len(rows))
    return counts


def _embed_one(source: Path, embedder, batch_size: int) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]]]:
    """One input's (text, image) embeddings as float16 unit rows and its metadata rows."""
    text, image, rows, batch = [], [], [], []

    def run() -> None:
        t, v = embedder.embed([b[0] for b in batch], [b[1] for b in batch])
        text.append(t)
        image.append(v)
        rows.extend({**b[2], "caption": b[1]} for b in batch)
        batch.clear()

    for sample in _samples(source, embedder.size):
        batch.append(sample)
        if len(batch) == batch_size:
            run()
    if batch:
        run()
    if not rows:
        return np.zeros((0, 0), np.float16), np.zeros((0, 0), np.float16), rows
    return (unit_rows(np.concatenate(text)).astype(np.float16), unit_rows(np.concatenate(image)).astype(np.float16),
            rows)
