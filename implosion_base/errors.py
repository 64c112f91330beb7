"""The toolkit's error types, apart from any command line (scikit-learn keeps its exceptions in their own module).

:class:`InputError` is what every public boundary raises on bad input: a ``ValueError`` whose message names the
argument or file and what was expected; the command lines turn it into one line and exit status 2
(:func:`implosion_base.cli.run_main`). :data:`DAMAGE` and :data:`UNLOADABLE` are what reading a damaged file or
loading an impossible model folder raises, caught at the one place that reads it.
"""

from __future__ import annotations

__all__ = ["DAMAGE", "InputError", "UNLOADABLE", "first_line"]


class InputError(ValueError):
    """Invalid user input: the message names the argument or file and what was expected."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when the message is empty): what a one-line
    error shows of a library's multi-line message."""
    return (str(exc).splitlines() or [type(exc).__name__])[0]


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
