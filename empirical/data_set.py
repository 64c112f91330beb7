"""The identity of the data set a run *used*: what every results row, invocation and folder carries.

A data set is (source, concept list): for the emoji renders the source is the fonts they were drawn with
(``emoji-openmoji+noto``: which fonts decide which concepts render and how alike they look), for a user's data its
content key (:func:`empirical.folder_data.folder_key`, :func:`empirical.hub_data.dataset_key`). Its identity:

- ``label`` — ``<source>-<K>`` (``emoji-openmoji+noto-150``, ``user-aa6b…-s32-h8-…-12``): what tables and figures
  print;
- ``concepts_sha256`` — the first 16 hex digits of SHA-256 of the concept names in order, one per line;
- ``id`` — the first 12 hex digits of SHA-256 of ``label`` and ``concepts_sha256``: two runs share it exactly
  when they drew the same concepts from the same source (what ``empirical.report`` and ``paper_figures`` group
  by);
- ``font_files`` — each font file's SHA-256 prefix (recorded for emoji runs since the fonts became a setting; two
  installs of one package version can differ). Not part of ``id`` (older folders did not record it); a folder
  whose manifest recorded other font files is refused all the same (:func:`check_same_data_set`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from implosion_base.errors import InputError

#: The columns a results row carries for its data set (:meth:`DataSetIdentity.columns`).
DATA_SET_COLUMNS: tuple[str, ...] = ("data_set", "data_set_id")
#: The value of both columns for a row whose folder never recorded its data set (none under docs/data).
UNRECORDED = "unrecorded"


def concepts_hash(names: Sequence[str]) -> str:
    """First 16 hex digits of SHA-256 of the concept names in order, one per line."""
    return hashlib.sha256("\n".join(names).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class DataSetIdentity:
    """``label``, ``id`` and the hashes of the module docstring."""

    label: str
    id: str
    concepts_sha256: str
    font_files: dict[str, str] = field(default_factory=dict)

    def columns(self) -> dict[str, str]:
        """The results row's data-set cells."""
        return {"data_set": self.label, "data_set_id": self.id}

    def record(self) -> dict:
        """What the manifest records in its assets and its setting (``setting["data_set"]``, written once the
        data are read; each invocation records ``data_set`` and ``data_set_id``)."""
        out = {"data_set": self.label, "data_set_id": self.id, "concepts_sha256": self.concepts_sha256}
        if self.font_files:
            out["font_files"] = dict(self.font_files)
        return out


def identity(names: Sequence[str], fonts: Sequence[str], train_data: str | None = None,
             font_files: dict[str, str] | None = None) -> DataSetIdentity:
    """The identity of ``names`` drawn from ``fonts`` (emoji) or from the user's data with content key
    ``train_data``."""
    if len(names) < 1:
        raise InputError("a data set needs at least one concept")
    source = train_data if train_data else "emoji-" + "+".join(fonts)
    label = f"{source}-{len(names)}"
    concepts = concepts_hash(names)
    ident = hashlib.sha256(json.dumps([label, concepts]).encode()).hexdigest()[:12]
    return DataSetIdentity(label, ident, concepts, dict(font_files or {}))


def of_manifest(manifest: dict) -> DataSetIdentity | None:
    """The identity a run folder's manifest records (its setting's user-data key, its assets' fonts and concept
    list), None when it lacks them (a start that failed before its data were read)."""
    assets, setting = manifest.get("assets"), manifest.get("setting")
    if not isinstance(assets, dict) or not isinstance(setting, dict):
        return None
    names, fonts = assets.get("concepts"), assets.get("fonts")
    if not isinstance(names, list) or not names or not isinstance(fonts, list) or not fonts:
        return None
    train_data = setting.get("train_data")
    files = assets.get("font_files") if isinstance(assets.get("font_files"), dict) else None
    return identity([str(n) for n in names], [str(f) for f in fonts], train_data if isinstance(train_data, str)
                    else None, files)


def row_fill(manifest: dict):
    """A ``fill`` for :class:`implosion_base.records.ResultsTable`: an old row's data-set cells from the folder's
    manifest (:data:`UNRECORDED` when the manifest does not say)."""
    found = of_manifest(manifest)
    cells = found.columns() if found is not None else dict.fromkeys(DATA_SET_COLUMNS, UNRECORDED)
    return lambda row: dict(cells)


def check_same_data_set(out: Path, rows: Sequence[dict], old_manifest: dict, now: DataSetIdentity) -> None:
    """Refuse (InputError naming both) to add results of the data set ``now`` to a folder whose rows or manifest
    say another one: another concept list or source (``data_set_id``), or other font files than recorded."""
    ids = {r.get("data_set_id") for r in rows} - {UNRECORDED, None, ""}
    before = of_manifest(old_manifest)
    if ids - {now.id}:
        label = before.label if before is not None and before.id in ids else ", ".join(sorted(ids))
        raise InputError(f"{out} holds results of another data set ({label} -> {now.label}, concepts "
                         f"{before.concepts_sha256 if before else '?'} -> {now.concepts_sha256}); choose another --out")
    if rows and before is not None and before.font_files and now.font_files:
        for name in sorted(set(before.font_files) & set(now.font_files)):
            if before.font_files[name] != now.font_files[name]:
                raise InputError(f"{out} holds results rendered with another {name} font file "
                                 f"({before.font_files[name]} -> {now.font_files[name]}); another data set, "
                                 "choose another --out")
