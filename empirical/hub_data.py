"""A data set as Hugging Face ``datasets`` reads it (``--dataset-name``), the way diffusers' training scripts take
theirs: ``datasets.load_dataset(NAME, split=...)``.

NAME is a local folder ``datasets`` reads without a script (an imagefolder with metadata.jsonl / .csv / .parquet or
class subfolders, parquet or arrow shards with an image column, ...) or the name of a hub data set already in the
local cache: nothing is downloaded (the libraries' offline switches are on while it loads, unless
``HF_HUB_OFFLINE=0`` asks for the network). The image column is ``--image-column`` when the data set
has it, else ``image`` (diffusers' default); the caption column is ``--caption-column`` (default ``text``) or, for a
data set with a class-label column ``label`` and no captions, :data:`empirical.folder_data.CLASS_CAPTION` of the
label's name (its concept is then the label). Images are decoded by the one decoder of users' images
(:func:`empirical.folder_data.decode_image`: cropped to a square, resized; an unreadable one is skipped and said
so, as a folder's bad lines are).
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from pathlib import Path

import numpy as np

from empirical.folder_data import CLASS_CAPTION, FolderFormat, decode_image
from implosion_base.errors import InputError, first_line


def load_hub_dataset(name: str, split: str = "train", cache_dir: Path | None = None):
    """``datasets.load_dataset(name, split=split)`` offline (both libraries' offline switches on for the call and
    restored after, unless ``HF_HUB_OFFLINE=0`` says otherwise); InputError naming what is missing otherwise. A
    local folder's prepared arrow files go to ``cache_dir`` (the run's ``--cache``) when given; a hub name is read
    from the hub's own cache, where it was downloaded."""
    try:
        import datasets
        import huggingface_hub.constants as hub
    except ImportError:
        raise InputError("--dataset-name needs the datasets package: pip install datasets") from None
    offline = os.environ.get("HF_HUB_OFFLINE", "1") != "0"
    before = datasets.config.HF_HUB_OFFLINE, hub.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = hub.HF_HUB_OFFLINE = offline or before[0]
    try:
        local = cache_dir is not None and Path(name).exists()
        return datasets.load_dataset(name, split=split, cache_dir=str(Path(cache_dir) / "datasets") if local else None)
    except (FileNotFoundError, ConnectionError, ValueError, datasets.exceptions.DatasetNotFoundError) as exc:
        raise InputError(f"--dataset-name {name}: not a local data set folder nor a data set in the local cache "
                         f"(nothing is downloaded): {first_line(exc)[:200]}") from None
    finally:
        datasets.config.HF_HUB_OFFLINE, hub.HF_HUB_OFFLINE = before


def hub_pairs(ds, fmt: FolderFormat, *, size: int, where: str) -> tuple[np.ndarray, list[str], bool]:
    """(images (N, S, S, 3) uint8, captions, whether the captions were made from class labels) of a loaded data
    set (module docstring); rows whose image does not decode are skipped with one warning."""
    from datasets import ClassLabel, Image

    columns = ds.column_names
    image_col = fmt.image_column if fmt.image_column in columns else "image"
    if image_col not in columns or not isinstance(ds.features[image_col], Image):
        raise InputError(f"{where} has no image column {fmt.image_column!r} or 'image' (columns: "
                         f"{', '.join(columns)}); try --image-column")
    from_labels = fmt.caption_column not in columns
    if from_labels and not isinstance(ds.features.get("label"), ClassLabel):
        raise InputError(f"{where} has no caption column {fmt.caption_column!r} and no class-label column 'label' "
                         f"(columns: {', '.join(columns)}); try --caption-column")
    ds = ds.cast_column(image_col, Image(decode=False))  # bytes or a path: decoded here, bad ones skipped
    label_names = ds.features["label"].names if from_labels else None
    images, captions, bad = [], [], []
    for i, row in enumerate(ds):
        text = CLASS_CAPTION.format(label_names[row["label"]]) if from_labels else row[fmt.caption_column]
        raw = row[image_col] or {}
        source = io.BytesIO(raw["bytes"]) if raw.get("bytes") else raw.get("path")
        image, problem = decode_image(source, size, crop=fmt.crop, draw=i + 1) if source else (None, "no image")
        if problem or not isinstance(text, str):
            bad.append(i)
            continue
        images.append(image)
        captions.append(text)
    if bad:
        warnings.warn(f"{where}: {len(bad)} of {len(ds)} rows have an unreadable image or no caption text; skipped "
                      f"(rows {', '.join(map(str, bad[:5]))}{', ...' if len(bad) > 5 else ''})", stacklevel=2)
    if not images:
        raise InputError(f"no readable image-text pairs in {where}")
    return np.stack(images), captions, from_labels


def dataset_key(ds, name: str, split: str, fmt: FolderFormat, size: int) -> str:
    """A content key of the pairs read: the data set's own fingerprint (datasets hashes its files and
    transforms), its name and split, the columns, crop and size."""
    h = hashlib.sha256(f"{ds._fingerprint}|{name}|{split}|{fmt.image_column}|{fmt.caption_column}".encode())
    return f"hub-{h.hexdigest()[:16]}-s{size}{fmt.crop_tag}"


def concept_data_from_hub(name: str, *, size: int, held_out: int, fmt: FolderFormat = FolderFormat(),
                          names: list[str] | None = None, template: str | None = None, split: str = "train",
                          cache_dir: Path | None = None):
    """A ``datasets`` data set as the harness's (training, held-out, key): :func:`empirical.folder_data.
    concept_data_from_pairs` of :func:`hub_pairs`; without ``names`` or ``template``, a class-labelled data set's
    concepts are its labels, and any other is an InputError asking for them."""
    from empirical.folder_data import CLASS_TEMPLATE, concept_data_from_pairs

    ds = load_hub_dataset(name, split, cache_dir)
    where = f"--dataset-name {name} (split {split})"
    images, captions, from_labels = hub_pairs(ds, fmt, size=size, where=where)
    if names is None and template is None:
        if not from_labels:
            raise InputError("--dataset-name needs its concepts: --concepts-file FILE or --caption-template "
                             "'a photo of a {}' (a class-labelled data set names its own)")
        template = CLASS_TEMPLATE
    return concept_data_from_pairs(images, captions, source=dataset_key(ds, name, split, fmt, size), where=where,
                                   held_out=held_out, names=names, template=template)
