"""Measures of a trained text-to-image model under poison, all read by the judge (:mod:`empirical.judge`).

For each concept c, k images are generated from the prompt ``"a photo of a {c}"`` at fixed seeds (the same seeds
for every model, so models are compared on the same initial noise). With U the never-poisoned concepts and P the
poisoned ones (target τ(c)):

- unpoisoned accuracy  = mean over images of U of [judge class = c]; unpoisoned probability = mean judge
  probability of c (the graded measure: top-1 accuracy saturates at this scale);
- poisoned accuracy    = the same over P; attack success = mean over images of P of [judge class = τ(c)];
- score                = mean prompt–image cosine <f(x), g(prompt)> in the joint space (all concepts, and U alone);
- meaningless rate     = the share of U's generated images the judge can place near no concept
  (:mod:`empirical.meaningless`: off-render at q = 0.05, off the held-out renders' VAE reconstructions at q = 0.05
  *and* farther from every one of the clean base model's own samples than 95 % of them are from their nearest
  other one; checked on images of known truth and on held-out clean samples by ``python -m empirical.known_truth
  --calibrate-on samples``); off-render rate = farther from
  every concept's clean renders, or read less confidently, than all but 1 % of held-out renders (the meaningless
  rate until 2026-12-07: it flags a fifth to two fifths of a competent model's images, so it is read only against
  a control);
- no-standout rate, own similarity, margin, salience = :mod:`theory.implosion`'s shared measures over U's
  generated images in the judge's feature space, the concept references being the mean features of each
  concept's clean renders: no-standout = no concept stands out of the image more than out of a random mixture of
  concepts (the harness's "meaningless rate" until 2026-12; it reads noise as meaningful, so it is kept under this
  name only);
- Fréchet distance     = FD between judge features of U's generated images and of U's clean renders (the
  "incoherent images" signal; the clean-model value is the floor at this sample size); kernel distance = the
  unbiased KID-style MMD² between the same two sets (:mod:`empirical.feature_distance`; expectation 0 when the
  generated images are distributed like the renders, at any sample size);
- AD, D_fea, D_stru    = theory.ad on the judge's text and image embeddings of the exact training mix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from empirical.data import caption
from theory.ad import pair_attribution
from theory.detection import rank_quality
from theory.implosion import ImplosionReference, implosion_measures, make_reference

if TYPE_CHECKING:
    from empirical.meaningless import MeaninglessRule
from implosion_base.validate import unit_rows

#: Columns of the per-point measures, in the order they appear in results.csv.
MEASURES: tuple[str, ...] = (
    "ad", "d_fea", "d_stru", "unpoisoned_acc", "unpoisoned_prob", "poisoned_acc", "attack_success",
    "score", "unpoisoned_score", "fd_unpoisoned", "n_pairs",
    "unpoisoned_meaningless", "unpoisoned_own_sim", "unpoisoned_margin", "unpoisoned_salience",
    "kid_unpoisoned", "unpoisoned_no_standout", "unpoisoned_off_render",
)
#: The measures added after the first result folders were written (older rows read them as NaN). A table written
#: before ``unpoisoned_no_standout`` holds that measure under the name ``unpoisoned_meaningless``, one written before
#: ``unpoisoned_off_render`` holds that one there; each is renamed when it is read
#: (:data:`implosion_base.records.MOVED_COLUMNS`), and its meaningless rate is then NaN.
LATER_MEASURES: tuple[str, ...] = ("unpoisoned_meaningless", "unpoisoned_own_sim", "unpoisoned_margin",
                                   "unpoisoned_salience", "kid_unpoisoned", "unpoisoned_no_standout",
                                   "unpoisoned_off_render")


@dataclass(frozen=True)
class EvalConfig:
    """``per_concept`` images per concept, DDIM ``steps``, classifier-free ``guidance``; seeds start at ``seed``."""

    per_concept: int = 8
    steps: int = 20
    guidance: float = 4.0
    seed: int = 10_000


def prompts_and_seeds(names: list[str], cfg: EvalConfig) -> tuple[list[str], list[int], np.ndarray]:
    """Prompts, noise seeds and concept labels of the evaluation set (concept-major)."""
    prompts, seeds, labels = [], [], []
    for c, name in enumerate(names):
        for j in range(cfg.per_concept):
            prompts.append(caption(name, 0))
            seeds.append(cfg.seed + c * cfg.per_concept + j)
            labels.append(c)
    return prompts, seeds, np.asarray(labels)


def pair_attribution_of_mix(judge, images: np.ndarray, texts: list[str]):
    """theory.ad's per-pair attribution of a training mix in the judge's joint space (unit embeddings)."""
    return pair_attribution(judge.embed_texts(texts), judge.embed_images(images))


def mix_alignment_difficulty(judge, images: np.ndarray, texts: list[str],
                             is_poison: np.ndarray | None = None) -> dict[str, float]:
    """AD of a training mix: theory.ad on the judge's unit text and image embeddings of its pairs. With the
    mask of the true poison pairs, also how well ranking the pairs by their share of AD finds them
    (:mod:`theory.detection`: average precision, precision@k, base rate; NaN when there is no poison)."""
    att = pair_attribution_of_mix(judge, images, texts)
    res = att.result
    out = {"ad": res.ad, "d_fea": res.d_fea, "d_stru": res.d_stru}
    if is_poison is not None:
        out.update(rank_quality(att.contribution, is_poison).summary())
    return out


def generated_measures(judge, generated: np.ndarray, labels: np.ndarray, prompts: list[str], poisoned: list[int],
                       targets: dict[int, int], clean_features: dict[int, np.ndarray],
                       meaningless: "MeaninglessRule | None" = None,
                       off_render: "MeaninglessRule | None" = None) -> dict[str, float]:
    """The generation measures of the module docstring from generated images and their concept labels.

    ``clean_features[c]`` are the judge features of concept c's clean renders (for the Fréchet distance);
    ``meaningless`` and ``off_render`` the two rules of :mod:`empirical.meaningless` (each rate is NaN without its
    rule).
    """
    from empirical.meaningless import meaningless_rate

    from empirical.feature_distance import frechet_distance, kernel_distance

    prob = judge.probabilities(generated)
    pred = prob.argmax(1)
    right = prob[np.arange(len(labels)), labels]
    is_p = np.isin(labels, poisoned)
    u = ~is_p
    scores = judge.score(generated, prompts)
    out = {
        "unpoisoned_acc": float(np.mean(pred[u] == labels[u])) if u.any() else float("nan"),
        "unpoisoned_prob": float(np.mean(right[u])) if u.any() else float("nan"),
        "poisoned_acc": float(np.mean(pred[is_p] == labels[is_p])) if is_p.any() else float("nan"),
        "attack_success": _attack_success(pred, labels, is_p, targets),
        "score": float(np.mean(scores)),
        "unpoisoned_score": float(np.mean(scores[u])) if u.any() else float("nan"),
    }
    unp = sorted(set(labels[u].tolist()))
    gen_feat = judge.image_features(generated[u]) if u.any() else None
    if len(unp) and sum(len(clean_features[c]) for c in unp) >= 2 and u.sum() >= 2:
        ref = np.concatenate([clean_features[c] for c in unp])
        out["fd_unpoisoned"] = frechet_distance(gen_feat, ref)
        out["kid_unpoisoned"] = kernel_distance(gen_feat, ref)
    else:
        out["fd_unpoisoned"] = out["kid_unpoisoned"] = float("nan")
    implosion = implosion_measures(gen_feat, labels[u], concept_reference(clean_features)) \
        if gen_feat is not None else {}
    for name in ("own_sim", "margin", "salience"):
        out["unpoisoned_" + name] = implosion.get(name, float("nan"))
    out["unpoisoned_no_standout"] = implosion.get("meaningless_rate", float("nan"))
    for column, rule in (("unpoisoned_meaningless", meaningless), ("unpoisoned_off_render", off_render)):
        out[column] = meaningless_rate(rule, gen_feat, prob[u].max(1)) \
            if rule is not None and gen_feat is not None else float("nan")
    return out


def _attack_success(pred: np.ndarray, labels: np.ndarray, is_p: np.ndarray, targets: dict[int, int]) -> float:
    """Share of the poisoned concepts' images read as their concept's target; concepts without one target
    (``scatter`` plans: target < 0) are left out, NaN when none is left."""
    tgt = np.array([targets.get(int(c), -1) for c in labels], dtype=np.int64)
    m = is_p & (tgt >= 0)
    return float(np.mean(pred[m] == tgt[m])) if m.any() else float("nan")


def concept_means(clean_features: dict[int, np.ndarray]) -> np.ndarray:
    """K × D: concept c's mean clean-render judge feature (concepts indexed 0..K-1, each with a render)."""
    return np.stack([np.asarray(clean_features[c], dtype=np.float64).mean(axis=0) for c in range(len(clean_features))])


def concept_similarity(clean_features: dict[int, np.ndarray]) -> np.ndarray:
    """K × K cosine between concepts' mean clean-render judge features (what ``nearest`` targets read)."""
    ref = unit_rows(concept_means(clean_features))
    return ref @ ref.T


def concept_reference(clean_features: dict[int, np.ndarray]) -> ImplosionReference:
    """:mod:`theory.implosion`'s reference in the judge's feature space: the concepts' mean clean-render
    features (:func:`concept_means`)."""
    return make_reference(concept_means(clean_features))


def per_concept_table(judge, generated: np.ndarray, labels: np.ndarray, names: list[str]) -> list[dict]:
    """Per concept: accuracy, mean probability of the right concept and the most frequent predicted concept."""
    prob = judge.probabilities(generated)
    pred = prob.argmax(1)
    rows = []
    for c, name in enumerate(names):
        m = labels == c
        if not m.any():
            continue
        top = np.bincount(pred[m], minlength=len(names)).argmax()
        rows.append({"concept": name, "acc": float(np.mean(pred[m] == c)), "prob": float(np.mean(prob[m, c])),
                     "read_as": names[top]})
    return rows
