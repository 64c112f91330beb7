"""Users' own image-text folders, in the Hugging Face ``imagefolder`` convention, and their concepts.

**Layout.** A folder holds images and one metadata file: ``metadata.jsonl`` (one JSON object per line),
``metadata.csv`` (a header line, then one row per pair) or ``metadata.parquet``, either at the top or in a
``train/`` split folder (the images' paths are relative to the metadata file; other splits, ``validation/`` and
``test/``, are not read). The image path is read from column ``file_name`` and the caption from column ``text``
unless :class:`FolderFormat` names others (``--image-column``, ``--caption-column``). Without a metadata file, a
folder of **class subfolders** (``train/cat/*.png``, ``train/dog/*.png``, or the same at the top) is read as
``datasets``' imagefolder reads it: each image's label is its subfolder, and its caption here is
:data:`CLASS_CAPTION` filled with the label (so its concept is the label: :data:`CLASS_TEMPLATE`).

**Bad lines.** A line that is not an object, lacks a column, names a path outside the folder or an unreadable
image (or one over Pillow's decompression-bomb limit, or with a NUL byte in its name) is skipped; when the folder
has been read, one warning per kind of problem says how many lines it hit, which (the first few line numbers) and,
for a missing column, which keys the lines did have ("6 of 6 lines lack 'text'; keys seen: file_name, prompt; try
--caption-column prompt"). A missing folder or metadata file is an :class:`InputError`.

**Concepts** (:mod:`implosion_base.captions`). To poison a user's data the harness needs each pair's concept. Either a
list of concept names
(``--concepts-file``: one per line; a pair belongs to the concept its caption names — whole words, case-insensitive;
a caption naming two concepts is ambiguous and left out), or a caption template with one ``{}`` (``--caption-
template "a photo of a {}"``: the concept is what fills the braces). Pairs of no concept are left out, and said so.
"""

from __future__ import annotations

import csv
import hashlib
import json
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from implosion_base.captions import concept_of_captions
from implosion_base.errors import InputError

METADATA_NAMES: tuple[str, ...] = ("metadata.jsonl", "metadata.csv", "metadata.parquet")
#: Image files a class-subfolder layout lists (Pillow reads them).
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
#: The caption given to an image of a class-subfolder layout, and the template that reads its concept back.
CLASS_CAPTION = "a photo of a {}"
CLASS_TEMPLATE = CLASS_CAPTION
#: The longest caption read (the CSV reader's own field limit): a longer one skips its line.
MAX_CAPTION = 131_072


@dataclass(frozen=True)
class FolderFormat:
    """Which metadata columns hold the image path and the caption, and how an image becomes a square: ``crop``
    ``center`` (the middle square) or ``random`` (a square at a random offset along the longer side, drawn once
    per image from its line number: latents are encoded once, so this is not diffusers' per-epoch crop)."""

    image_column: str = "file_name"
    caption_column: str = "text"
    crop: str = "center"

    def __post_init__(self) -> None:
        if self.crop not in CROPS:
            raise InputError(f"unknown crop {self.crop!r}; choose from {', '.join(CROPS)}")

    @property
    def crop_tag(self) -> str:
        """The crop's part of a data key: nothing for centre crops (so keys made before crops existed still
        match), ``-crop<mode>`` otherwise."""
        return "" if self.crop == "center" else f"-crop{self.crop}"


#: How :func:`decode_image` makes an image square.
CROPS: tuple[str, ...] = ("center", "random")


