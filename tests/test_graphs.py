"""G_txt / G_img: edges against direct computation, mismatched edges, training subgraphs."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from theory.ad import alignment_difficulty
from implosion_base.errors import InputError
from theory.graphs import similarity_graph, training_graphs, universe_graphs


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_threshold_edges_are_exactly_the_high_cosine_pairs():
    x = np.random.default_rng(0).normal(size=(30, 4))
    g = similarity_graph(x, threshold=0.3)
    u = _unit(x)
    want = {(i, j) for i, j in itertools.combinations(range(30), 2) if u[i] @ u[j] >= 0.3}
    assert {tuple(sorted(e)) for e in g.edges()} == want
    for i, j, w in g.edges(data="weight"):
        assert w == pytest.approx(u[i] @ u[j])
    assert g.number_of_nodes() == 30 and nx_no_self_loops(g)


def nx_no_self_loops(g) -> bool:
    return all(i != j for i, j in g.edges())


def test_knn_graph_gives_every_vertex_its_k_nearest():
    x = np.random.default_rng(1).normal(size=(25, 5))
    u = _unit(x)
    g = similarity_graph(x, k=3)
    for i in range(25):
        cos = u @ u[i]
        cos[i] = -np.inf
        for j in np.argsort(-cos)[:3]:
            assert g.has_edge(i, int(j))
        assert g.degree(i) >= 3


def test_mismatched_edges_are_the_symmetric_difference():
    rng = np.random.default_rng(2)
    t, v = rng.normal(size=(20, 3)), rng.normal(size=(20, 3))
    ag = training_graphs(t, v, threshold=0.5)
    et = {tuple(sorted(e)) for e in ag.g_txt.edges()}
    ei = {tuple(sorted(e)) for e in ag.g_img.edges()}
    assert set(ag.mismatched) == et ^ ei
    assert set(ag.matched) == et & ei
    assert 0 < ag.mismatch_rate < 1


def test_identical_spaces_have_no_mismatch():
    x = np.random.default_rng(3).normal(size=(15, 4))
    ag = training_graphs(x, 2 * x, k=2)
    assert ag.mismatched == [] and ag.mismatch_rate == 0.0


def test_complete_graph_weights_give_d_stru():
    """D_stru is the weighted, threshold-free mismatch: 2/n^2 sum |w_img - w_txt| over the complete graphs."""
    rng = np.random.default_rng(4)
    t, v = rng.normal(size=(18, 6)), rng.normal(size=(18, 6))
    ag = training_graphs(t, v, threshold=-1.0)
    n = 18
    assert ag.g_txt.number_of_edges() == n * (n - 1) // 2
    total = sum(abs(ag.g_img[i][j]["weight"] - w) for i, j, w in ag.g_txt.edges(data="weight"))
    assert 2 * total / n**2 == pytest.approx(alignment_difficulty(t, v).d_stru, abs=1e-12)


def test_dirty_label_poison_creates_mismatched_edges():
    """Fig. 5's picture: a pair whose text says A and whose image shows B is joined to A's pairs in G_txt but to
    B's pairs in G_img."""
    rng = np.random.default_rng(5)
    ct, cv = rng.normal(size=(2, 16)) * 3, rng.normal(size=(2, 16)) * 3
    labels = np.array([0] * 5 + [1] * 5)
    t = ct[labels] + 0.2 * rng.normal(size=(10, 16))
    v = cv[labels] + 0.2 * rng.normal(size=(10, 16))
    clean = training_graphs(t, v, threshold=0.8)
    assert clean.mismatched == []
    v[0] = cv[1] + 0.2 * rng.normal(size=16)  # poison: text of concept 0, image of concept 1
    poisoned = training_graphs(t, v, threshold=0.8)
    assert {e for e in poisoned.mismatched if 0 in e} == {(0, j) for j in range(1, 10)}


def test_universe_graphs_and_training_subgraphs():
    rng = np.random.default_rng(6)
    tv, iv = rng.normal(size=(12, 5)), rng.normal(size=(9, 5))
    pairs = [(0, 1), (3, 4), (5, 4), (11, 8)]
    ug = universe_graphs(tv, iv, pairs, threshold=0.2, text_labels=[f"t{i}" for i in range(12)])
    assert ug.g_txt.number_of_nodes() == 12 and ug.g_img.number_of_nodes() == 9
    assert sorted(ug.g_txt_train.nodes()) == [0, 3, 5, 11]
    assert sorted(ug.g_img_train.nodes()) == [1, 4, 8]
    for a, b in ug.g_txt_train.edges():
        assert ug.g_txt.has_edge(a, b)
    # pairs (3,4) and (5,4) share an image vertex: cosine 1 in G_img, so their edge exists there
    assert ug.alignment.g_img.has_edge(1, 2)
    assert ug.g_txt.nodes[3]["label"] == "t3"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({}, "exactly one of"),
        ({"threshold": 0.5, "k": 2}, "exactly one of"),
        ({"threshold": 1.5}, "threshold"),
        ({"k": 0}, "k must be"),
        ({"k": 10}, "k must be"),
    ],
)
def test_bad_graph_arguments(kwargs, match):
    with pytest.raises(InputError, match=match):
        similarity_graph(np.random.default_rng(0).normal(size=(10, 3)), **kwargs)


def test_bad_universe_pairs():
    x = np.ones((3, 2)) + np.eye(3, 2)
    with pytest.raises(InputError, match="text vertex indices"):
        universe_graphs(x, x, [(0, 0), (5, 1)], threshold=0.1)
    with pytest.raises(InputError, match="at least 2"):
        universe_graphs(x, x, [(0, 0)], threshold=0.1)
    with pytest.raises(InputError, match="one entry per vertex"):
        similarity_graph(x, threshold=0.1, labels=["a"])
