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
