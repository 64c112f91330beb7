"""simulate: synthetic supervised graph alignment under poisoning (docs/design.md §5).

- :mod:`simulate.concepts` — concept embeddings in a CLIP-like joint text/image space.
- :mod:`simulate.poison` — which concepts are poisoned, their targets, dirty-label / feature-shift poison pairs.
- :mod:`simulate.training_set` — the training set with incremental Gram statistics and AD.
- :mod:`simulate.align` — solvers: ridge (closed form), capacity (nuclear-norm budget, cvxpy), attention (torch).
- :mod:`simulate.metrics` — unpoisoned accuracy, attack success, meaningless rate, distortion.
- :mod:`simulate.engine` — one seed's sweep over C_P (``run_seed``), its configuration, summaries, local workers;
- :mod:`simulate.sweep` — ``python -m simulate.sweep --concepts 1..500`` (the command line over the engine).
- :mod:`simulate.experiments` — ``python -m simulate.experiments``: AD regimes, one concept, implosion, the phase
  diagram (:mod:`simulate.phase`), AD at fixed volume (:mod:`simulate.ad_volume`).
- :mod:`simulate.calibrate`, :mod:`simulate.predict` — ``python -m simulate.predict``: the simulator calibrated to
  a real model's clean geometry and accuracy, and its prediction for a real setting.

Depends on :mod:`theory` and :mod:`implosion_base` only (AD comes from :mod:`theory.ad`). Public names load on first access.
"""

from implosion_base.lazy import lazy_exports

_EXPORTS = {
    "ConceptConfig": "simulate.concepts",
    "make_space": "simulate.concepts",
    "PoisonConfig": "simulate.poison",
    "plan_for_space": "simulate.poison",
    "TrainingSet": "simulate.training_set",
    "RidgeSolver": "simulate.align",
    "CapacitySolver": "simulate.align",
    "AttentionSolver": "simulate.align",
    "evaluate": "simulate.metrics",
    "SweepConfig": "simulate.engine",
    "run_seed": "simulate.engine",
    "PhaseGrid": "simulate.phase",
    "fit_geometry": "simulate.calibrate",
    "measure_geometry": "simulate.calibrate",
}

__all__, __getattr__, __dir__ = lazy_exports("simulate", _EXPORTS)
