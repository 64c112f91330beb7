"""Run records shared by every long job (``simulate.sweep``, ``empirical.run``): atomic files, an append-only
results table that survives a kill at any moment, and a run manifest (config, versions, seed, git commit).

The results table is a CSV with a header. Each finished point is one line, written with flush + fsync. A process
killed mid-write leaves at most one partial last line; :func:`read_table` drops it (and truncates the file to the
last complete line before more rows are appended), so a resumed run neither loses nor duplicates a point.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator, Sequence

from theory.cli import InputError

__all__ = ["COLUMN_ALIASES", "LOCK_NAME", "MADE_MARK", "ResultsTable", "atomic_path", "check_output_file",
           "check_replaceable", "hold_output", "key_difference", "made_by_us", "UNLOADABLE", "atomic_write_text", "check_new_folder", "claim_run_folder", "current_column", "read_csv_rows", "ensure_writable_dir", "write_folder_atomically", "git_commit", "package_versions",
           "read_table", "save_npz_atomically", "utc_now", "write_manifest", "command_line"]


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


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


def _damage_errors() -> tuple[type[BaseException], ...]:
    import zipfile

    from safetensors import SafetensorError

    return (OSError, ValueError, KeyError, EOFError, RuntimeError, TypeError, AttributeError, zipfile.BadZipFile,
            SafetensorError)


#: What reading a damaged cache file raises (truncated zip or safetensors, bad JSON, missing members, ...).
DAMAGE = _damage_errors()
#: What loading a damaged or impossible model folder raises: :data:`DAMAGE`, and config values no model can be
#: built from (empty lists, zero sizes) or JSON nested too deeply to read.
UNLOADABLE = DAMAGE + (IndexError, ZeroDivisionError, RecursionError)


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


#: Older spellings of result columns, still read: old name → current name. A column named after one with a suffix
#: (``benign_acc_ci95``) follows it (``unpoisoned_acc_ci95``).
COLUMN_ALIASES: dict[str, str] = {"benign_acc": "unpoisoned_acc"}


def current_column(name: str) -> str:
    """``name`` in today's vocabulary (:data:`COLUMN_ALIASES`); unchanged when it is not an old spelling."""
    for old, new in COLUMN_ALIASES.items():
        if name == old or name.startswith(old + "_"):
            return new + name[len(old):]
    return name


def read_csv_rows(path: Path) -> list[dict[str, str]]:
    """Every row of a CSV file with a header, columns renamed to today's vocabulary (:func:`current_column`).
    A file that cannot be read as UTF-8 CSV (a folder, bytes that are not UTF-8, a field over the CSV reader's
    limit, a row with more or fewer fields than the header) is an InputError naming the file and line; a BOM
    is no part of the first column's name."""
    path = Path(path)
    try:
        return _table_rows(path, path.read_bytes().decode("utf-8-sig"), None, hint="")
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{path}: cannot read this table ({_why(exc)})") from None


def _why(exc: BaseException) -> str:
    """A short reason for a reader's failure: what a one-line error says of it."""
    if isinstance(exc, UnicodeDecodeError):
        return f"byte {exc.start} is not UTF-8"
    if isinstance(exc, IsADirectoryError):
        return "it is a folder"
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    return " ".join(str(exc).split())[:200] or type(exc).__name__


def read_table(path: Path, columns: Sequence[str] | None) -> list[dict[str, str]]:
    """Rows of a results table (empty if absent). A partial last line (a kill mid-write) is dropped and cut off
    the file; a header that differs from ``columns`` (unless None: any header) or a complete line with the wrong
    number of fields (damaged by hand or by another program) is an InputError naming the line — never repaired by
    guessing, so nothing computed is lost."""
    if not path.exists():
        return []
    if not path.is_file():
        raise InputError(f"{path} is not a file (a folder?); use another --out")
    try:
        raw = path.read_bytes()
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read this results table ({_why(exc)}); use another --out") from None
    if not raw:
        return []
    if not raw.endswith(b"\n"):
        cut = raw.rfind(b"\n") + 1
        with open(path, "r+b") as fh:
            fh.truncate(cut)
        text = raw[:cut].decode("utf-8")
    try:
        return _table_rows(path, text, columns)
    except csv.Error as exc:
        raise InputError(f"{path}: damaged results table ({_why(exc)}); use another --out") from None