def metadata_file(folder: Path) -> Path:
    """The folder's metadata file (:data:`METADATA_NAMES`) at the top, else in ``train/``; without one, the folder
    (or its ``train/``) itself when it holds class subfolders of images (:func:`is_class_folder`)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"image folder {folder} does not exist")
    for sub in (folder, folder / "train"):
        for name in METADATA_NAMES:
            if (sub / name).is_file():
                return sub / name
    for sub in (folder / "train", folder):
        if is_class_folder(sub):
            return sub
    raise InputError(f"{folder / 'metadata.jsonl'} is missing (nor metadata.csv or .parquet, at the top or in "
                     "train/, nor class subfolders of images)")


def is_class_folder(folder: Path) -> bool:
    """Whether ``folder`` holds subfolders with images (the class-subfolder imagefolder layout)."""
    return folder.is_dir() and any(sub.is_dir() and any(f.suffix.lower() in IMAGE_SUFFIXES for f in sub.iterdir())
                                   for sub in folder.iterdir())


def _class_rows(folder: Path) -> Iterator[tuple[int, object]]:
    """The rows of a class-subfolder layout, one per image, in sorted order: ``file_name`` (relative to
    ``folder``), ``label`` (the subfolder) and ``text`` (:data:`CLASS_CAPTION` of the label)."""
    images = sorted(f for sub in folder.iterdir() if sub.is_dir() for f in sub.iterdir()
                    if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
    for i, f in enumerate(images, 1):
        label = f.parent.name
        yield i, {"file_name": f"{label}/{f.name}", "label": label, "text": CLASS_CAPTION.format(label)}


def _parquet_rows(meta: Path) -> Iterator[tuple[int, object]]:
    """(row number, row) of a parquet metadata file (pyarrow: ``pip install pyarrow``)."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise InputError(f"{meta} is parquet: reading it needs pyarrow (pip install pyarrow)") from None
    try:
        table = pq.read_table(meta)
    except Exception as exc:  # noqa: BLE001 - pyarrow's errors for a damaged file are many; one line names it
        raise InputError(f"{meta} is not a readable parquet file ({type(exc).__name__})") from None
    for i, row in enumerate(table.to_pylist(), 1):
        yield i, row


def _rows(meta: Path) -> Iterator[tuple[int, object]]:
    """(line number, parsed row or None when unparsable) for every non-empty data line of ``meta`` (a parquet
    file's rows; a class-subfolder layout's images)."""
    if meta.is_dir():
        yield from _class_rows(meta)
        return
    if meta.suffix == ".parquet":
        yield from _parquet_rows(meta)
        return
    with open(meta, encoding="utf-8-sig", errors="replace", newline="") as fh:  # -sig: Excel's BOM is no column
        if meta.suffix == ".csv":
            reader = csv.DictReader(fh)
            while True:
                try:
                    row = next(reader)
                except StopIteration:
                    return
                except csv.Error:  # e.g. a field over the CSV reader's limit: that line only
                    yield reader.line_num, None
                    continue
                if any((v or "").strip() for v in row.values() if isinstance(v, str)):
                    yield reader.line_num, {k: v for k, v in row.items() if k is not None}
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield lineno, json.loads(line)
            except (json.JSONDecodeError, RecursionError):  # not JSON, or nested too deeply to read
                yield lineno, None


def count_folder_lines(folder: Path) -> int:
    """Non-empty data lines of the folder's metadata file (an upper bound on its pairs, for progress bars)."""
    return sum(1 for _ in _rows(metadata_file(folder)))


@dataclass
class SkipReport:
    """What a read of a folder left out, by kind; :meth:`warn` emits one warning per kind."""

    meta: Path
    fmt: FolderFormat
    total: int = 0
    lines: dict[str, list[int]] = field(default_factory=dict)
    keys: Counter = field(default_factory=Counter)
    unit: str = "line"  # what is counted: a metadata file's lines, or a tar's samples

    def add(self, kind: str, lineno: int) -> None:
        self.lines.setdefault(kind, []).append(lineno)

    def warn(self) -> None:
        for kind, lines in self.lines.items():
            shown = ", ".join(str(n) for n in lines[:5]) + (", ..." if len(lines) > 5 else "")
            msg = f"{self.meta}: {len(lines)} of {self.total} {self.unit}s {kind}; skipped ({self.unit} {shown})"
            if kind.startswith("lack"):
                seen = sorted(self.keys)
                msg += f"; keys seen: {', '.join(seen) or 'none'}"
                want = self.fmt.caption_column if f"'{self.fmt.caption_column}'" in kind else self.fmt.image_column
                hint = [k for k in seen if k not in (self.fmt.image_column, self.fmt.caption_column)]
                if hint:
                    option = "--caption-column" if want == self.fmt.caption_column else "--image-column"
                    msg += f"; try {option} {hint[0]}"
            warnings.warn(msg, stacklevel=3)


