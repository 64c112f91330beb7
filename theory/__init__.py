"""theory: the mathematics of supervised graph alignment under poisoning (Ding et al., CCS 2024).

- :mod:`theory.ad` — Alignment Difficulty: exact (blocked, numpy/torch), sampled with a 95% CI, incremental,
  per-pair attribution; ``python -m theory.ad FILE``.
- :mod:`theory.graphs` — G_txt, G_img, training subgraphs and mismatched edges (networkx).
- :mod:`theory.block_model` — the well-separated block model and its closed-form AD(C_P).
- :mod:`theory.symbolic` — the same model in sympy: dAD/dC_P, sign conditions, Theorem 4.2.
- :mod:`theory.check` — ``python -m theory.check``: every check, one verdict line each.
- :mod:`theory.implosion` — the implosion measures both harnesses share (accuracy, margin, salience, meaningless).
- :mod:`theory.stats` — mean ± 95% t-interval.

File formats, input checks and the command-line contract are plumbing, not mathematics: :mod:`implosion_base`.

Public names are re-exported here and load on first use.
"""

from implosion_base.lazy import lazy_exports

# name -> module. Loaded on first access so that `python -m theory.ad` (and friends) run their module once,
# and so that importing theory does not pull in sympy or networkx.
_EXPORTS = {
    "ADResult": "theory.ad",
    "Attribution": "theory.ad",
    "IncrementalAD": "theory.ad",
    "alignment_difficulty": "theory.ad",
    "alignment_difficulty_sampled": "theory.ad",
    "pair_attribution": "theory.ad",
    "pair_scores": "theory.ad",
    "BlockModel": "theory.block_model",
    "AlignmentGraphs": "theory.graphs",
    "similarity_graph": "theory.graphs",
    "training_graphs": "theory.graphs",
    "universe_graphs": "theory.graphs",
    "implosion_measures": "theory.implosion",
    "make_reference": "theory.implosion",
    "growth_condition": "theory.symbolic",
    "prove_growth": "theory.symbolic",
}

__all__, __getattr__, __dir__ = lazy_exports("theory", _EXPORTS)
