"""Files and folders written safely: atomic replacement that never removes what the toolkit did not make, one
writer per output (an exclusive lock), writability probed before any work, damaged caches rebuilt, content keys.

The four writer rules of docs/design.md §7 live here: a folder moved into place carries :data:`MADE_MARK` and only
such a folder is ever replaced; a file never replaces a folder; :func:`hold_output` keeps a second writer out; output
paths are proved writable (:func:`check_output_file`, :func:`check_new_folder`) before the first computation.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from implosion_base.errors import InputError
from implosion_base.provenance import command_line, utc_now

__all__ = ["LOCK_NAME", "MADE_MARK", "atomic_path", "atomic_write_text", "check_new_folder", "check_output_file",
           "check_replaceable", "content_key", "discard_damaged", "ensure_writable_dir", "hold_output", "made_by_us",
           "save_npz_atomically", "write_folder_atomically"]

#: The file inside every folder this toolkit moves into place (:func:`atomic_path`): only a folder holding it is
#: ever replaced or removed by the toolkit — a folder a user made is never deleted.
MADE_MARK = ".made-by-implosion-toolkit"


def made_by_us(folder: Path) -> bool:
    """Whether ``folder`` is a folder this toolkit made (it holds :data:`MADE_MARK`; a symlink never is)."""
    folder = Path(folder)
    return folder.is_dir() and not folder.is_symlink() and (folder / MADE_MARK).is_file()


def check_replaceable(path: Path, *, name: str = "output") -> Path:
    """``path`` as a place :func:`atomic_path` may write: nothing there, a file, or a folder this toolkit made.
    A folder it did not make, or a symlink to a folder, is an InputError naming it (checked before any work)."""
    path = Path(path)
    if path.is_symlink() and path.is_dir():
        raise InputError(f"{name} {path} is a symlink to a folder; give the folder itself or another path")
    if path.is_dir() and not made_by_us(path):
        raise InputError(f"{name} {path} is a folder this toolkit did not make; it is never replaced (move it or "
                         "give another path)")
    return path


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` for any writer (a figure, an .npz, a safetensors file, a saved model
    folder): when the block ends without error it replaces ``path``, otherwise it is deleted — a failure or a kill
    never leaves a half-written ``path``. The temporary name keeps ``path``'s suffix, so writers that add one
    (``np.savez``) do not add it twice. A folder written this way gets :data:`MADE_MARK`; a folder standing at
    ``path`` is replaced only when it has that mark (:func:`check_replaceable`), and a file never replaces a
    folder — what the toolkit did not make is never removed."""
    import shutil

    path = Path(path)
    check_replaceable(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}{path.suffix}")
    try:
        yield tmp
        if tmp.is_dir() and not tmp.is_symlink():
            (tmp / MADE_MARK).touch()
        check_replaceable(path)  # again: something may have appeared there while the writer worked
        if path.is_dir():
            if not tmp.is_dir():
                raise InputError(f"{path} is a folder; a file is never written over it")
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)


def check_output_file(path: Path, *, name: str) -> Path:
    """``path`` as a file to be written later (validated before any work, nothing created): not a folder or a
    symlink to one, and its nearest existing ancestor a writable folder (proved by creating and removing a probe
    file there, so read-only file systems and /proc are found too). InputError naming ``name`` otherwise."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{name} {path} is a folder; give a file name")
    if path.exists() and not os.access(path, os.W_OK):
        raise InputError(f"{name} {path} is not writable")
    _probe_writable(path.parent, name, path)
    return path


def _probe_writable(folder: Path, name: str, target: Path) -> None:
    """The nearest existing ancestor of ``folder`` must be a writable folder (a probe file is created and removed;
    nothing is left)."""
    folder = Path(os.path.abspath(folder))
    while not folder.exists() and folder != folder.parent:
        if folder.is_symlink():  # a dangling link
            raise InputError(f"{name} {target}: {folder} is a broken symlink")
        folder = folder.parent
    if not folder.is_dir():
        raise InputError(f"{name} {target}: {folder} is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise InputError(f"{name} {target}: {folder} is not writable ({exc.strerror or exc})") from None


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path``, flushed to disk, via :func:`atomic_path` (a temporary file, then a rename)."""
    with atomic_path(Path(path)) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


def check_new_folder(folder: Path, *, name: str = "--out") -> Path:
    """``folder`` as a place for a new folder: absent, or an empty folder (not a symlink), below a writable one
    (InputError naming the problem otherwise). Nothing is created."""
    folder = Path(folder)
    if folder.is_symlink():
        raise InputError(f"{name} {folder} is a symlink; give a new folder's own path")
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{name} {folder} is a file, not a folder")
    if folder.exists() and any(folder.iterdir()):
        raise InputError(f"{name} {folder} is not an empty folder: it exists and is not empty")
    _probe_writable(folder.parent, name, folder)
    return folder


