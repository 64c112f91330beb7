"""implosion_base: the plumbing every package of the implosion toolkit stands on — none of it is mathematics.

- :mod:`implosion_base.errors` — :class:`InputError` (bad input, named) and what damaged files raise.
- :mod:`implosion_base.cli` — the one-line-error command-line contract (``run_main``, ``ArgumentParser``, lists).
- :mod:`implosion_base.validate` — range checks (``check_scalar``), devices, memory, unit rows.
- :mod:`implosion_base.files` — atomic writes, one writer per output, writability probes, content keys.
- :mod:`implosion_base.records` — append-only results tables, manifests, run-folder claims;
  :mod:`implosion_base.provenance` — time, command, commit and versions a run records.
- :mod:`implosion_base.pairs_file`, :mod:`implosion_base.shards` — text–image embedding pairs on disk (never
  unpickled), and many shards read block by block.
- :mod:`implosion_base.tasks` — independent tasks here, in local processes or on Dask, resumable.
- :mod:`implosion_base.captions` — which concept a caption names.
- :mod:`implosion_base.lazy` — lazy re-exports for package ``__init__`` files.

Layers (held by ``tests/test_import_graph.py``): ``implosion_base`` ← ``theory`` ← {``simulate``, ``empirical``} ←
``paper_figures``. Public names load on first use.
"""

from implosion_base.lazy import lazy_exports

_EXPORTS = {
    "InputError": "implosion_base.errors",
    "ArgumentParser": "implosion_base.cli",
    "run_main": "implosion_base.cli",
    "check_scalar": "implosion_base.validate",
    "normalised_rows": "implosion_base.validate",
    "load_pairs": "implosion_base.pairs_file",
    "save_pairs": "implosion_base.pairs_file",
    "open_shards": "implosion_base.shards",
    "ResultsTable": "implosion_base.records",
    "run_tasks": "implosion_base.tasks",
}

__all__, __getattr__, __dir__ = lazy_exports("implosion_base", _EXPORTS)