def _table_rows(path: Path, text: str, columns: Sequence[str] | None, *,
                hint: str = "; remove that line to resume, or use another --out") -> list[dict[str, str]]:
    """The rows of CSV ``text`` (header renamed by :func:`current_column`, and equal to ``columns`` unless None);
    a line with too many or too few fields is an InputError naming it, with ``hint`` appended."""
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None:
        return []
    reader.fieldnames = [current_column(k) for k in reader.fieldnames]
    if columns is not None and list(reader.fieldnames) != list(columns):
        raise InputError(f"{path} has columns {reader.fieldnames}, expected {list(columns)}; use another --out")
    rows = []
    for row in reader:
        if None in row or any(v is None for v in row.values()):  # too many or too few fields
            n = len([v for k, v in row.items() if k is not None and v is not None]) + len(row.get(None, []) or [])
            raise InputError(f"{path} line {reader.line_num} is damaged ({n} fields, expected "
                             f"{len(reader.fieldnames)}){hint}")
        rows.append(row)
    return rows


class ResultsTable:
    """Append-only CSV with a fixed header; every row is flushed and fsynced as it is written.

    ``fill`` upgrades a table written by an older version: when the file's header lacks some of ``columns`` but
    has no column outside them, ``fill(row)`` gives the missing values of each old row and the file is rewritten
    atomically with the new header (nothing computed is lost). Without ``fill`` a different header is an error."""

    def __init__(self, path: Path, columns: Sequence[str],
                 fill: Callable[[dict[str, str]], dict[str, Any]] | None = None):
        self.path = Path(path)
        self.columns = list(columns)
        if self.path.exists() and not os.access(self.path, os.W_OK):  # found now, not after a point was computed
            raise InputError(f"{self.path} is not writable; fix its permissions or use another --out")
        _rename_old_columns(self.path)
        if fill is not None:
            _upgrade(self.path, self.columns, fill)
        self.rows = read_table(self.path, self.columns)  # also repairs a partial last line

    def keep_only(self, keep: Callable[[dict[str, str]], bool]) -> int:
        """Drop, atomically, the rows for which ``keep`` is false (e.g. rows of a point a kill left without its
        results row); return how many were dropped."""
        kept = [r for r in self.rows if keep(r)]
        dropped = len(self.rows) - len(kept)
        if dropped:
            atomic_write_text(self.path, csv_text([{k: r[k] for k in self.columns} for r in kept])
                              if kept else ",".join(self.columns) + "\n")
            self.rows = kept
        return dropped

    def append(self, rows: Iterable[dict[str, Any]]) -> None:
        rows = list(rows)
        if not rows:
            return
        new = not self.path.exists() or self.path.stat().st_size == 0
        with open(self.path, "a", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=self.columns, lineterminator="\n")
            if new:
                writer.writeheader()
            for row in rows:
                writer.writerow({k: row[k] for k in self.columns})
            fh.flush()
            os.fsync(fh.fileno())
        self.rows.extend({k: str(row[k]) for k in self.columns} for row in rows)


def _rename_old_columns(path: Path) -> None:
    """Rewrite, atomically, a table's header whose columns have old spellings (:data:`COLUMN_ALIASES`); the rows
    are kept byte for byte."""
    if not path.exists() or not path.stat().st_size:
        return
    raw = path.read_bytes() if path.is_file() else b""
    head, sep, body = raw.partition(b"\n")
    try:
        header = next(csv.reader([head.decode("utf-8")]), [])
        rest = body.decode("utf-8")
    except (UnicodeDecodeError, csv.Error):
        return  # read_table names the damage
    renamed = [current_column(k) for k in header]
    if renamed != header and sep:
        atomic_write_text(path, ",".join(renamed) + "\n" + rest)