def write_folder_atomically(folder: Path, build: Callable[[Path], None], *, name: str = "--out") -> Path:
    """Build a new folder with ``build(tmp)`` beside ``folder`` and move it in with one rename (:func:`atomic_path`):
    a failure or a kill leaves no half-written folder. ``folder`` must pass :func:`check_new_folder`."""
    folder = check_new_folder(folder, name=name)
    if folder.is_dir():  # the empty folder given: ours to fill
        folder.rmdir()
    with atomic_path(folder) as tmp:
        build(tmp)
    return folder


#: The lock file of an output folder held by a running writer (:func:`hold_output`).
LOCK_NAME = ".implosion-lock"


@contextmanager
def hold_output(path: Path, *, name: str = "--out", folder: bool = True) -> Iterator[Path]:
    """Hold ``path`` — an output folder (``folder``), or an output file — for this process alone while the block
    runs: an exclusive ``flock`` on ``path/.implosion-lock`` (for a file, ``.NAME.implosion-lock`` beside it),
    taken before anything else is written there. A second writer, of the same setting or another, is refused
    with an InputError naming the folder and the holder (its pid, host, command and start). The operating system
    releases the lock of a process that dies, so a killed run's leftover lock file is taken over (with a note on
    stderr). The folder is created (:func:`ensure_writable_dir`) only once every argument has been checked, so a
    refusal before it leaves nothing behind; the lock file is removed when the block ends."""
    import fcntl
    import socket

    path = Path(path)
    where = ensure_writable_dir(path, name=name) if folder else ensure_writable_dir(path.parent, name=name)
    lock = where / LOCK_NAME if folder else where / f".{path.name}{LOCK_NAME}"
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 4096).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            raise InputError(f"{name} {path} is in use by another run ({' '.join(holder.split())}); wait for it "
                             f"to finish or use another {name}") from None
        try:  # the file may have been removed (its holder finished) between our open and our lock: start again
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    old = os.read(fd, 4096).decode("utf-8", "replace").strip()
    if old:
        sys.stderr.write(f"note: {path} was held by a run that no longer runs ({' '.join(old.split())}); taken over\n")
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}, started {utc_now()}: {command_line()}\n"
             .encode("utf-8", "replace"))
    os.fsync(fd)
    try:
        yield path
    finally:
        try:
            os.unlink(lock)
        except OSError:
            pass
        os.close(fd)  # releases the lock


def save_npz_atomically(path: Path, **arrays: Any) -> None:
    """Write arrays to ``path`` (compressed .npz, no pickled objects) via a temporary file and a rename."""
    import numpy as np

    with atomic_path(path) as tmp:
        np.savez_compressed(tmp, **arrays)


def ensure_writable_dir(path: Path, *, name: str = "--out") -> Path:
    """Create ``path`` if needed and prove it is a writable folder (InputError otherwise)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(f"{name} {path} exists and is not a folder")
    if not path.exists():  # proved writable before anything is created; an existing folder by the probe below
        _probe_writable(path.parent, name, path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise InputError(f"{name} {path} is not writable ({exc.strerror or exc})") from None
    return path


def discard_damaged(path: Path, exc: BaseException) -> None:
    """A cache entry that cannot be read is rebuilt, not fatal: warn once naming it and why, and remove it (a
    file or a folder) so the caller recomputes it. Only for caches — never for results."""
    import shutil
    import warnings

    path = Path(path)
    warnings.warn(f"cache entry {path} is damaged ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                  "); rebuilding it", stacklevel=2)
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def content_key(folder: Path, *, chunk: int = 1 << 20) -> str:
    """A key of everything a model folder holds: sha256 over every file's relative path, size and bytes (sorted;
    hidden files and ``__pycache__`` left out), streamed in ``chunk``-byte pieces. Two folders get the same key
    exactly when they hold the same files, so results of one model are never taken for another's."""
    folder = Path(folder)
    h = hashlib.sha256()
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = f.relative_to(folder)
        if any(part.startswith(".") or part == "__pycache__" for part in rel.parts):
            continue
        h.update(f"{rel.as_posix()}\0{f.stat().st_size}\0".encode())
        with open(f, "rb") as fh:
            while block := fh.read(chunk):
                h.update(block)
    return h.hexdigest()[:16]
