"""Files of text–image embedding pairs: arrays ``text`` and ``image`` (n × d) in ``.npz`` or ``.safetensors``.

This is the exchange format between the toolkit's parts (``python -m empirical.embed`` writes it,
``python -m theory.ad`` reads it). Loading never unpickles: ``.npz`` is opened with ``allow_pickle=False`` and
``.safetensors`` holds raw tensors only. Writing is atomic (temporary file in the same folder, then rename), so an
interrupted write never leaves a truncated file under the final name.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np

from implosion_base.errors import InputError
from implosion_base.files import atomic_path
from implosion_base.validate import physical_memory

__all__ = ["load_arrays", "load_pairs", "load_pair_labels", "load_side_metadata", "save_pairs", "SUFFIXES",
           "PAIR_LABELS"]

SUFFIXES = (".npz", ".safetensors")
#: Optional per-pair string arrays an ``.npz`` pairs file may hold (``python -m empirical.embed`` writes them).
PAIR_LABELS = ("file_name", "caption")


def _check_suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise InputError(f"{path}: unsupported file type {suffix or '(none)'!r}; use .npz or .safetensors")
    return suffix


def load_pairs(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(text, image)`` from ``path``; raise :class:`InputError` naming the file and the problem.

    Only checks the container (file exists, readable, both arrays present). Shapes and values are validated
    by the functions that consume them (:mod:`theory.ad`).
    """
    arrays = load_arrays(path, ("text", "image"))
    return arrays["text"], arrays["image"]


def load_pair_labels(path: str | os.PathLike[str], n: int) -> dict[str, np.ndarray]:
    """The optional per-pair labels (:data:`PAIR_LABELS`) of a pairs file: fixed-width string arrays of length
    ``n`` in an ``.npz`` (never unpickled); {} for ``.safetensors`` (it holds tensors only) or when absent. A label
    array of another length or kind is an InputError naming it."""
    path = Path(path)
    if _check_suffix(path) != ".npz":
        return {}
    out = {}
    try:
        with np.load(path, allow_pickle=False) as data:
            for key in PAIR_LABELS:
                if key not in data.files:
                    continue
                arr = data[key]
                if arr.dtype.kind not in "US" or arr.shape != (n,):
                    raise InputError(f"{path}: '{key}' must hold one string per pair ({n}), got dtype {arr.dtype} "
                                     f"shape {arr.shape}")
                out[key] = arr.astype(str)
    except InputError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise InputError(f"{path}: cannot read its labels ({type(exc).__name__}: {exc})") from None
    return out


#: Column names a side metadata CSV may use for each label (the first present wins): LAION's releases say ``url``
#: and ``caption``, Hugging Face imagefolders ``file_name`` and ``text``.
SIDE_COLUMNS = {"file_name": ("file_name", "url", "key", "path"), "caption": ("caption", "text", "prompt")}


def load_side_metadata(path: str | os.PathLike[str], n: int) -> dict[str, np.ndarray]:
    """Per-pair ``file_name`` / ``caption`` from a CSV beside the embeddings (a header, then one row per pair, in
    the embeddings' order; columns as :data:`SIDE_COLUMNS`). An unreadable file, a file with neither column, or a
    row count other than ``n`` is an InputError naming the file (and the first bad row)."""
    import csv

    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:  # -sig: a BOM (Excel's default) is no column
            reader = csv.DictReader(fh)
            header = reader.fieldnames or []
            cols = {k: next((c for c in names if c in header), None) for k, names in SIDE_COLUMNS.items()}
            if not any(cols.values()):
                raise InputError(f"{path}: no column of file names or captions (header {header[:8]}; expected one "
                                 f"of {', '.join(SIDE_COLUMNS['file_name'] + SIDE_COLUMNS['caption'])})")
            values: dict[str, list[str]] = {k: [] for k, c in cols.items() if c}
            for row in reader:
                if None in row or any(v is None for v in row.values()):
                    raise InputError(f"{path} row {reader.line_num}: {len(header)} fields expected")
                for k in values:
                    values[k].append(row[cols[k]])
    except InputError:
        raise
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{path}: cannot read this metadata CSV ({type(exc).__name__}: {exc})") from None
    got = len(next(iter(values.values())))
    if got != n:
        raise InputError(f"{path}: {got} metadata rows for {n} embedded pairs; one row per pair, in order")
    return {k: np.asarray(v, dtype=str) for k, v in values.items()}


