"""Pairs files: ``.npz`` (never unpickled) or ``.safetensors`` holding ``text`` and ``image`` (n × d), and in an
``.npz`` optional per-pair ``file_name`` / ``caption`` strings — what ``python -m empirical.embed`` writes. A path is
one such file, or a folder of them (read in numeric order)."""

from __future__ import annotations

from pathlib import Path

from implosion_base.layouts.part import ReadOptions, ShardPart, shard_order
from implosion_base.pairs_file import SUFFIXES, load_arrays, load_pair_labels

NAME = "pairs files"


def _files(path: Path) -> list[Path]:
    if path.is_file():
        return [path] if path.suffix.lower() in SUFFIXES else []
    return sorted((q for q in path.iterdir() if q.suffix.lower() in SUFFIXES), key=shard_order) if path.is_dir() else []


def claims(path: Path) -> bool:
    return bool(_files(path))


def parts(path: Path, options: ReadOptions) -> list[ShardPart]:
    out = []
    for f in _files(path):
        arrays = load_arrays(f, ("text", "image"))
        labels = load_pair_labels(f, len(arrays["text"])) if options.labels else {}
        out.append(ShardPart(f.name, arrays["text"], arrays["image"], f, labels))
    return out
