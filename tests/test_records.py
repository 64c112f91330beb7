"""Results tables: partial last lines are repaired, headers are checked, old tables are upgraded losslessly."""

from __future__ import annotations

from pathlib import Path

import pytest

from implosion_base.errors import InputError
from implosion_base.records import ResultsTable, read_table


def test_partial_last_line_is_dropped_and_the_file_cut(tmp_path: Path):
    path = tmp_path / "t.csv"
    path.write_text("a,b\n1,2\n3,")
    assert read_table(path, ["a", "b"]) == [{"a": "1", "b": "2"}]
    assert path.read_text() == "a,b\n1,2\n"
    with pytest.raises(InputError, match="has columns"):
        read_table(path, ["a", "c"])


def test_old_table_gains_new_columns_with_filled_values(tmp_path: Path):
    path = tmp_path / "t.csv"
    path.write_text("a,kind\n1,poisoned\n2,control\n")
    t = ResultsTable(path, ["a", "kind", "type"], fill=lambda r: {"type": "dirty" if r["kind"] == "poisoned"
                                                                  else "none"})
    assert t.rows == [{"a": "1", "kind": "poisoned", "type": "dirty"}, {"a": "2", "kind": "control", "type": "none"}]
    t.append([{"a": 3, "kind": "poisoned", "type": "nightshade"}])
    assert path.read_text() == "a,kind,type\n1,poisoned,dirty\n2,control,none\n3,poisoned,nightshade\n"
    # a column the new header does not know is not silently dropped
    path.write_text("a,zzz\n1,2\n")
    with pytest.raises(InputError, match="has columns"):
        ResultsTable(path, ["a", "kind"], fill=lambda r: {"kind": "x"})
    assert path.read_text() == "a,zzz\n1,2\n"


def test_read_only_table_is_refused_before_any_work(tmp_path, monkeypatch):
    """A results.csv we may not write is refused when the table is opened, not after a point was computed (the
    permission is simulated: this suite may run as root, who can write anything)."""
    import pytest

    import implosion_base.records as records
    from implosion_base.errors import InputError

    path = tmp_path / "results.csv"
    path.write_text("a,b\n1,2\n")
    monkeypatch.setattr(records.os, "access", lambda p, mode: False)
    with pytest.raises(InputError, match="not writable"):
        records.ResultsTable(path, ["a", "b"])


def test_content_key_sees_every_byte_of_every_file(tmp_path: Path):
    from implosion_base.files import content_key

    a = tmp_path / "a"
    (a / "unet").mkdir(parents=True)
    (a / "unet" / "w.safetensors").write_bytes(b"\x00" * 1000 + b"\x01")
    (a / "config.json").write_text("{}")
    (a / ".cache").mkdir()
    (a / ".cache" / "x").write_text("ignored")
    key = content_key(a)
    assert key == content_key(a, chunk=7)  # chunking does not matter
    (a / ".cache" / "x").write_text("still ignored")
    assert content_key(a) == key
    (a / "unet" / "w.safetensors").write_bytes(b"\x00" * 1000 + b"\x02")  # same size, one byte changed
    assert content_key(a) != key
    (a / "unet" / "w.safetensors").write_bytes(b"\x00" * 1000 + b"\x01")
    assert content_key(a) == key
    (a / "unet" / "w.safetensors").rename(a / "unet" / "v.safetensors")  # same bytes, another name
    assert content_key(a) != key


def test_experiment_tables_are_replaced_atomically_and_said_so(tmp_path: Path, capsys):
    """simulate.experiments writes its CSVs with one rename and says when it replaces an earlier table."""
    from simulate.experiments import _write_csv

    path = tmp_path / "t.csv"
    _write_csv(path, [{"a": 1}])
    assert capsys.readouterr().err == ""
    _write_csv(path, [{"a": 2}])
    assert f"replacing {path}" in capsys.readouterr().err
    assert path.read_text() == "a\n2\n" and [p.name for p in tmp_path.iterdir()] == ["t.csv"]


def test_old_column_spellings_are_read_and_an_old_table_resumes_under_the_new_name(tmp_path: Path):
    """``benign_acc`` (the simulator's old name of unpoisoned accuracy) reads as ``unpoisoned_acc`` everywhere: in
    a generic read, in a results table that resumes (its header is renamed, the rows kept byte for byte) and with
    a suffix (``benign_acc_ci95``)."""
    from implosion_base.records import current_column, read_csv_rows

    assert current_column("benign_acc") == "unpoisoned_acc"
    assert current_column("benign_acc_ci95") == "unpoisoned_acc_ci95"
    assert current_column("benign") == "benign" and current_column("unpoisoned_acc") == "unpoisoned_acc"
    path = tmp_path / "results.csv"
    path.write_text("c_p,seed,benign_acc\n0,0,0.9\n5,0,0.7\n")
    assert read_csv_rows(path) == [{"c_p": "0", "seed": "0", "unpoisoned_acc": "0.9"},
                                   {"c_p": "5", "seed": "0", "unpoisoned_acc": "0.7"}]
    assert read_table(path, ["c_p", "seed", "unpoisoned_acc"])[1]["unpoisoned_acc"] == "0.7"
    t = ResultsTable(path, ["c_p", "seed", "unpoisoned_acc"])
    t.append([{"c_p": 10, "seed": 0, "unpoisoned_acc": 0.5}])
    assert path.read_text() == "c_p,seed,unpoisoned_acc\n0,0,0.9\n5,0,0.7\n10,0,0.5\n"


def test_a_folder_is_claimed_by_what_its_difference_calls_the_same_and_keeps_its_history(tmp_path: Path):
    """claim_run_folder keeps an older manifest (its invocations) whose identity lacks a key the caller's difference
    ignores, refuses one that differs where it looks, and starts afresh on a failed start of another identity."""
    import json

    from implosion_base.records import claim_run_folder, key_difference

    def ignoring_new_key(old: dict, new: dict) -> str:
        return key_difference({k: v for k, v in old.items() if k != "added"},
                              {k: v for k, v in new.items() if k != "added"})

    def claim(identity: dict, has_results: bool) -> dict:
        return claim_run_folder(tmp_path, "setting", identity, has_results=has_results, difference=ignoring_new_key,
                                refusal=lambda d: f"another setting ({d})")

    (tmp_path / "manifest.json").write_text(json.dumps({"setting": {"lr": 1}, "invocations": ["first"]}))
    got = claim({"lr": 1, "added": "x"}, True)
    assert got == {"setting": {"lr": 1, "added": "x"}, "invocations": ["first"]}
    with pytest.raises(InputError, match=r"another setting \(lr\)"):
        claim({"lr": 2}, True)
    assert claim({"lr": 2}, False) == {"setting": {"lr": 2}}  # no results: a failed start does not lock the folder
