"""DataComp's per-shard metadata: ``NAME.npz`` holding the pool's CLIP features per model — ``l14_img`` /
``l14_txt`` (ViT-L/14) and ``b32_img`` / ``b32_txt`` (ViT-B/32) — beside ``NAME.parquet`` (``uid``, ``url``,
``text`` and the pool's other columns). A path is a folder of such pairs of files, or one ``.npz`` of them; which
model's features are read is ``ReadOptions.features`` (``l14`` when present, else ``b32``), stated in the report."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from implosion_base.errors import InputError
from implosion_base.layouts.part import ReadOptions, ShardPart, read_parquet, shard_order

NAME = "DataComp (NAME.npz features + NAME.parquet)"
MODELS = ("l14", "b32")


def _members(path: Path) -> list[str]:
    try:
        with np.load(path, allow_pickle=False) as z:
            return list(z.files)
    except (OSError, ValueError, EOFError):
        return []


def _files(path: Path) -> list[Path]:
    files = [path] if path.is_file() else sorted(path.glob("*.npz"), key=shard_order) if path.is_dir() else []
    return [f for f in files if f.suffix == ".npz" and any(f"{m}_img" in _members(f) for m in MODELS)]


def claims(path: Path) -> bool:
    return bool(_files(path))


def parts(path: Path, options: ReadOptions) -> list[ShardPart]:
    out = []
    for f in _files(path):
        members = _members(f)
        model = options.features or next(m for m in MODELS if f"{m}_img" in members)
        if f"{model}_img" not in members or f"{model}_txt" not in members:
            raise InputError(f"{f}: no {model}_img / {model}_txt features (it holds {', '.join(members)}); choose "
                             f"--features from {', '.join(m for m in MODELS if f'{m}_img' in members)}")
        with np.load(f, allow_pickle=False) as z:
            t, v = z[f"{model}_txt"], z[f"{model}_img"]
        side = f.with_suffix(".parquet")
        labels = read_parquet(side, len(t)) if options.labels and side.is_file() else {}
        out.append(ShardPart(f"{f.stem} ({model})", t, v, f, labels, (f,) + ((side,) if side.is_file() else ())))
    return out
