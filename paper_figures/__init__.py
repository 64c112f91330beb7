"""paper_figures: every figure and table of the paper (and our extensions) regenerated from results.

``python -m paper_figures list`` names them; ``python -m paper_figures all [--quick]`` builds them (PNG + PDF, tables
as Markdown + CSV) with a ``figures.md`` index. Modules: :mod:`~paper_figures.sources` (where the data come from and
what runs when they are missing), :mod:`~paper_figures.registry` (the list), one module per family of figures
(:mod:`~paper_figures.diagram`, :mod:`~paper_figures.attention_figures`, :mod:`~paper_figures.simulation_figures`,
:mod:`~paper_figures.empirical_figures`, :mod:`~paper_figures.tables`), :mod:`implosion_base.plotting` (one look, shared with the commands' own plots) and
:mod:`~paper_figures.index` (figures.md). Depends on theory, simulate and empirical; nothing depends on it.
"""

from implosion_base.lazy import lazy_exports

_EXPORTS = {"ITEMS": "paper_figures.registry", "resolve": "paper_figures.registry", "Sources": "paper_figures.sources"}

__all__, __getattr__, __dir__ = lazy_exports("paper_figures", _EXPORTS)
