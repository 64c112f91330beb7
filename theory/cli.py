"""Command-line edges shared by every entry point of the toolkit.

The contract (DESIGN.md §7): bad input produces exactly one line on stderr that names the problem and exit
status 2; no traceback, nothing written half-way. Library code raises :class:`InputError` (a ``ValueError``) at
its public boundary; :func:`run_main` turns it into that line. ``simulate`` and ``empirical`` import these helpers
from here (``theory`` is the one package both may depend on), so the behaviour is written once.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable, NoReturn, Sequence

EXIT_USAGE = 2


class InputError(ValueError):
    """Invalid user input: the message names the argument or file and what was expected."""


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose usage errors are a single line on stderr and exit status 2."""

    def error(self, message: str) -> NoReturn:  # noqa: D401 - argparse API
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def run_main(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None, *, prog: str) -> NoReturn:
    """Run ``main(argv)`` and exit with its status; an :class:`InputError` becomes one stderr line and exit 2.

    Only :class:`InputError` is caught: any other exception is a bug and keeps its traceback.
    """
    try:
        status = main(argv)
    except InputError as exc:
        sys.stderr.write(f"{prog}: error: {exc}\n")
        sys.exit(EXIT_USAGE)
    except BrokenPipeError:  # e.g. `... | head`: not an error of ours
        sys.exit(0)
    sys.exit(status)
