"""The C_P range grammar shared by the command lines."""

from __future__ import annotations

import pytest

from implosion_base.errors import InputError
from implosion_base.cli import parse_int_list


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("1..5", [1, 2, 3, 4, 5]),
        ("0..500:250", [0, 250, 500]),
        ("0..10:4", [0, 4, 8]),
        ("0,10,50", [0, 10, 50]),
        ("50,0,10,10", [0, 10, 50]),
        ("3", [3]),
        (" 0..4:2 , 7 ", [0, 2, 4, 7]),
        ("5..5", [5]),
    ],
)
def test_valid_specs(spec, expected):
    assert parse_int_list(spec) == expected


def test_default_main_job_range_has_500_points():
    assert parse_int_list("1..500") == list(range(1, 501))


@pytest.mark.parametrize(
    "spec, message",
    [
        ("", "empty"),
        ("   ", "empty"),
        ("500..1", "reversed"),
        ("0..10:0", r"the step must be in \[1, inf\], got 0"),
        ("-5..10", "is negative"),
        ("-3", "negative"),
        ("a..b", "not a whole number"),
        ("1.5", "not a whole number"),
        ("1,,2", "empty item"),
        ("10:2", "needs a range"),
    ],
)
def test_bad_specs(spec, message):
    with pytest.raises(InputError, match=message):
        parse_int_list(spec, name="--concepts")


def test_unexpected_errors_are_one_line_unless_debug(capsys):
    """The error boundary: a bug or an unforeseen failure is one line and exit 1; --debug shows the traceback."""
    import pytest

    from implosion_base.cli import run_main

    def broken(argv):
        raise KeyError("boom")

    with pytest.raises(SystemExit) as exit_info:
        run_main(broken, [], prog="tool")
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err.strip() == "tool: error: unexpected KeyError: 'boom' (rerun with --debug for the traceback)"
    with pytest.raises(KeyError):
        run_main(broken, ["--debug"], prog="tool")

    def hungry(argv):
        raise MemoryError

    with pytest.raises(SystemExit) as exit_info:
        run_main(hungry, [], prog="tool")
    assert exit_info.value.code == 1 and "out of memory" in capsys.readouterr().err


def test_huge_ranges_are_refused_before_they_are_expanded():
    """A range of 10⁹ values is refused at once (counted, not built: building it would fill the memory)."""
    from implosion_base.cli import MAX_LIST

    with pytest.raises(InputError, match="more than 1,000,000 values"):
        parse_int_list("0..1000000000", name="--concepts")
    with pytest.raises(InputError, match="more than"):
        parse_int_list(f"0..{MAX_LIST // 2},{MAX_LIST}..{2 * MAX_LIST}")
    assert len(parse_int_list(f"1..{MAX_LIST}")) == MAX_LIST
