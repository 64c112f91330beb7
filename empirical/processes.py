"""Which process does what under a multi-process launch (``torchrun`` / ``accelerate launch``): every process
trains (DDP), process 0 alone evaluates and writes; with one process both helpers are no-ops."""

from __future__ import annotations


def is_main_process() -> bool:
    """False only on the processes > 0 of a multi-process launch (``main`` sets up accelerate's state first;
    called as a library, without it, there is one process)."""
    from accelerate import PartialState

    return not PartialState._shared_state or PartialState().is_main_process


def main_process_first():
    """Process 0 first, then the others (a no-op context with one process)."""
    from contextlib import nullcontext

    from accelerate import PartialState

    return PartialState().main_process_first() if PartialState._shared_state else nullcontext()


def process_count() -> int:
    """How many processes the launch started (1 without accelerate's state)."""
    from accelerate import PartialState

    return PartialState().num_processes if PartialState._shared_state else 1


def wait_for_everyone() -> None:
    """A barrier across the launch's processes (nothing with one process)."""
    from accelerate import PartialState

    if PartialState._shared_state:
        PartialState().wait_for_everyone()
