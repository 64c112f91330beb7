"""Input validation at the public boundary of :mod:`theory` (scikit-learn style: check once, name the argument).

Every function raises :class:`implosion_base.errors.InputError` with a message that names the argument, the offending row
and what was expected. Internals downstream trust what passed through here.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from implosion_base.errors import InputError

__all__ = ["as_matrix", "check_alpha", "check_pairs", "normalised_rows", "row_norms", "unit_rows"]


def check_scalar(value: Any, name: str, *, low: float | None = None, high: float | None = None,
                 low_open: bool = False, high_open: bool = False, integer: bool = False) -> float:
    """``value`` as a finite number in [low, high] (an end open when ``low_open`` / ``high_open``), an integer
    when ``integer``; otherwise :class:`InputError` naming ``name``, the range and the value (scikit-learn's
    ``check_scalar``, for every knob of the toolkit)."""
    kind = "an integer" if integer else "a number"
    bad = isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating))
    if not bad and integer and not isinstance(value, (int, np.integer)) and not float(value).is_integer():
        bad = True
    # a Python int of any size is finite (np.isfinite cannot take one beyond int64)
    if bad or (not isinstance(value, (int, np.integer)) and not np.isfinite(value)):
        raise InputError(f"{name} must be {kind}, finite, got {value!r}")
    lo_ok = low is None or (value > low if low_open else value >= low)
    hi_ok = high is None or (value < high if high_open else value <= high)
    if not lo_ok or not hi_ok:
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        raise InputError(f"{name} must be in {'(' if low_open else '['}{lo}, {hi}{')' if high_open else ']'}, "
                         f"got {value!r}")
    return int(value) if integer else float(value)


def torch_device(torch: Any, device: str | None) -> Any:
    """``device`` as a ``torch.device`` that exists on this machine (None: CUDA when available, else the CPU);
    a malformed name or a CUDA / MPS device the machine lacks is an InputError naming it."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise InputError(f"--device {device!r} is not a torch device (cpu, cuda, cuda:0, mps)") from None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise InputError(f"--device {device!r}: this machine has no CUDA device (use --device cpu)")
        if dev.index is not None and dev.index >= count:
            raise InputError(f"--device {device!r}: this machine has {count} CUDA device(s)")
    elif dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise InputError(f"--device {device!r}: MPS is not available on this machine (use --device cpu)")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise InputError(f"--device {device!r}: only cpu, cuda and mps are supported")
    return dev


def physical_memory() -> int:
    """This machine's memory in bytes (0 when the platform does not say): the budget memory checks compare
    against."""
    import os

    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, OSError, ValueError):
        return 0


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity where the platform says, else the machine's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def check_threads(threads: int | None) -> int | None:
    """``--threads``: None, or 1 ≤ threads ≤ 4 × this machine's cores (more only oversubscribes, and a huge
    value crashes OpenMP)."""
    import os

    if threads is None:
        return None
    most = 4 * (os.cpu_count() or 1)
    return int(check_scalar(threads, "--threads", low=1, high=most, integer=True))


def check_alpha(alpha: Any) -> float:
    """Return ``alpha`` as a float in [0, 1] or raise."""
    try:
        value = float(alpha)
    except (TypeError, ValueError):
        raise InputError(f"alpha must be a number in [0, 1], got {alpha!r}") from None
    return check_scalar(value, "alpha", low=0.0, high=1.0)


def as_matrix(x: Any, name: str) -> np.ndarray:
    """``x`` as a 2-D real array (no copy when it already is one)."""
    try:
        arr = np.asarray(x)
    except Exception as exc:  # pragma: no cover - exotic array-likes
        raise InputError(f"{name} is not an array: {exc}") from None
    if arr.ndim != 2:
        raise InputError(f"{name} must be a 2-D array (n rows × d dims), got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise InputError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    if arr.shape[1] < 1:
        raise InputError(f"{name} must have at least one dimension, got d=0")
    return arr


def check_pairs(text: Any, image: Any, *, min_n: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Check that ``text`` and ``image`` are n × d arrays of the same shape with n ≥ ``min_n``."""
    t = as_matrix(text, "text")
    v = as_matrix(image, "image")
    if t.shape[0] != v.shape[0]:
        raise InputError(f"text and image must hold the same number of pairs, got {t.shape[0]} and {v.shape[0]}")
    if t.shape[1] != v.shape[1]:
        raise InputError(f"text and image must have the same dimension, got d={t.shape[1]} and d={v.shape[1]}")
    if t.shape[0] < min_n:
        raise InputError(f"need at least {min_n} pairs, got n={t.shape[0]}")
    return t, v


def row_norms(x: np.ndarray, name: str, chunk: int = 4096) -> np.ndarray:
    r"""float64 L2 norms of the rows of ``x``, chunked (no full float64 copy), scale-safe
    (:math:`\lVert x\rVert = m\,\lVert x/m\rVert` with :math:`m = \max_j |x_j|`, so rows of 1e-200 or 1e200 are
    neither "zero" nor "overflowing"); rejects NaN/inf and zero rows."""
    norms = np.empty(x.shape[0], dtype=np.float64)
    for a in range(0, x.shape[0], chunk):
        block = np.asarray(x[a : a + chunk], dtype=np.float64)
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            peak = np.max(np.abs(block), axis=1) if block.shape[1] else np.zeros(len(block))
            scaled = block / np.where(peak > 0, peak, 1.0)[:, None]
            norms[a : a + chunk] = peak * np.sqrt(np.einsum("ij,ij->i", scaled, scaled))
    bad = ~np.isfinite(norms)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        if np.isfinite(np.asarray(x[row], dtype=np.float64)).all():
            raise InputError(f"{name} row {row} is too large to normalise (its norm overflows float64)")
        raise InputError(f"{name} contains NaN or inf (first at row {row})")
    zero = norms == 0.0
    if zero.any():
        raise InputError(f"{name} row {int(np.flatnonzero(zero)[0])} is a zero vector (cannot be normalised)")
    return norms


def unit_rows(x: np.ndarray, norms: np.ndarray | None = None) -> np.ndarray:
    r"""Rows of ``x`` scaled to unit L2 norm, :math:`x_i / \lVert x_i\rVert` (``norms`` when given, else
    ``np.linalg.norm`` in ``x``'s precision) — the toolkit's one unit-row helper. Unchecked: for rows known to be
    finite and non-zero (the simulator's, a model's outputs); user input goes through :func:`normalised_rows`."""
    return x / (np.linalg.norm(x, axis=-1, keepdims=True) if norms is None else np.asarray(norms)[..., None])


def normalised_rows(x: Any, name: str) -> np.ndarray:
    """float64 copy of ``x`` with unit-norm rows, validated: NaN, inf and zero rows are an InputError naming
    ``name`` and the row; the norms are scale-safe (:func:`row_norms`)."""
    arr = as_matrix(x, name)
    return unit_rows(np.asarray(arr, dtype=np.float64), row_norms(arr, name))
