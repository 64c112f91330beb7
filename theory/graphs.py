r"""G_txt and G_img: the two similarity graphs of supervised graph alignment (the paper's §4 and Figure 5).

Vertices are embeddings; an edge joins two vertices whose cosine similarity is high — either above a
``threshold`` or among each other's ``k`` nearest neighbours (union of the two directions). Edge attribute
``weight`` is the cosine.

- :func:`similarity_graph` – one such graph over a set of embeddings.
- :func:`universe_graphs` – :math:`\mathcal G_{txt}` over all text vertices, :math:`\mathcal G_{img}` over all
  image vertices, and the *training subgraphs* :math:`\mathcal G^{\mathcal T}_{txt}`,
  :math:`\mathcal G^{\mathcal T}_{img}` induced by the vertices that the training pairs
  :math:`\mathcal T = \{(a_k, b_k)\}` touch.
- :func:`training_graphs` – the graphs over the n training pairs themselves (vertex k is :math:`t_k` in one and
  :math:`v_k` in the other; the supervision maps k to k) and the **mismatched edges**: pairs (k, l) joined in
  one graph and not in the other. A training set is easy to align when the two graphs agree edge for edge;
  every mismatched edge is a constraint the alignment cannot satisfy. :math:`D_{stru}` in :mod:`theory.ad` is the
  weighted, threshold-free version of this count:
  :math:`D_{stru} = \frac{2}{n^2}\sum_{k<l} |w^{img}_{kl} - w^{txt}_{kl}|` on the complete graphs.

networkx graphs hold O(n²) edges at worst: these functions are for analysis and figures at n up to a few
thousand; AD itself never builds a graph.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import networkx as nx
import numpy as np

from implosion_base.errors import InputError
from implosion_base.validate import check_pairs, normalised_rows

__all__ = ["AlignmentGraphs", "UniverseGraphs", "similarity_graph", "training_graphs", "universe_graphs"]

Edge = tuple[int, int]


def _edge_mask(unit: np.ndarray, threshold: float | None, k: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Cosine matrix of unit rows and the symmetric boolean adjacency (no self loops)."""
    if (threshold is None) == (k is None):
        raise InputError("give exactly one of threshold (cosine cut-off) or k (nearest neighbours)")
    cos = unit @ unit.T
    n = cos.shape[0]
    if threshold is not None:
        threshold = float(threshold)
        if not -1.0 <= threshold <= 1.0:
            raise InputError(f"threshold must be a cosine in [-1, 1], got {threshold}")
        adj = cos >= threshold
    else:
        if not isinstance(k, (int, np.integer)) or not 1 <= k <= n - 1:
            raise InputError(f"k must be an integer in [1, n-1] = [1, {n - 1}], got {k!r}")
        masked = cos.copy()
        np.fill_diagonal(masked, -np.inf)
        # stable order: ties broken by the lower index
        nearest = np.argsort(-masked, axis=1, kind="stable")[:, :k]
        adj = np.zeros((n, n), dtype=bool)
        adj[np.repeat(np.arange(n), k), nearest.ravel()] = True
        adj |= adj.T
    np.fill_diagonal(adj, False)
    return cos, adj


def _graph(cos: np.ndarray, adj: np.ndarray, labels: Sequence[Any] | None, kind: str) -> nx.Graph:
    g = nx.Graph(kind=kind)
    n = cos.shape[0]
    if labels is not None and len(labels) != n:
        raise InputError(f"labels must have one entry per vertex ({n}), got {len(labels)}")
    for i in range(n):
        if labels is None:
            g.add_node(i)
        else:
            g.add_node(i, label=labels[i])
    rows, cols = np.nonzero(np.triu(adj, 1))
    g.add_weighted_edges_from((int(i), int(j), float(cos[i, j])) for i, j in zip(rows, cols))
    return g


def similarity_graph(
    embeddings: Any,
    *,
    threshold: float | None = None,
    k: int | None = None,
    labels: Sequence[Any] | None = None,
    kind: str = "",
) -> nx.Graph:
    """Graph over the rows of ``embeddings``: vertex i per row, edge (i, j) when cos ≥ ``threshold`` or when j is
    among i's ``k`` most similar rows or vice versa. Edge attribute ``weight`` = cosine; node attribute ``label``
    when ``labels`` is given."""
    unit = normalised_rows(embeddings, kind or "embeddings")
    cos, adj = _edge_mask(unit, threshold, k)
    return _graph(cos, adj, labels, kind)


