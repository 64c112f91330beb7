"""The audit on known truth: dirty-label mixes made from a clean embedded set (or the simulator's space), and real
training mixes embedded with their truth (``python -m empirical.embed --builtin --mix``), each scored: precision
and recall of the flags, AP of the score, Ĉ_P and p̂ against the truth."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from dataset_audit.config import AuditConfig
from dataset_audit.pipeline import audit
from implosion_base.errors import InputError
from implosion_base.shards import PairShards, ShardPart
from implosion_base.validate import check_scalar, physical_memory, unit_rows
from theory.poisoning import dirty_label_items, make_plan


def dirty_label_mix(text: np.ndarray, image: np.ndarray, concept: np.ndarray, c_p: int, p: int, seed: int,
                    shift: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[int]]:
    r"""A clean embedded mix plus poisons made in embedding space: the first ``c_p`` concepts A of a seeded plan with
    ``random`` targets B ≠ A (:mod:`theory.poisoning`, the toolkit's one plan), ``p`` pairs each: the text of one of
    A's pairs and the image of one of B's (:func:`theory.poisoning.dirty_label_items`, the toolkit's one dirty-label
    helper). A joint embedder embeds caption and image separately, so these are exactly the embeddings of
    dirty-label pairs. With ``shift`` λ < 1 a Nightshade-like poison instead: the image of the caption's own pair
    moved a fraction λ toward B's, :math:`v = \mathrm{unit}((1-λ)\,v_A + λ\,v_B)` (λ = 0: a copy of a clean pair).
    Returns (text, image, concept of each caption, poison mask, poisoned concepts)."""
    check_scalar(shift, "shift", low=0.0, high=1.0)
    ks, index = np.unique(concept, return_inverse=True)
    plan = make_plan(len(ks), "random", seed=seed)
    captions, poisoned = dirty_label_items(plan, c_p, p, index, seed=seed, salt=3, show_target=False)
    images, _ = dirty_label_items(plan, c_p, p, index, seed=seed, salt=5)
    shown = image[images] if shift == 1.0 else unit_rows(
        (1.0 - shift) * image[captions].astype(np.float64) + shift * image[images]).astype(image.dtype)
    truth = np.r_[np.zeros(len(text), bool), np.ones(len(captions), bool)]
    return (np.concatenate([text, text[captions]]), np.concatenate([image, shown]),
            np.concatenate([concept, ks[poisoned]]), truth, [int(ks[a]) for a in plan.poisoned(c_p)])


def score_audit(t: np.ndarray, v: np.ndarray, captions: Sequence[str], names: list[str], truth: np.ndarray,
                chosen: Sequence[int], cfg: AuditConfig) -> dict[str, Any]:
    """Audit the pairs (t, v) with concept names matched in their captions, and score the audit against the known
    poison pairs ``truth`` and poisoned concepts ``chosen`` (indices into ``names``): flags' precision and recall,
    the average precision of ranking by score, estimated vs true C_P and p, and the audit's AD."""
    from theory.detection import rank_quality

    src = PairShards([ShardPart("mix", t, v, Path("mix"), {"caption": np.asarray(captions, dtype=str)})])
    res = audit(src, cfg, concept_names=names) if cfg.n_concepts is None else audit(src, cfg)
    flagged = res["pairs"]["flagged"]
    ap = rank_quality(res["pairs"]["score"], truth).average_precision  # NaN without poisons
    found = {names.index(r["name"]) for r in res["concepts"] if r["poisoned"] and r["name"] in names}
    s = res["summary"]
    return {"c_p": len(chosen), "n": len(t), "ad": s["ad"], "flagged": int(flagged.sum()),
            "precision": float(np.sum(flagged & truth) / flagged.sum()) if flagged.sum() else float("nan"),
            "recall": float(np.sum(flagged & truth) / truth.sum()) if truth.sum() else float("nan"),
            "ap_of_score": ap, "estimated_c_p": s["estimated_c_p"], "estimated_p": s["estimated_p"],
            "poisoned_found": len(found & set(chosen)), "false_concepts": len(found - set(chosen)),
            "predicted_acc_now": s.get("margin", {}).get("predicted_unpoisoned_acc_now", float("nan")),
            "predicted_threshold_c_p": s.get("margin", {}).get("threshold_c_p", "")}


def clean_set(spec: str, labels_key: str = "concept", seed: int = 0
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """The clean pairs ``--validate`` poisons: an embedded file with concept labels (``python -m empirical.embed
    --builtin``), or ``sim:KxM`` — K concepts × M pairs of the simulator's default CLIP-like space (seeded).
    Returns (text, image, concept, where they come from)."""
    if spec.startswith("sim:"):
        from simulate.concepts import ConceptConfig, make_space
        from simulate.poison import benign_pairs

        try:
            k, m = (int(x) for x in spec[4:].lower().split("x"))
        except ValueError:
            raise InputError(f"--validate {spec!r}: the simulator's clean set is written sim:KxM, e.g. sim:150x40") \
                from None
        check_scalar(k, "--validate sim: K", low=2, integer=True)
        check_scalar(m, "--validate sim: M", low=2, integer=True)
        dim = ConceptConfig().dim
        if k * m > MAX_VALIDATE_PAIRS or k * dim * 8 * 4 > (physical_memory() or 2**34) // 2:
            raise InputError(f"--validate {spec!r}: {k:,} x {m:,} pairs is more than an audit validation builds "
                             f"(at most {MAX_VALIDATE_PAIRS:,} pairs); use a smaller sim:KxM")
        t, v, c = benign_pairs(make_space(ConceptConfig(n_concepts=k), seed), m, seed)
        return t, v, np.asarray(c), f"the simulator's default space, K = {k}, m = {m}"
    from implosion_base.pairs_file import load_arrays

    arrays = load_arrays(Path(spec), ("text", "image", labels_key))
    concept = np.asarray(arrays[labels_key])
    check_labels(concept, len(arrays["text"]), None, f"{spec}: '{labels_key}'")
    return arrays["text"], arrays["image"], concept, Path(spec).name


#: The most pairs ``--validate sim:KxM`` builds (each mix is audited exactly or sampled as any other data).
MAX_VALIDATE_PAIRS = 10_000_000


def check_labels(labels: np.ndarray, n: int, k: int | None, what: str) -> None:
    """``labels`` must be one whole number ≥ 0 (below ``k`` when given) per pair: an InputError naming ``what``
    otherwise (a 2-D array, floats, negatives or labels past the concept list)."""
    if labels.ndim != 1 or len(labels) != n or (n and labels.dtype.kind not in "iu"):
        raise InputError(f"{what} must hold one integer concept label per pair ({n}), got dtype {labels.dtype} "
                         f"shape {labels.shape}")
    if n and (labels.min() < 0 or (k is not None and labels.max() >= k)):
        raise InputError(f"{what} holds concept labels outside 0..{'K-1' if k is None else k - 1} "
                         f"({int(labels.min())}..{int(labels.max())})")


def check_c_ps(c_ps: Sequence[int], k: int) -> None:
    """Every C_P below the clean set's K concepts (at C_P = K none is left unpoisoned): InputError otherwise."""
    if max(c_ps) >= k:
        raise InputError(f"--poisoned-concepts {max(c_ps)}: the clean set has only {k} concepts (at C_P = K none is "
                         "left unpoisoned)")


def validate(clean: str | tuple, c_ps: Sequence[int], p: int, cfg: AuditConfig, *, labels_key: str = "concept",
             seed: int = 0) -> list[dict[str, Any]]:
    """Audit dirty-label mixes built from a clean set (:func:`clean_set`, or its result when already read): one
    :func:`score_audit` row per C_P."""
    text, image, concept, where = clean if isinstance(clean, tuple) else clean_set(str(clean), labels_key, seed)
    ks = [int(k) for k in np.unique(concept)]
    check_c_ps(c_ps, len(ks))
    names = [f"concept {k}" for k in ks]
    out = []
    for c_p in c_ps:
        t, v, c, truth, chosen = dirty_label_mix(text, image, concept, c_p, p, seed)
        row = score_audit(t, v, [f"concept {k}" for k in c], names, truth, [ks.index(k) for k in chosen], cfg)
        out.append({"source": f"{where} + dirty-label pairs made in embedding space", "poison_type": "dirty",
                    "p": p, **row})
    return out


#: Arrays a mix file of ``python -m empirical.embed --builtin --mix`` holds.
MIX_ARRAYS = ("text", "image", "caption", "is_poison", "poisoned", "poison_type", "names", "concept")


def validate_mixes(paths: Sequence[Path], cfg: AuditConfig) -> list[dict[str, Any]]:
    """Audit real training mixes with their truth (``empirical.embed --builtin --mix``): one :func:`score_audit`
    row per file, with the true p (poison pairs per poisoned concept)."""
    out = []
    for path, a in zip(paths, [load_mix(p) for p in paths]):  # every file checked before the first is audited
        truth = np.asarray(a["is_poison"], bool)
        chosen = [int(k) for k in a["poisoned"]]
        p = int(np.median(np.bincount(a["concept"][truth])[chosen])) if chosen else 0
        row = score_audit(a["text"], a["image"], list(a["caption"]), [str(x) for x in a["names"]], truth, chosen,
                          cfg)
        out.append({"source": Path(path).name, "poison_type": str(a["poison_type"]) if chosen else "none",
                    "p": p, **row})
    return out


def load_mix(path: Path) -> dict[str, np.ndarray]:
    """A mix file's arrays (:data:`MIX_ARRAYS`), checked: concept labels inside the concept list, poisoned concepts
    among them, one truth flag per pair; an InputError naming the file otherwise."""
    from implosion_base.pairs_file import load_arrays

    a = load_arrays(path, MIX_ARRAYS)
    k = len(np.atleast_1d(a["names"]))
    check_labels(np.asarray(a["concept"]), len(a["text"]), k, f"{path}: 'concept'")
    check_labels(np.atleast_1d(np.asarray(a["poisoned"])), len(np.atleast_1d(a["poisoned"])), k,
                 f"{path}: 'poisoned'")
    truth = np.asarray(a["is_poison"], bool)
    if len(truth) != len(a["text"]) or (truth.any() and not len(np.atleast_1d(a["poisoned"]))):
        raise InputError(f"{path}: is_poison must mark one entry per pair, and poisons need poisoned concepts")
    return a
