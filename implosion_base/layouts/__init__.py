"""Where a data set's text–image embeddings lie on disk: one module per layout, each turning a path into shard parts
(:class:`~implosion_base.layouts.part.ShardPart`) that :func:`implosion_base.shards.open_shards` joins into one row
source. Tried in this order; the first that claims a path reads it:

- :mod:`~implosion_base.layouts.clip_retrieval` — ``img_emb/``, ``text_emb/``, ``metadata/`` (parquet) siblings;
- :mod:`~implosion_base.layouts.datacomp` — ``NAME.npz`` of ``l14_*`` / ``b32_*`` features beside ``NAME.parquet``;
- :mod:`~implosion_base.layouts.npy_pairs` — ``text_emb_N.npy`` + ``img_emb_N.npy`` in one folder;
- :mod:`~implosion_base.layouts.pairs_files` — ``.npz`` / ``.safetensors`` with ``text`` and ``image``.

Shards are read in the number order of their names. Adding a layout: a module with ``NAME``, ``claims(path)`` and
``parts(path, options)``, and its line in :data:`LAYOUTS`.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from implosion_base.errors import InputError
from implosion_base.layouts import clip_retrieval, datacomp, npy_pairs, pairs_files
from implosion_base.layouts.part import ReadOptions, ShardPart, check_part

__all__ = ["LAYOUTS", "ReadOptions", "ShardPart", "read_parts"]

#: The layouts, in the order they are tried.
LAYOUTS: tuple[ModuleType, ...] = (clip_retrieval, datacomp, npy_pairs, pairs_files)


def read_parts(path: Path, options: ReadOptions = ReadOptions()) -> tuple[str, list[ShardPart]]:
    """(the layout's name, its checked parts) of ``path``; a path no layout claims is an InputError naming them."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    for layout in LAYOUTS:
        if layout.claims(path):
            return layout.NAME, [check_part(p) for p in layout.parts(path, options)]
    raise InputError(f"{path}: no embedding shards in a known layout ({'; '.join(m.NAME for m in LAYOUTS)})")
