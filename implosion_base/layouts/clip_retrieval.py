"""The layout ``clip-retrieval inference`` writes (and LAION's embedding releases keep): three sibling folders,
``img_emb/img_emb_N.npy`` and ``text_emb/text_emb_N.npy`` (float16 unit rows) and ``metadata/metadata_N.parquet``
(``image_path``, ``caption`` and any other columns of the data set), ``N`` zero-padded to the partition count. A
path is the folder holding the three."""

from __future__ import annotations

from pathlib import Path

from implosion_base.errors import InputError
from implosion_base.layouts.part import ReadOptions, ShardPart, read_parquet, shard_order
from implosion_base.npy_rows import open_npy

NAME = "clip-retrieval (img_emb/, text_emb/, metadata/)"


def claims(path: Path) -> bool:
    return path.is_dir() and (path / "img_emb").is_dir() and (path / "text_emb").is_dir()


def parts(path: Path, options: ReadOptions) -> list[ShardPart]:
    texts = sorted((path / "text_emb").glob("text_emb_*.npy"), key=shard_order)
    images = {f.name[len("img_emb_"):]: f for f in (path / "img_emb").glob("img_emb_*.npy")}
    numbers = [f.name[len("text_emb_"):] for f in texts]
    if not texts:
        raise InputError(f"{path / 'text_emb'}: no text_emb_N.npy files")
    if sorted(numbers) != sorted(images):
        odd = sorted(set(numbers) ^ set(images))[0]
        raise InputError(f"{path}: text_emb/ and img_emb/ hold different partitions (first unmatched: {odd})")
    out = []
    for f, number in zip(texts, numbers):
        t, v = open_npy(f), open_npy(images[number])
        meta = path / "metadata" / f"metadata_{number[:-4]}.parquet"
        labels = read_parquet(meta, len(t)) if options.labels and meta.is_file() else {}
        out.append(ShardPart(number[:-4], t, v, f, labels, (f, images[number]) + ((meta,) if meta.is_file() else ())))
    return out