@dataclass(frozen=True)
class AlignmentGraphs:
    """The text and image graphs over n training pairs and how their edges compare.

    ``matched`` edges are in both graphs, ``text_only`` / ``image_only`` in one of them; edges are (k, l), k < l,
    sorted.
    """

    g_txt: nx.Graph
    g_img: nx.Graph
    matched: list[Edge]
    text_only: list[Edge]
    image_only: list[Edge]

    @property
    def mismatched(self) -> list[Edge]:
        """Edges present in exactly one of the two graphs."""
        return sorted(self.text_only + self.image_only)

    @property
    def mismatch_rate(self) -> float:
        """|mismatched| / |edges in either graph| (0 when both graphs are empty)."""
        union = len(self.matched) + len(self.text_only) + len(self.image_only)
        return (len(self.text_only) + len(self.image_only)) / union if union else 0.0


def training_graphs(
    text: Any,
    image: Any,
    *,
    threshold: float | None = None,
    k: int | None = None,
    labels: Sequence[Any] | None = None,
) -> AlignmentGraphs:
    """:math:`\\mathcal G^{\\mathcal T}_{txt}` and :math:`\\mathcal G^{\\mathcal T}_{img}` over n training pairs,
    with the same edge rule in both, and their matched and mismatched edges."""
    t, v = check_pairs(text, image)
    g_txt = similarity_graph(t, threshold=threshold, k=k, labels=labels, kind="text")
    g_img = similarity_graph(v, threshold=threshold, k=k, labels=labels, kind="image")
    et = {tuple(sorted(e)) for e in g_txt.edges()}
    ei = {tuple(sorted(e)) for e in g_img.edges()}
    return AlignmentGraphs(g_txt, g_img, sorted(et & ei), sorted(et - ei), sorted(ei - et))


@dataclass(frozen=True)
class UniverseGraphs:
    """Full graphs over all text and image vertices, the training subgraphs, and the pairs graph comparison."""

    g_txt: nx.Graph
    g_img: nx.Graph
    g_txt_train: nx.Graph
    g_img_train: nx.Graph
    pairs: list[tuple[int, int]]
    alignment: AlignmentGraphs


def universe_graphs(
    text_vertices: Any,
    image_vertices: Any,
    pairs: Sequence[tuple[int, int]],
    *,
    threshold: float | None = None,
    k: int | None = None,
    text_labels: Sequence[Any] | None = None,
    image_labels: Sequence[Any] | None = None,
) -> UniverseGraphs:
    """:math:`\\mathcal G_{txt}`, :math:`\\mathcal G_{img}` over every vertex and the subgraphs the training pairs
    :math:`(a_k, b_k)` (text vertex, image vertex) induce; ``alignment`` compares the graphs over the pairs.

    With ``k`` the nearest neighbours of the pairs graph are taken among the training pairs (k is capped at
    n-1 there)."""
    tv = normalised_rows(text_vertices, "text_vertices")
    iv = normalised_rows(image_vertices, "image_vertices")
    if tv.shape[1] != iv.shape[1]:
        raise InputError(f"text and image vertices must share one space, got d={tv.shape[1]} and d={iv.shape[1]}")
    try:
        pr = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    except (TypeError, ValueError):
        raise InputError("pairs must be a sequence of (text vertex, image vertex) integer pairs") from None
    if pr.shape[0] < 2:
        raise InputError(f"need at least 2 training pairs, got {pr.shape[0]}")
    if pr[:, 0].min() < 0 or pr[:, 0].max() >= tv.shape[0]:
        raise InputError(f"text vertex indices must lie in [0, {tv.shape[0]})")
    if pr[:, 1].min() < 0 or pr[:, 1].max() >= iv.shape[0]:
        raise InputError(f"image vertex indices must lie in [0, {iv.shape[0]})")
    g_txt = similarity_graph(tv, threshold=threshold, k=k, labels=text_labels, kind="text")
    g_img = similarity_graph(iv, threshold=threshold, k=k, labels=image_labels, kind="image")
    kk = None if k is None else min(k, pr.shape[0] - 1)
    alignment = training_graphs(tv[pr[:, 0]], iv[pr[:, 1]], threshold=threshold, k=kk)
    return UniverseGraphs(
        g_txt,
        g_img,
        g_txt.subgraph(sorted(set(pr[:, 0].tolist()))).copy(),
        g_img.subgraph(sorted(set(pr[:, 1].tolist()))).copy(),
        [(int(a), int(b)) for a, b in pr],
        alignment,
    )
