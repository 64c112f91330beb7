r"""Exact AD and per-pair attribution, blocked, on numpy or torch (GPU).

:func:`alignment_difficulty` gives :math:`AD = \alpha D_{fea} + (1-\alpha) D_{stru}` exactly;
:func:`pair_attribution` splits it into per-pair shares
:math:`c_i = \alpha(1-s_i)/n + (1-\alpha) r_i/n^2` with :math:`\sum_i c_i = AD` (a high :math:`c_i` flags a pair
that disagrees with the rest). Both run through the one kernel (:mod:`theory.ad.kernel`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from implosion_base.validate import check_alpha, check_pairs
from theory.ad.kernel import (DEFAULT_ALPHA, DEFAULT_BLOCK, ADResult, Attribution, Backend, Precision,
                              _attribution_from_terms, _check_block, _compute_dtype, _from_terms, _gap_row_sums,
                              _joint_rows, _Ops, pair_scores)

__all__ = ["alignment_difficulty", "pair_attribution"]


def _exact_parts(
    text: Any, image: Any, alpha: float, laion_scale: bool, block: int, precision: Precision,
    backend: Backend, device: str | None,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Validated per-pair feature terms f, structure row sums r, and alpha."""
    alpha = check_alpha(alpha)
    block = _check_block(block)
    ops = _Ops(backend, device)
    t, v = check_pairs(text, image)
    d = t.shape[1]
    x, cos = _joint_rows(t, v, _compute_dtype(precision, t, v))
    f = 1.0 - pair_scores(cos, laion_scale)
    r, _ = _gap_row_sums(x, None, d, block=block, ops=ops)
    return f, r, alpha


def alignment_difficulty(
    text: Any,
    image: Any,
    alpha: float = DEFAULT_ALPHA,
    laion_scale: bool = True,
    *,
    block: int = DEFAULT_BLOCK,
    precision: Precision = "auto",
    backend: Backend = "numpy",
    device: str | None = None,
) -> ADResult:
    r"""Exact Alignment Difficulty of n text–image pairs.

    .. math:: AD = \alpha\,\frac1n\sum_i (1-s_i) + (1-\alpha)\,\frac{2}{n^2}\sum_{i<j}
              \bigl|\cos(v_i,v_j)-\cos(t_i,t_j)\bigr|

    Parameters
    ----------
    text, image : array_like, shape (n, d)
        Row i of each is pair i; any nonzero scale (rows are L2-normalised here). n ≥ 2.
    alpha : float in [0, 1]
        Weight of the feature term.
    laion_scale : bool
        Rescale pair cosines with :math:`\operatorname{clip}(4(s-0.2),0,1)` (the authors' default).
    block : int
        Tile size; memory beyond the inputs is :math:`O(nd + \text{block}^2)`.
    precision : 'auto' | 'float32' | 'float64'
        Precision of tile products ('auto': float32 iff both inputs are float16/float32). Sums across tiles
        are float64.
    backend : 'numpy' | 'torch'
        'torch' runs the tiles on ``device`` (default: CUDA if available).

    Returns
    -------
    ADResult

    Raises
    ------
    InputError
        Mismatched shapes, n < 2, NaN/inf, a zero row, alpha outside [0, 1].
    """
    f, r, alpha = _exact_parts(text, image, alpha, laion_scale, block, precision, backend, device)
    return _from_terms(f, r, alpha, laion_scale)


def pair_attribution(
    text: Any,
    image: Any,
    alpha: float = DEFAULT_ALPHA,
    laion_scale: bool = True,
    *,
    block: int = DEFAULT_BLOCK,
    precision: Precision = "auto",
    backend: Backend = "numpy",
    device: str | None = None,
) -> Attribution:
    r"""Each pair's share of AD (same computation and cost as :func:`alignment_difficulty`).

    .. math:: c_i = \frac{\alpha (1-s_i)}{n} + \frac{(1-\alpha)}{n^2}\sum_{j\ne i}
              \bigl|\cos(v_i,v_j)-\cos(t_i,t_j)\bigr|, \qquad \sum_i c_i = AD.
    """
    f, r, alpha = _exact_parts(text, image, alpha, laion_scale, block, precision, backend, device)
    return _attribution_from_terms(f, r, alpha, laion_scale)
