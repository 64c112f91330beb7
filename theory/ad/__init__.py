r"""Alignment Difficulty (AD) of a set of text–image training pairs.

Definition (Ding et al., "Understanding Implosion in Text-to-Image Generative Models", CCS 2024; the exact form
of the authors' released code, docs/design.md §3). For n pairs :math:`(t_i, v_i)`, L2-normalised, in one joint space:

.. math::

    s_i &= \cos(t_i, v_i), \qquad \text{LAION rescaling (default): } s_i \leftarrow \operatorname{clip}(4(s_i-0.2), 0, 1)

    D_{fea} &= \frac1n \sum_i (1 - s_i) \in [0, 1]\ \text{(rescaled)}

    D_{stru} &= \frac{2}{n^2} \sum_{i<j} \bigl|\cos(v_i, v_j) - \cos(t_i, t_j)\bigr| \in [0, 2)

    AD &= \alpha D_{fea} + (1-\alpha) D_{stru}, \qquad \alpha = 0.8.

Note the :math:`n^2` (not :math:`n(n-1)`) in :math:`D_{stru}`: it is what the authors' code computes.

Everything here goes through one kernel, :func:`_gap_row_sums`, which returns for each pair i the row sum
:math:`r_i = \sum_{j \ne i} |\cos(v_i,v_j) - \cos(t_i,t_j)|`, so that :math:`D_{stru} = \sum_i r_i / n^2`. The
kernel works on blocks of rows: each row is stored once as :math:`x_i = [\hat v_i, \hat t_i]` (2d numbers) and
one GEMM per tile, :math:`x_I [\hat v_J, -\hat t_J]^\top`, gives :math:`\cos(v_i,v_j)-\cos(t_i,t_j)` directly.
Diagonal blocks are halved recursively, so each unordered pair is computed about once (:math:`\approx n^2 d`
multiply-adds). Memory is :math:`O(nd + b^2)` for block size b; the n×n matrix never exists.

Precision: tile products are computed in the inputs' floating precision (float32 inputs → float32 GEMM, as the
authors' float32 reference does; float64 inputs → float64); sums within a tile (≤ block terms) run in the
tile's precision and every sum across tiles in float64. Pass
``precision="float64"`` to force float64 products. Agreement with a float64 brute force is ~1e-15 for float64
inputs and ~1e-7 for float32 inputs (the authors' target is 1e-5).

Entry points (POT-style functional API; one module each, re-exported here):

- :func:`alignment_difficulty` (:mod:`~theory.ad.exact`) – exact, blocked, numpy or torch (GPU) backend → :class:`ADResult`.
- :func:`alignment_difficulty_sampled` (:mod:`~theory.ad.sampled`) – uniform random pairs i<j, unbiased for :math:`D_{stru}`, 95% CI;
  :math:`D_{fea}` stays exact (it is O(nd)). For n where :math:`n^2` is out of reach.
- :class:`IncrementalAD` (:mod:`~theory.ad.incremental`) – add (and remove) pairs at :math:`O(m(n+m)d)` per batch of m; equal to the exact value.
- :func:`pair_attribution` (:mod:`~theory.ad.exact`) – each pair's share of AD,
  :math:`c_i = \alpha(1-s_i)/n + (1-\alpha) r_i/n^2` with :math:`\sum_i c_i = AD`; high :math:`c_i` flags pairs
  that disagree with the rest (a poison detector to evaluate).
- :mod:`~theory.ad.streamed` – the same over a row store larger than memory (the dataset audit's passes).
- ``python -m theory.ad FILE`` – the command line (:mod:`~theory.ad.command`).

The kernel and the pieces of the definition are :mod:`~theory.ad.kernel`.
"""

from theory.ad.kernel import DEFAULT_ALPHA, DEFAULT_BLOCK, ADResult, Attribution, combine, pair_scores, ranking
from theory.ad.exact import alignment_difficulty, pair_attribution
from theory.ad.sampled import alignment_difficulty_sampled, sampled_result
from theory.ad.streamed import (PairTerms, RowSource, StructureBlock, StructureSample, combine_structure,
                                pair_attribution_streamed, pair_terms_streamed, partner_group, structure_block,
                                structure_blocks, structure_sampled)
from theory.ad.incremental import IncrementalAD
from theory.ad.command import cli, main, score_rows

__all__ = [
    "ADResult",
    "Attribution",
    "DEFAULT_ALPHA",
    "DEFAULT_BLOCK",
    "IncrementalAD",
    "PairTerms",
    "RowSource",
    "StructureBlock",
    "StructureSample",
    "alignment_difficulty",
    "alignment_difficulty_sampled",
    "cli",
    "combine",
    "combine_structure",
    "main",
    "pair_attribution",
    "pair_attribution_streamed",
    "pair_scores",
    "pair_terms_streamed",
    "partner_group",
    "ranking",
    "sampled_result",
    "score_rows",
    "structure_block",
    "structure_blocks",
    "structure_sampled",
]
