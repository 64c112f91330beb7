"""Command-line edges shared by every entry point of the toolkit.

The contract (docs/design.md §7): bad input produces exactly one line on stderr that names the problem and exit
status 2; no traceback, nothing written half-way. Library code raises :class:`InputError` (a ``ValueError``) at
its public boundary (:mod:`implosion_base.errors`); :func:`run_main` turns it into that line. Every package's
command line imports these helpers from here, so the behaviour is written once.
"""

from __future__ import annotations

import argparse
import errno
import sys
from typing import TYPE_CHECKING, Callable, NoReturn, Sequence

from implosion_base.errors import InputError, first_line
from implosion_base.validate import check_scalar

if TYPE_CHECKING:
    from pathlib import Path

EXIT_USAGE = 2


#: The largest magnitude an integer option takes (int64): a larger one is a usage error at parse time, before it
#: reaches numpy or torch (which cannot hold it).
MAX_INT_OPTION = 2**63 - 1


def int_arg(value: str) -> int:
    """An argparse ``type`` for integer options: a whole number of at most :data:`MAX_INT_OPTION` in magnitude
    (``argparse`` gives one line naming the option otherwise)."""
    try:
        number = int(str(value).strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if abs(number) > MAX_INT_OPTION:
        raise argparse.ArgumentTypeError(f"{value} is too large (at most {MAX_INT_OPTION:,} in magnitude)")
    return number


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose usage errors are a single line on stderr and exit status 2; every parser
    has ``--debug`` (show the traceback of an unexpected error, see :func:`run_main`). Integer options
    (``type=int``) are bounded (:func:`int_arg`, registered as argparse's converter of ``int`` for the parser and
    every group of it), so no option of any size reaches the code unchecked."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.register("type", int, int_arg)  # groups share the parser's registry
        self.add_argument("--version", action="version", version=f"%(prog)s {toolkit_version()}",
                          help="print the toolkit's version and exit")
        self.add_argument("--debug", action="store_true", help="on an unexpected error, show its traceback")
        self.add_argument("--dry-run", action="store_true",
                          help="check the arguments, print what would run, and exit without computing or writing")

    def format_help(self) -> str:
        """``argparse``'s help, except that every option with a default states it ("(default: X)") unless its help
        already says "default" — options added through argument groups included."""
        for action in self._actions:
            text = action.help
            if (text is argparse.SUPPRESS or any(action.default is x for x in (None, False, argparse.SUPPRESS))
                    or isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction,
                                           argparse._HelpAction)) or "default" in (text or "")):
                continue
            action.help = f"{text} (default: %(default)s)" if text else "default: %(default)s"
        return super().format_help()

    def error(self, message: str) -> NoReturn:  # noqa: D401 - argparse API
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")

    def parse_known_args(self, args=None, namespace=None):  # noqa: ANN001 - argparse API
        """argparse's, after :func:`underscore_spellings`: ``--learning_rate`` is ``--learning-rate`` (the
        spelling of diffusers' and transformers' training scripts) for every option of every command."""
        args = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(underscore_spellings(args, self._option_string_actions), namespace)


def underscore_spellings(args: Sequence[str], known: "dict[str, object] | Sequence[str]") -> list[str]:
    """``args`` with each ``--a_b`` (or ``--a_b=value``) that is not an option of its own but whose hyphenated
    spelling ``--a-b`` is, replaced by that spelling; everything after ``--`` is left alone."""
    out: list[str] = []
    for i, arg in enumerate(args):
        if arg == "--":
            return out + list(args[i:])
        name, eq, value = arg.partition("=")
        if name.startswith("--") and "_" in name and name not in known:
            hyphen = "--" + name[2:].replace("_", "-")
            if hyphen in known:
                arg = hyphen + eq + value
        out.append(arg)
    return out


def toolkit_version() -> str:
    """The installed toolkit's version (``implosion-toolkit`` in pyproject.toml), or ``unknown`` when run from a
    checkout that was never installed."""
    from importlib import metadata

    try:
        return metadata.version("implosion-toolkit")
    except metadata.PackageNotFoundError:
        return "unknown"


def dry_run(args: argparse.Namespace, prog: str, plan: dict) -> bool:
    """With ``--dry-run``: print ``prog``'s plan (one ``key: value`` line each) and return True, so the caller
    returns before any work or write; without it, return False. Called once the arguments are validated."""
    if not getattr(args, "dry_run", False):
        return False
    print(f"{prog}: dry run, nothing computed or written")
    for key, value in plan.items():
        print(f"  {key}: {value}")
    return True


