"""Seeded weight initialisation without global state: torch initialises modules from its global random generator,
so :func:`seeded` seeds it inside a fork and restores the caller's state on exit (every other draw in the package
passes an explicit ``torch.Generator``)."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Within the block, torch's global CPU generator starts from ``seed``; afterwards it is as it was before."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
