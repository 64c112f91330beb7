"""The knobs of an audit (:class:`AuditConfig`), validated once, and the block size its memory budget allows."""

from __future__ import annotations

import math
from dataclasses import dataclass

from implosion_base.errors import InputError
from implosion_base.validate import check_alpha, check_scalar
from theory.ad import DEFAULT_ALPHA

#: Bytes per pair the audit keeps whatever the block size: pair terms, scores, ranks, flags, concepts, row sums.
PER_PAIR_BYTES = 192


@dataclass(frozen=True)
class AuditConfig:
    """Knobs of an audit (see the module docstring)."""

    alpha: float = DEFAULT_ALPHA
    laion_scale: bool = True
    exact_max: int = 20_000
    partners: int = 64
    flag_z: float = 3.5  # the robust outlier rule's cut, used when the mixture finds no second population
    memory_gib: float = 2.0
    n_concepts: int | None = None
    max_concepts: int = 40
    dim: int | None = 64
    clean_acc: float | None = None
    predict: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        check_alpha(self.alpha)
        check_scalar(self.exact_max, "--exact-max", low=2, integer=True)
        check_scalar(self.partners, "--partners", low=2, integer=True)
        check_scalar(self.flag_z, "--flag-z", low=0.0, low_open=True)
        check_scalar(self.memory_gib, "--memory (GiB)", low=0.0, low_open=True)
        check_scalar(self.max_concepts, "--max-concepts", low=2, integer=True)
        for value, name, low in ((self.n_concepts, "--n-concepts", 2), (self.dim, "--dim", 3)):
            if value is not None:
                check_scalar(value, name, low=low, integer=True)
        if self.clean_acc is not None:
            check_scalar(self.clean_acc, "--clean-acc", low=0.0, high=1.0, low_open=True, high_open=True)
        check_scalar(self.seed, "--seed", low=0, high=2**32, high_open=True, integer=True)

    def rows(self, d: int, n: int = 0, concurrent: int = 1) -> int:
        """Pairs per block: what the budget leaves after the per-pair arrays every audit keeps (about
        :data:`PER_PAIR_BYTES` per pair) must hold ``concurrent`` blocks' joint rows (float64, 2d wide) in a few
        copies (one block per worker process). A budget too small for that at 256 pairs a block is an InputError
        saying how much is needed. The numbers never depend on the block size (only the memory does)."""
        free = self.memory_gib * 2**30 - PER_PAIR_BYTES * n
        per_row = 8 * 2 * d * 6 * concurrent
        if free < 256 * per_row:
            need = (PER_PAIR_BYTES * n + 256 * per_row) / 2**30
            raise InputError(f"--memory {self.memory_gib:g} GiB cannot hold the per-pair results of {n:,} pairs and "
                             f"one block of width {d}; give at least --memory {math.ceil(need * 10) / 10:g}")
        return int(min(1 << 20, free / per_row))
