"""simulate: synthetic supervised graph alignment under poisoning (DESIGN.md §4).

- :mod:`simulate.concepts` — concept embeddings in a CLIP-like joint text/image space.
- :mod:`simulate.poison` — which concepts are poisoned, their targets, dirty-label / feature-shift poison pairs.
- :mod:`simulate.training_set` — the training set with incremental Gram statistics and AD.
- :mod:`simulate.align` — solvers: ridge (closed form), capacity (nuclear-norm budget, cvxpy), attention (torch).
- :mod:`simulate.metrics` — benign accuracy, attack success, meaningless rate, distortion.
- :mod:`simulate.sweep` — ``python -m simulate.sweep --concepts 1..500``.

Depends on :mod:`theory` only (AD comes from :mod:`theory.ad`). Public names load on first access.
"""

from theory.lazy import lazy_exports

_EXPORTS = {
    "ConceptConfig": "simulate.concepts",
    "make_space": "simulate.concepts",
    "PoisonConfig": "simulate.poison",
    "make_plan": "simulate.poison",
    "TrainingSet": "simulate.training_set",
    "RidgeSolver": "simulate.align",
    "CapacitySolver": "simulate.align",
    "AttentionSolver": "simulate.align",
    "evaluate": "simulate.metrics",
    "SweepConfig": "simulate.sweep",
    "run_seed": "simulate.sweep",
}

__all__, __getattr__, __dir__ = lazy_exports("simulate", _EXPORTS)