def load_arrays(path: str | os.PathLike[str], wanted: Sequence[str]) -> dict[str, np.ndarray]:
    """The arrays named ``wanted`` from an ``.npz`` (never unpickled) or ``.safetensors`` file; a missing file,
    an unreadable container or a missing array raises :class:`InputError` naming the file."""
    path = Path(path)
    suffix = _check_suffix(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if not path.is_file():
        raise InputError(f"{path}: not a regular file")
    try:
        if suffix == ".npz":
            _check_npz_headers(path, wanted)
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in wanted if k in data.files}
                names = list(data.files)
            _check_loaded(path, arrays)
        else:
            from safetensors import SafetensorError
            from safetensors.numpy import load_file

            _check_safetensors_header(path, wanted)
            try:
                loaded = load_file(str(path))
            except SafetensorError as exc:
                raise InputError(f"{path}: not a readable safetensors file ({exc})") from None
            arrays = {k: loaded[k] for k in wanted if k in loaded}
            names = list(loaded)
    except InputError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        # ValueError includes numpy's refusal of pickled object arrays
        raise InputError(f"{path}: cannot read ({type(exc).__name__}: {exc})") from None
    missing = [k for k in wanted if k not in arrays]
    if missing:
        raise InputError(f"{path}: missing array(s) {', '.join(repr(k) for k in missing)}; found {names}")
    return arrays


def _check_npz_headers(path: Path, wanted: Sequence[str]) -> None:
    """Before loading: the file is a zip archive (an .npz, not a renamed .npy), and every wanted member's header
    declares no more bytes than the member holds and than half this machine's memory."""
    if not zipfile.is_zipfile(path):
        raise InputError(f"{path}: cannot read: not an .npz archive (a .npy file renamed .npz? save with numpy.savez)")
    budget = physical_memory() // 2  # 0 when the platform does not say: no check
    with zipfile.ZipFile(path) as zf:
        names = [i.filename for i in zf.infolist()]
        twice = sorted({k for k in names if names.count(k) > 1}
                       | {k for k in names if k.endswith(".npy") and k[:-4] in names})
        if twice:
            raise InputError(f"{path}: member {twice[0]!r} is stored twice (or shadowed): the file is damaged or was "
                             "made to mislead; save it again with numpy.savez")
        for name in wanted:
            # the member np.load reads for ``name``: the bare name first, else name.npy
            key = name if name in names else name + ".npy" if name + ".npy" in names else None
            if key is None:
                continue
            info = zf.getinfo(key)
            with zf.open(info) as fh:
                version = np.lib.format.read_magic(fh)
                read = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                    np.lib.format.read_array_header_2_0  # 2.0 and 3.0 share the layout
                shape, _, dtype = read(fh)
                header = fh.tell() if fh.seekable() else 0
            declared = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
            if declared > info.file_size - header + 1:
                raise InputError(f"{path}: array {name!r} declares shape {shape} ({declared:,} bytes) but holds "
                                 f"{info.file_size:,} bytes: the file is damaged")
            if budget and declared > budget:
                raise InputError(f"{path}: array {name!r} of shape {shape} needs {declared / 2**30:.1f} GiB, more "
                                 "than half this machine's memory")


def _check_loaded(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """After loading, a second guard behind the header check: an array larger than half this machine's memory is
    an InputError naming it (with duplicate members refused, the member loaded is the member checked)."""
    budget = physical_memory() // 2
    for name, arr in arrays.items():
        if budget and arr.nbytes > budget:
            raise InputError(f"{path}: array {name!r} of shape {arr.shape} is larger than half this machine's memory")


def _check_safetensors_header(path: Path, wanted: Sequence[str]) -> None:
    """Before loading: every wanted tensor has a dtype numpy reads (bf16 and fp8 are refused by name)."""
    import json
    import struct

    try:
        with open(path, "rb") as fh:
            (size,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(min(size, 100_000_000)))
    except (OSError, ValueError, struct.error):
        return  # not a safetensors header: the loader names the problem
    if not isinstance(header, dict):
        return
    for name in wanted:
        entry = header.get(name)
        dtype = entry.get("dtype") if isinstance(entry, dict) else None
        if dtype in ("BF16", "F8_E4M3", "F8_E5M2"):
            raise InputError(f"{path}: array {name!r} is {dtype}, which numpy cannot read; save it as float32 "
                             "(tensor.float()) or float16")


def save_pairs(path: str | os.PathLike[str], text: np.ndarray, image: np.ndarray) -> Path:
    """Write ``text`` and ``image`` to ``path`` (.npz or .safetensors) atomically; return the path."""
    path = Path(path)
    suffix = _check_suffix(path)
    text = np.ascontiguousarray(text)
    image = np.ascontiguousarray(image)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        if suffix == ".npz":
            np.savez(fh, text=text, image=image)
        else:
            from safetensors.numpy import save

            fh.write(save({"text": text, "image": image}))
    return path