def run_main(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None, *, prog: str) -> NoReturn:
    """Run ``main(argv)`` and exit with its status. An :class:`InputError` (bad input) becomes one stderr line and
    exit 2; a ``MemoryError`` one line and exit 1; any other exception (a bug, or a failure we did not foresee) one
    line naming it and exit 1 — with its full traceback when ``--debug`` is given.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    safe_console()
    try:
        status = main(argv)
    except InputError as exc:
        sys.stderr.write(f"{prog}: error: {exc}\n")
        sys.exit(EXIT_USAGE)
    except BrokenPipeError:  # e.g. `... | head`: not an error of ours
        sys.exit(0)
    except KeyboardInterrupt:
        sys.stderr.write(f"\n{prog}: interrupted; finished results are kept (long jobs resume when rerun)\n")
        sys.exit(130)
    except RecursionError:
        sys.stderr.write(f"{prog}: error: an input is nested too deeply to read; finished results are kept\n")
        sys.exit(EXIT_USAGE)
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
            _unexpected(exc, args, prog)
        where = f" writing {exc.filename}" if exc.filename else ""
        sys.stderr.write(f"{prog}: error: {exc.strerror or exc}{where}; finished results are kept (free space or "
                         "use another --out, then rerun to resume)\n")
        sys.exit(1)
    except MemoryError:
        sys.stderr.write(f"{prog}: error: out of memory; finished results are kept (use smaller settings)\n")
        sys.exit(1)
    except Exception as exc:  # noqa: BLE001 - the one error boundary of every CLI
        _unexpected(exc, args, prog)
    sys.exit(status)


def _unexpected(exc: BaseException, args: Sequence[str], prog: str) -> NoReturn:
    """An error we did not foresee: one line naming it and exit 1, or its traceback with ``--debug``."""
    if "--debug" in args:
        raise exc
    sys.stderr.write(f"{prog}: error: unexpected {type(exc).__name__}: {first_line(exc) if str(exc) else ''} "
                     "(rerun with --debug for the traceback)\n")
    sys.exit(1)


def safe_console() -> None:
    """Make the console unable to fail a run: text that the console's encoding cannot show (``LC_ALL=C``,
    ``PYTHONIOENCODING=ascii``) is printed with replacement characters instead of raising; every warning is one
    line (``file:line: Category: message``, never the source line it was raised from). Files are written as UTF-8
    by their writers, whatever the console."""
    import warnings

    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            try:
                reconfigure(errors="replace")
            except (ValueError, OSError):  # a closed or detached stream: nothing to protect
                pass
    warnings.formatwarning = _one_line_warning


def _one_line_warning(message, category, filename, lineno, line=None) -> str:  # noqa: ANN001 - warnings API
    text = " ".join(str(message).split())
    return f"warning: {text}\n"


def path_arg(value: str) -> "Path":
    """An argparse ``type`` for paths: an empty string is a usage error (``Path("")`` would silently be the
    current directory)."""
    from pathlib import Path

    if not str(value).strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return Path(value)


#: The most values a list option (:func:`parse_int_list`) may expand to.
MAX_LIST = 1_000_000


def parse_int_list(spec: str, *, name: str = "value") -> list[int]:
    """Parse ``"1..500"``, ``"0..500:25"``, ``"0,10,50"`` or a comma list of those into sorted unique ints ≥ 0.

    ``A..B`` is inclusive, ``A..B:S`` steps by S. Raises :class:`InputError` naming the offending part for an
    empty spec, non-numbers, negatives, a reversed range, a step < 1, or more than :data:`MAX_LIST` values (counted
    before any range is expanded, so a huge range never fills the memory).
    """
    if spec is None or not str(spec).strip():
        raise InputError(f"{name} is empty; use e.g. 1..500, 0..500:25 or 0,10,50")
    values: set[int] = set()
    for part in str(spec).split(","):
        part = part.strip()
        if not part:
            raise InputError(f"{name} {spec!r} has an empty item")
        step = 1
        body = part
        if ":" in part:
            body, _, step_text = part.partition(":")
            step = int(check_scalar(_parse_nonneg(step_text, name, part), f"{name} {part!r}: the step", low=1,
                                    integer=True))
            if ".." not in body:
                raise InputError(f"{name} step needs a range A..B:S, got {part!r}")
        if ".." in body:
            lo_text, _, hi_text = body.partition("..")
            lo, hi = _parse_nonneg(lo_text, name, part), _parse_nonneg(hi_text, name, part)
            if lo > hi:
                raise InputError(f"{name} range {part!r} is reversed (start > end)")
            if (hi - lo) // step + 1 + len(values) > MAX_LIST:
                raise InputError(f"{name} {spec!r} asks for more than {MAX_LIST:,} values")
            values.update(range(lo, hi + 1, step))
        else:
            values.add(_parse_nonneg(body, name, part))
    return sorted(values)


def parse_seeds(spec: str, *, name: str = "--seeds", was_count: bool = False) -> list[int]:
    """Seeds from a list spec (:func:`parse_int_list`: ``0..2``, ``0,1,2``, ``5``), each below 2**32. Where the
    option once took a count (``was_count``), a lone number N > 1 gets a one-line note on stderr: it is seed N
    alone now, and ``0..N-1`` asks for N seeds."""
    seeds = parse_int_list(spec, name=name)
    if seeds[-1] >= 2**32:
        raise InputError(f"{name} values must be below 2**32, got {seeds[-1]}")
    text = str(spec).strip()
    if was_count and text.isdigit() and int(text) > 1:
        sys.stderr.write(f"note: {name} {text} runs seed {text} alone ({name} is a list: {name} 0..{int(text) - 1} "
                         f"for {text} seeds)\n")
    return seeds


def _parse_nonneg(text: str, name: str, part: str) -> int:
    text = text.strip()
    try:
        value = int(text)
    except ValueError:
        raise InputError(f"{name} {part!r}: {text!r} is not a whole number") from None
    if value < 0:
        raise InputError(f"{name} {part!r}: {value} is negative")
    return value
