"""Run records shared by every long job (``simulate.sweep``, ``empirical.run``, the audit): an append-only results
table that survives a kill at any moment, a run manifest (config, versions, seed, git commit), and the claim of a
run folder for one configuration.

The results table is a CSV with a header. Each finished point is one line, written with flush + fsync. A process
killed mid-write leaves at most one partial last line; :func:`read_table` drops it (and truncates the file to the
last complete line before more rows are appended), so a resumed run neither loses nor duplicates a point. Atomic
files and folder locks are :mod:`implosion_base.files`.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from implosion_base.errors import InputError
from implosion_base.files import atomic_write_text

__all__ = ["COLUMN_ALIASES", "MOVED_COLUMNS", "VALUE_ALIASES", "ResultsTable", "claim_run_folder", "csv_text", "current_column", "current_header",
           "current_values", "key_difference",
           "read_csv_rows", "read_manifest", "read_table", "write_manifest"]


#: Older spellings of result columns, still read: old name → current name. A column named after one with a suffix
#: (``benign_acc_ci95``) follows it (``unpoisoned_acc_ci95``).
COLUMN_ALIASES: dict[str, str] = {"benign_acc": "unpoisoned_acc"}

#: Columns whose *measure* moved to a new name, the old name now holding another measure: (old name, new name),
#: in the order the moves were made, each applied only to a header without its new name (a table written before
#: that move). ``unpoisoned_meaningless`` held the salience rule's rate until it was found to read noise as
#: meaningful (now ``unpoisoned_no_standout``), then the rule calibrated on clean renders until it was found to
#: flag a third to a half of a competent model's images (now ``unpoisoned_off_render``); it is now the rule
#: calibrated on the clean base model's own samples (:mod:`empirical.meaningless`).
MOVED_COLUMNS: tuple[tuple[str, str], ...] = (("unpoisoned_meaningless", "unpoisoned_no_standout"),
                                              ("unpoisoned_meaningless", "unpoisoned_off_render"))


#: Older spellings of values, still read: column -> {old value: current value}. ``targets`` (the poison target
#: rule, :mod:`theory.poisoning`): the harness's ``all`` is ``random``.
VALUE_ALIASES: dict[str, dict[str, str]] = {"targets": {"all": "random"}}


def current_values(row: dict[str, str]) -> dict[str, str]:
    """``row`` (already in today's column names) with old spellings of values renamed (:data:`VALUE_ALIASES`)."""
    for column, aliases in VALUE_ALIASES.items():
        if row.get(column) in aliases:
            row[column] = aliases[row[column]]
    return row


def current_header(names: Sequence[str]) -> list[str]:
    """A header in today's vocabulary: each name by :func:`current_column`, then :data:`MOVED_COLUMNS` for a
    header that predates the move."""
    out = [current_column(k) for k in names]
    for old, new in MOVED_COLUMNS:
        if old in out and new not in out:
            out[out.index(old)] = new
    return out


def current_column(name: str) -> str:
    """``name`` in today's vocabulary (:data:`COLUMN_ALIASES`); unchanged when it is not an old spelling."""
    for old, new in COLUMN_ALIASES.items():
        if name == old or name.startswith(old + "_"):
            return new + name[len(old):]
    return name


def read_csv_rows(path: Path) -> list[dict[str, str]]:
    """Every row of a CSV file with a header, columns and values renamed to today's vocabulary
    (:func:`current_column`, :func:`current_values`).
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
    """The rows of CSV ``text`` (header renamed by :func:`current_column`, and equal to ``columns`` unless None;
    old spellings of values renamed by :func:`current_values`);
    a line with too many or too few fields is an InputError naming it, with ``hint`` appended."""
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None:
        return []
    reader.fieldnames = current_header(reader.fieldnames)
    if columns is not None and list(reader.fieldnames) != list(columns):
        raise InputError(f"{path} has columns {reader.fieldnames}, expected {list(columns)}; use another --out")
    rows = []
    for row in reader:
        if None in row or any(v is None for v in row.values()):  # too many or too few fields
            n = len([v for k, v in row.items() if k is not None and v is not None]) + len(row.get(None, []) or [])
            raise InputError(f"{path} line {reader.line_num} is damaged ({n} fields, expected "
                             f"{len(reader.fieldnames)}){hint}")
        rows.append(current_values(row))
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
    renamed = current_header(header)
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
    message naming what differs). A manifest without results (a start that failed) does not lock the folder. The
    manifest is kept (its invocations, say) whenever ``difference`` calls the two the same, even where they are not
    equal (an older folder lacking a key the caller's difference ignores); ``identity`` replaces its ``key``.
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
    differs = old is None or bool(difference(old, identity))
    if has_results and differs:
        raise InputError(refusal(difference(old, identity)))
    if differs:  # another configuration (or none): start afresh; the same one (as ``difference`` sees it) continues
        manifest = {}
    manifest[key] = identity
    return manifest


def write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    """Atomically write a manifest as indented JSON."""
    atomic_write_text(path, json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n")


