"""Block model: explicit embeddings realise the model; the closed form equals theory.ad on them."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from theory.ad import alignment_difficulty
from theory.block_model import BlockModel
from implosion_base.errors import InputError


@st.composite
def models(draw):
    mode = draw(st.sampled_from(["add", "replace"]))
    m = draw(st.integers(1, 6))
    p = draw(st.integers(1, m if mode == "replace" else 8))
    a_t, a_v = draw(st.floats(0.05, 0.95)), draw(st.floats(0.05, 0.95))
    b_t, b_v = draw(st.floats(0, a_t)), draw(st.floats(0, a_v))
    room = float(np.sqrt((1 - a_t) * (1 - a_v)))
    return BlockModel(
        n_concepts=draw(st.integers(2, 8)), benign_per_concept=m, poison_per_concept=p,
        text_within=a_t, text_across=b_t, image_within=a_v, image_across=b_v,
        benign_cos=draw(st.floats(-room, room)), poison_cos=draw(st.floats(-room, room)),
        alpha=draw(st.floats(0, 1)), laion_scale=draw(st.booleans()), mode=mode,
        targets=draw(st.sampled_from(["disjoint", "shared"])),
    )


@given(models(), st.data())
def test_closed_form_equals_exact_ad_on_embedding(bm, data):
    c = data.draw(st.integers(0, bm.max_poisoned))
    t, v = bm.embed(c, rotate_seed=data.draw(st.integers(0, 10)))
    exact = alignment_difficulty(t, v, alpha=bm.alpha, laion_scale=bm.laion_scale)
    closed = bm.ad(c)
    assert closed.n == exact.n
    assert closed.ad == pytest.approx(exact.ad, abs=1e-9)
    assert closed.d_stru == pytest.approx(exact.d_stru, abs=1e-9)
    assert closed.d_fea == pytest.approx(exact.d_fea, abs=1e-9)


def test_embedding_has_the_model_cosines():
    bm = BlockModel(n_concepts=6, benign_per_concept=3, poison_per_concept=2, text_within=0.7, text_across=0.2,
                    image_within=0.5, image_across=0.1, benign_cos=0.3, poison_cos=0.05)
    t, v = bm.embed(2)
    tl, il, poison = bm.labels(2)
    assert np.allclose(np.linalg.norm(t, axis=1), 1) and np.allclose(np.linalg.norm(v, axis=1), 1)
    gt, gv = t @ t.T, v @ v.T
    iu = np.triu_indices(len(tl), 1)
    assert np.allclose(gt[iu], np.where(tl[iu[0]] == tl[iu[1]], 0.7, 0.2))
    assert np.allclose(gv[iu], np.where(il[iu[0]] == il[iu[1]], 0.5, 0.1))
    assert np.allclose(np.sum(t * v, axis=1), np.where(poison, 0.05, 0.3))
    assert poison.sum() == 4 and set(il[poison]) == {2, 3}  # disjoint targets C_P + k


def test_labels_follow_configuration():
    bm = BlockModel(n_concepts=5, benign_per_concept=4, poison_per_concept=3, mode="replace", targets="shared")
    tl, il, poison = bm.labels(2)
    assert tl.size == 20  # replace keeps n = K m
    assert np.sum((tl == 0) & ~poison) == 1 and np.sum((tl == 0) & poison) == 3
    assert set(il[poison]) == {4}


def test_ad_grows_with_c_p_in_the_theorem_regime():
    bm = BlockModel(n_concepts=40, benign_per_concept=10, poison_per_concept=5)  # poisons stay a minority
    ad = [bm.ad(c).ad for c in range(bm.max_poisoned + 1)]
    assert all(b > a for a, b in zip(ad, ad[1:]))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_concepts": 1}, "n_concepts"),
        ({"benign_per_concept": 0}, "benign_per_concept"),
        ({"poison_per_concept": 11, "mode": "replace"}, "poison_per_concept <= benign_per_concept"),
        ({"text_within": 1.2}, "text_within"),
        ({"alpha": 2.0}, "alpha"),
        ({"mode": "swap"}, "mode"),
        ({"targets": "all"}, "targets"),
    ],
)
def test_bad_parameters(kwargs, match):
    with pytest.raises(InputError, match=match):
        BlockModel(**kwargs)


def test_bad_c_p_and_infeasible_embedding():
    bm = BlockModel(n_concepts=6)
    with pytest.raises(InputError, match=r"c_p must be an integer in \[0, 3\]"):
        bm.ad(4)
    with pytest.raises(InputError, match="sqrt"):
        BlockModel(text_within=0.9, image_within=0.9, benign_cos=0.5).embed(1)
    with pytest.raises(InputError, match="across <= within"):
        BlockModel(text_within=0.1, text_across=0.3).embed(1)
