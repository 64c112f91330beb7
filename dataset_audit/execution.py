"""Where an audit's pass over the data runs, and the identity of the data it recorded finished blocks for."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from implosion_base.errors import InputError
from implosion_base.tasks import TaskRecord


@dataclass(frozen=True)
class Execution:
    """Where the sampled pass runs (:mod:`dataset_audit.passes`): here, in ``workers`` local processes or on the
    Dask scheduler at ``dask`` or on Ray at ``ray``; ``paths`` the shard files (workers open them themselves); ``record_dir`` where
    finished blocks are recorded for a resume. None of it changes a number."""

    workers: int = 0
    dask: str | None = None
    ray: str | None = None
    paths: tuple[str, ...] | None = None
    features: str | None = None  # the embedding model where a shard holds several (implosion_base.layouts)
    record_dir: Path | None = None
    log: Any = None


def file_stamps(paths: Sequence[str | Path]) -> list[list]:
    """(name, size, modification time in ns) of every file the shards were read from (``PairShards.files``; a
    folder's files, when a folder is named): a shard rewritten since finished blocks were recorded (same sizes, new
    content) makes the record another computation's, never silently reused. Only files count: a folder inside a
    shard folder (the report folder itself, when ``--out`` lies there) is not data, nor is a hidden file."""
    out = []
    for p in map(Path, paths):
        for f in sorted(p.iterdir()) if p.is_dir() else [p]:
            if f.is_file() and not f.name.startswith("."):
                st = f.stat()
                out.append([str(f.resolve()), st.st_size, st.st_mtime_ns])
    return out


def check_blocks(blocks: Path) -> None:
    """``OUT/blocks`` is where the sampled pass records finished blocks, and the audit removes it when the report is
    written: something there that is not such a record (a user's folder or file) is refused, never removed."""
    if blocks.is_symlink() or (blocks.exists() and not (blocks.is_dir() and (blocks / TaskRecord.HEAD).is_file())):
        raise InputError(f"{blocks} exists and is not an audit's record of finished blocks; it would be removed "
                         "after the report: move it or use another --out")