def _upgrade(path: Path, columns: list[str], fill: Callable[[dict[str, str]], dict[str, Any]]) -> None:
    """Rewrite ``path`` with header ``columns`` when its header is a proper subset of them (see ResultsTable)."""
    if not path.exists() or not path.stat().st_size:
        return
    rows = read_table(path, None)
    with open(path, newline="", encoding="utf-8") as fh:
        header = next(csv.reader(fh), [])
    if header == columns or not set(header) < set(columns):
        return
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        extra = fill(row)
        writer.writerow({k: row[k] if k in row else extra[k] for k in columns})
    atomic_write_text(path, buf.getvalue())


def package_versions(names: Iterable[str]) -> dict[str, str | None]:
    """Installed versions (None when absent), plus Python and the platform."""
    out: dict[str, str | None] = {"python": platform.python_version(), "platform": platform.platform()}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_commit(cwd: Path | None = None) -> str | None:
    """The checkout's commit (with ``-dirty`` when there are uncommitted changes), or None outside git."""
    where = cwd or Path(__file__).resolve().parents[1]
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=10)
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=where,
                               capture_output=True, text=True, timeout=10)
        return sha.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def csv_text(rows: Sequence[dict[str, Any]]) -> str:
    """``rows`` (dicts sharing the first row's keys) as CSV text with a header line, full float precision."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def read_manifest(path: Path) -> dict[str, Any]:
    """A run folder's manifest as a dict ({} when absent); unreadable, invalid JSON or JSON that is not an
    object is an InputError naming the file."""
    if not path.exists():
        return {}
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        why = "nested too deeply" if isinstance(exc, RecursionError) else _why(exc)
        raise InputError(f"{path} is unreadable ({why}); use another --out") from None
    if not isinstance(manifest, dict):
        raise InputError(f"{path} is not a manifest (a JSON {type(manifest).__name__}, not an object); "
                         "use another --out")
    return manifest


def key_difference(old: dict, new: dict) -> str:
    """The top-level keys in which two identities (configurations, settings) differ, sorted and comma-separated
    ("" when none)."""
    return ", ".join(sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k)))


def claim_run_folder(out: Path, key: str, identity: dict, *, has_results: bool | Callable[[], bool],
                     difference: Callable[[dict, dict], str], refusal: Callable[[str], str]) -> dict[str, Any]:
    """Claim the run folder ``out`` for one configuration: its manifest's ``key`` (``identity``) is what every
    result row there shares. Returns the manifest to continue (the previous one when it is this configuration's,
    else a fresh ``{key: identity}``). Refused (InputError, before anything is written): results whose manifest
    does not say their ``key``; results of another configuration (``refusal(difference(old, identity))``, the
    message naming what differs). A manifest without results (a start that failed) does not lock the folder.
    ``has_results`` may be a function, asked only once the manifest has been read (a damaged manifest is named
    first)."""
    path = out / "manifest.json"
    manifest = read_manifest(path)
    old = manifest.get(key)
    if old is not None and not isinstance(old, dict):
        raise InputError(f"{path} has no readable {key!r}; use another --out")
    if callable(has_results):
        has_results = has_results()
    if has_results and old is None:
        raise InputError(f"{out / 'results.csv'} holds results without a manifest saying their {key}; use another "
                         "--out")
    if has_results and difference(old, identity):
        raise InputError(refusal(difference(old, identity)))
    if old != identity:
        manifest = {}
    manifest[key] = identity
    return manifest


def write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    """Atomically write a manifest as indented JSON."""
    atomic_write_text(path, json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n")


def command_line() -> str:
    return " ".join([Path(sys.executable).name, *sys.argv])
