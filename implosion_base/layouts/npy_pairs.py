"""Paired ``.npy`` shards in one folder, as LAION's embedding releases ship them: ``text_emb_XXXX.npy`` +
``img_emb_XXXX.npy`` (read row range by row range), with ``metadata_XXXX.csv`` or ``.parquet`` beside them when there
is one. A path is such a folder, or one file of a pair (either name finds its partner)."""

from __future__ import annotations

from pathlib import Path

from implosion_base.errors import InputError
from implosion_base.layouts.part import ReadOptions, ShardPart, read_parquet, shard_order
from implosion_base.npy_rows import open_npy
from implosion_base.pairs_file import load_side_metadata

NAME = "text_emb/img_emb .npy pairs"
TEXT, IMAGE = "text_emb_", "img_emb_"


def _text_files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted((q for q in path.iterdir() if q.suffix == ".npy" and q.name.startswith(TEXT)), key=shard_order)
    if path.suffix == ".npy" and path.name.startswith(IMAGE):
        return [path.with_name(TEXT + path.name[len(IMAGE):])]
    return [path] if path.suffix == ".npy" else []


def claims(path: Path) -> bool:
    return bool(_text_files(path))


def parts(path: Path, options: ReadOptions) -> list[ShardPart]:
    out = []
    for f in _text_files(path):
        if not f.name.startswith(TEXT):
            raise InputError(f"{f}: a .npy shard must be named {TEXT}XXXX.npy or {IMAGE}XXXX.npy")
        partner = f.with_name(IMAGE + f.name[len(TEXT):])
        if not f.is_file() or not partner.is_file():
            raise InputError(f"{f if not f.is_file() else partner}: missing (each {TEXT}XXXX.npy needs its "
                             f"{IMAGE}XXXX.npy)")
        t, v = open_npy(f), open_npy(partner)
        if t.dtype != v.dtype:  # one release's shards share a dtype: a mismatch means files from two releases
            raise InputError(f"{f.name} is {t.dtype} but {partner.name} is {v.dtype}: the two halves of a shard pair "
                             "must share a dtype (convert one, or check that they belong together)")
        number = f.name[len(TEXT):-4]
        meta = next((m for m in (f.with_name(f"metadata_{number}.csv"), f.with_name(f"metadata_{number}.parquet"))
                     if m.is_file()), None)
        labels = _metadata(meta, len(t)) if options.labels and meta is not None else {}
        out.append(ShardPart(number, t, v, f, labels, (f, partner) + ((meta,) if meta else ())))
    return out


def _metadata(path: Path, n: int) -> dict:
    """``metadata_<number>.csv`` (file_name / caption columns) or ``.parquet`` (every column) beside the shard."""
    return load_side_metadata(path, n) if path.suffix == ".csv" else read_parquet(path, n)
