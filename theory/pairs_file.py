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

__all__ = ["load_arrays", "load_pairs", "save_pairs", "SUFFIXES"]

SUFFIXES = (".npz", ".safetensors")


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
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in wanted if k in data.files}
                names = list(data.files)
        else:
            from safetensors import SafetensorError
            from safetensors.numpy import load_file

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