def iter_image_folder(folder: Path, *, size: int | None = None, after_line: int = 0,
                      fmt: FolderFormat = FolderFormat()):
    """Stream the pairs of an image-text folder (module docstring): yields ``(line_number, image (S, S, 3) uint8,
    caption, file_name)`` for each usable line after line ``after_line`` (earlier lines are not read: a resumed run
    continues where it stopped). Images are converted to RGB and, when ``size`` is given, centre-cropped to a
    square and resized to ``size``. Skipped lines are reported once the folder has been read."""
    meta = metadata_file(folder)
    base = meta if meta.is_dir() else meta.parent
    root = Path(folder).resolve()
    report = SkipReport(meta, fmt)
    for lineno, row in _rows(meta):
        report.total += 1
        if lineno <= after_line:
            continue
        if not isinstance(row, dict):
            report.add("are not JSON objects", lineno)
            continue
        report.keys.update(k for k in row if isinstance(k, str))
        name, text = row.get(fmt.image_column), row.get(fmt.caption_column)
        if not isinstance(text, str):
            report.add(f"lack '{fmt.caption_column}'" if text is None else
                       f"have a '{fmt.caption_column}' that is not text", lineno)
            continue
        if len(text) > MAX_CAPTION:
            report.add(f"have captions over {MAX_CAPTION:,} characters", lineno)
            continue
        if not isinstance(name, str):
            report.add(f"lack '{fmt.image_column}'" if name is None else
                       f"have a '{fmt.image_column}' that is not text", lineno)
            continue
        try:
            path = (base / name).resolve()
        except (OSError, ValueError, RuntimeError):  # a NUL byte in the name; a symlink loop
            report.add("name no usable file", lineno)
            continue
        if root not in path.parents:
            report.add("point outside the folder", lineno)
            continue
        if path.exists() and not path.is_file():  # a folder, or a FIFO / device that would block the read
            report.add("name no regular file", lineno)
            continue
        image, problem = decode_image(path, size, crop=fmt.crop, draw=lineno)
        if problem:
            report.add(f"name {problem}", lineno)
            continue
        yield lineno, image, text, name
    report.warn()


