"""Webdataset tars read as they stream, never unpacked to disk: ``00000.tar`` holding, per sample, ``KEY.jpg`` (or
``.jpeg`` / ``.png`` / ``.webp``) and ``KEY.txt`` (its caption) and optionally ``KEY.json`` (its metadata: url,
sizes, ...), the files of one sample next to each other — what img2dataset writes and LAION-scale data sets ship.

:func:`iter_tar_samples` yields each usable sample's image (decoded by the folders' one decoder,
:func:`empirical.folder_data.decode_image`), caption, key and metadata; a sample without an image or a caption, an
unreadable image, a caption over the folders' limit or metadata that is not a JSON object is skipped, with one
warning per kind once the tar has been read. Member names are only ever used as strings.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from empirical.folder_data import MAX_CAPTION, FolderFormat, SkipReport, decode_image
from implosion_base.errors import InputError

__all__ = ["IMAGE_SUFFIXES", "iter_tar_samples"]

IMAGE_SUFFIXES = ("jpg", "jpeg", "png", "webp")


def _members(path: Path) -> Iterator[tuple[str, dict[str, bytes]]]:
    """(key, {suffix: bytes}) of each sample, in the tar's order (a sample's files are consecutive)."""
    key, files = None, {}
    try:
        with tarfile.open(path, mode="r|*") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                name = member.name
                base = name.rsplit("/", 1)[-1]
                if "." not in base:
                    continue
                stem, suffix = name[:len(name) - len(base)] + base.split(".", 1)[0], base.split(".", 1)[1].lower()
                if stem != key and key is not None:
                    yield key, files
                    files = {}
                key = stem
                handle = tar.extractfile(member)
                files[suffix] = handle.read() if handle is not None else b""
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise InputError(f"{path}: not a readable tar ({type(exc).__name__}: {exc})") from None
    if key is not None:
        yield key, files


def iter_tar_samples(path: Path, *, size: int | None = None) -> Iterator[tuple[int, np.ndarray, str, str,
                                                                                    dict[str, Any]]]:
    """Stream the samples of a webdataset tar (module docstring): yields ``(index, image (S, S, 3) uint8, caption,
    key, metadata)`` per usable sample, images centre-cropped and resized to ``size`` when given."""
    report = SkipReport(Path(path), FolderFormat(), unit="sample")
    for index, (key, files) in enumerate(_members(Path(path)), start=1):
        report.total += 1
        image_bytes = next((files[s] for s in IMAGE_SUFFIXES if s in files), None)
        if image_bytes is None:
            report.add("have no image (.jpg/.jpeg/.png/.webp)", index)
            continue
        if "txt" not in files:
            report.add("have no caption (.txt)", index)
            continue
        try:
            caption = files["txt"].decode("utf-8").strip()
        except UnicodeDecodeError:
            report.add("have a caption that is not UTF-8", index)
            continue
        if len(caption) > MAX_CAPTION:
            report.add(f"have captions over {MAX_CAPTION:,} characters", index)
            continue
        meta = _metadata(files.get("json"))
        if meta is None:
            report.add("have .json metadata that is not a JSON object", index)
            continue
        image, problem = decode_image(io.BytesIO(image_bytes), size)
        if problem:
            report.add(f"hold {problem}", index)
            continue
        yield index, image, caption, key, meta
    report.warn()


def _metadata(raw: bytes | None) -> dict[str, Any] | None:
    """A sample's ``.json`` as a dict ({} without one), None when it is not a JSON object."""
    if raw is None:
        return {}
    try:
        value = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None
