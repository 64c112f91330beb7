"""Files of text–image embedding pairs: arrays ``text`` and ``image`` (n × d) in ``.npz`` or ``.safetensors``.

This is the exchange format between the toolkit's parts (``python -m empirical.embed`` writes it,
``python -m theory.ad`` reads it). Loading never unpickles: ``.npz`` is opened with ``allow_pickle=False`` and
``.safetensors`` holds raw tensors only. Writing is atomic (temporary file in the same folder, then rename), so an
interrupted write never leaves a truncated file under the final name.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np

from theory.cli import InputError
from theory.validate import physical_memory

__all__ = ["load_arrays", "load_pairs", "load_pair_labels", "save_pairs", "SUFFIXES", "PAIR_LABELS"]

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
        for name in wanted:
            info = next((i for i in zf.infolist() if i.filename in (name, name + ".npy")), None)
            if info is None:
                continue
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
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            if suffix == ".npz":
                np.savez(fh, text=text, image=image)
            else:
                from safetensors.numpy import save

                fh.write(save({"text": text, "image": image}))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