def decode_image(source, size: int | None, *, crop: str = "center", draw: int = 0
                 ) -> tuple[np.ndarray | None, str]:
    """An image file or file object as RGB uint8 (S, S, 3) — cropped to a square (``crop`` ``center``, or
    ``random``: the offset drawn from ``draw``, e.g. the metadata line) and resized to ``size`` when given — and
    "", or (None, what is wrong with it): an unreadable image, or one over Pillow's decompression-bomb limit. The
    one decoder of users' images (folders and webdataset tars)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(source) as im:
            im = im.convert("RGB")
            if size is not None:
                side = min(im.size)
                left, top = (im.size[0] - side) // 2, (im.size[1] - side) // 2
                if crop == "random":
                    rng = np.random.default_rng([draw, 0x43524F50])
                    left, top = int(rng.integers(im.size[0] - side + 1)), int(rng.integers(im.size[1] - side + 1))
                im = im.crop((left, top, left + side, top + side)).resize((size, size), Image.LANCZOS)
            return np.asarray(im, dtype=np.uint8), ""
    except Image.DecompressionBombError:
        return None, "images larger than Pillow's decompression-bomb limit"
    except (OSError, UnidentifiedImageError, ValueError):
        return None, "unreadable images"


def load_image_folder(folder: Path, *, size: int | None = None, fmt: FolderFormat = FolderFormat()
                      ) -> tuple[np.ndarray, list[str], list[str]]:
    """Read a whole folder (:func:`iter_image_folder`): ``(images (N, S, S, 3) uint8, captions, file_names)``.
    If nothing usable is left, :class:`InputError`."""
    images: list[np.ndarray] = []
    texts: list[str] = []
    names: list[str] = []
    for _, image, text, name in iter_image_folder(folder, size=size, fmt=fmt):
        images.append(image)
        texts.append(text)
        names.append(name)
    if not images:
        raise InputError(f"no readable image-text pairs in {folder}")
    if size is None and len({im.shape for im in images}) > 1:
        raise InputError(f"images in {folder} differ in size; pass a size to resize them")
    return np.stack(images), texts, names


# ---------------------------------------------------------------------------------------------------------------
# a user's pairs as the harness's concept data (concepts from captions: implosion_base.captions)


def folder_key(folder: Path, fmt: FolderFormat) -> str:
    """A content key of a folder: its metadata file's bytes, the columns read, and each referenced file's size
    and modification time (so edited images or captions make a new key)."""
    meta = metadata_file(folder)
    base = meta if meta.is_dir() else meta.parent
    h = hashlib.sha256(b"class folders" if meta.is_dir() else meta.read_bytes())
    h.update(json.dumps([fmt.image_column, fmt.caption_column]).encode())
    for f in sorted(p for p in base.rglob("*") if p.is_file() and p != meta):
        try:
            st = f.stat()
        except OSError:  # vanished, or a link that cannot be followed: not part of the data
            continue
        h.update(f"{f.relative_to(base)}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def held_out_count(pairs: int, held_out: int) -> int:
    """How many of a concept's ``pairs`` the folder reader holds out: ``min(held_out, max(1, pairs // 5))``."""
    return min(held_out, max(1, pairs // 5))


def concept_data_from_folder(folder: Path, *, size: int, held_out: int, fmt: FolderFormat = FolderFormat(),
                             names: list[str] | None = None, template: str | None = None):
    """A user's folder as the harness's (training, held-out) :class:`empirical.data.ConceptData`, its content key
    and notes on what was left out. Each pair's concept comes from ``names`` or ``template``
    (:func:`concept_of_captions`); pairs of no concept are left out; concepts with fewer than 2 pairs are dropped
    (one must train, one must measure); of the rest, the last ``h = min(held_out, max(1, n_c // 5))`` pairs of
    each concept (in file order) are held out to measure the judge and to be the clean reference of the
    generated images. Captions stay the user's own."""
    images, captions, _ = load_image_folder(folder, size=size, fmt=fmt)
    return concept_data_from_pairs(images, captions, source=f"user-{folder_key(folder, fmt)}-s{size}{fmt.crop_tag}",
                                   where=str(folder), held_out=held_out, names=names, template=template)


def concept_data_from_pairs(images: np.ndarray, captions: list[str], *, source: str, where: str, held_out: int,
                            names: list[str] | None = None, template: str | None = None):
    """:func:`concept_data_from_folder` for pairs read from anywhere (a folder, a ``datasets`` data set):
    ``source`` is their content key, ``where`` names them in errors."""
    from empirical.data import ConceptData

    labels, concept_names, why = concept_of_captions(captions, names=names, template=template)
    notes = [f"{n} pair(s) {reason}: left out" for reason, n in why.items()]
    counts = np.bincount(labels[labels >= 0], minlength=len(concept_names))
    keep = [c for c in range(len(concept_names)) if counts[c] >= 2]
    dropped = [concept_names[c] for c in range(len(concept_names)) if counts[c] < 2]
    if dropped:
        notes.append(f"{len(dropped)} concept(s) with fewer than 2 pairs dropped: {', '.join(dropped[:5])}"
                     + (", ..." if len(dropped) > 5 else ""))
    if len(keep) < 2:
        raise InputError(f"{where}: only {len(keep)} concept(s) with at least 2 pairs; poisoning needs 2 or more "
                         f"(pairs per concept: {dict(zip(concept_names, counts.tolist()))})")
    remap = np.full(len(concept_names), -1, dtype=np.int64)
    remap[keep] = np.arange(len(keep))
    new = np.where(labels >= 0, remap[np.maximum(labels, 0)], -1)
    train_idx, held_idx = [], []
    for c in range(len(keep)):
        where = np.flatnonzero(new == c)
        h = held_out_count(len(where), held_out)
        train_idx += where[:-h].tolist()
        held_idx += where[-h:].tolist()
    order = np.argsort(np.asarray(train_idx, dtype=np.int64), kind="stable")
    train_idx = np.asarray(train_idx, dtype=np.int64)[order]
    held_idx = np.sort(np.asarray(held_idx, dtype=np.int64))
    kept_names = [concept_names[c] for c in keep]

    def part(idx: np.ndarray) -> ConceptData:
        return ConceptData(images[idx], new[idx], np.zeros(len(idx), np.int64), [captions[i] for i in idx],
                           kept_names, ["user data"], notes)

    key = f"{source}-h{held_out}-" + hashlib.sha256(
        json.dumps([kept_names, names, template]).encode()).hexdigest()[:8]
    return part(train_idx), part(held_idx), key
