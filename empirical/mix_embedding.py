"""The exact training mix of one experiment point, embedded by the judge, with its truth — what the dataset audit
is validated on (``python -m empirical.embed --builtin --mix dirty|nightshade ...``).

The mix is made as ``empirical.run`` makes it (:func:`empirical.point.point_mix`: the preset's clean pairs plus the
extra pairs of the poison kind, from the poison plan of ``--seed`` and ``--targets``; Nightshade-style poisons come
from, or go into, the same cache as the runs'), and every pair is embedded by the preset's judge. The ``.npz``
holds ``text``, ``image`` (unit rows), ``concept`` (the caption's concept), ``caption``, ``is_poison`` (the truth),
``poison_type`` and the plan's ``poisoned`` concepts; ``python -m dataset_audit --validate-mix FILE...`` audits it
and scores the audit against the truth.
"""

from __future__ import annotations

from argparse import ArgumentParser
from pathlib import Path

import numpy as np

from empirical.poison_kinds import POISON_KINDS
from implosion_base.errors import InputError
from implosion_base.files import save_npz_atomically
from implosion_base.validate import check_scalar
from theory.poisoning import target_rule


def add_mix_options(parser: ArgumentParser) -> None:
    """The options of ``--mix`` (a group of ``python -m empirical.embed``)."""
    g = parser.add_argument_group("--builtin --mix: embed one point's training mix with its truth")
    g.add_argument("--mix", default=None, metavar="TYPE",
                   help=f"poison type of the mix: {', '.join(POISON_KINDS)} (default: no mix, the clean pairs)")
    g.add_argument("--poisoned-concepts", type=int, default=25, metavar="C_P", help="C_P of the mix")
    g.add_argument("--poison-per-concept", type=int, default=80, metavar="P", help="p of the mix")
    g.add_argument("--seed", type=int, default=0, help="the poison plan's seed (as empirical.run --seeds)")
    g.add_argument("--targets", default="poisoned", help="the plan's poison target rule (as empirical.run --targets)")
    g.add_argument("--epsilon", type=float, default=None, help="Nightshade L∞ budget (default: the preset's)")
    g.add_argument("--pgd-steps", type=int, default=None, help="Nightshade PGD steps (default: the preset's)")


def check_mix_options(args) -> None:
    """One-line errors for the ``--mix`` options, before anything is computed."""
    if args.mix is None:
        return
    if not args.builtin:
        raise InputError("--mix embeds a point of the built-in data; give --builtin")
    if args.judge is not None:
        raise InputError("--mix embeds with the preset's own judge (the one its runs measure with); drop --judge")
    if args.mix not in POISON_KINDS:
        raise InputError(f"--mix must be one of {', '.join(POISON_KINDS)}, got {args.mix!r}")
    check_scalar(args.poisoned_concepts, "--poisoned-concepts", low=0, integer=True)
    check_scalar(args.poison_per_concept, "--poison-per-concept", low=1, integer=True)
    check_scalar(args.seed, "--seed", low=0, high=2**32, high_open=True, integer=True)
    args.targets = target_rule(args.targets, note=True)


def embed_mix(args, cache: Path, log=print) -> dict[str, np.ndarray]:
    """Make and embed the mix the ``--mix`` options describe (module docstring); returns the written arrays."""
    from empirical.assets import prepare_assets
    from empirical.evaluate import concept_similarity
    from empirical.point import point_mix
    from empirical.poisons import harness_plan
    from empirical.presets import get_preset, with_overrides

    preset = with_overrides(get_preset(args.preset), epsilon=args.epsilon, pgd_steps=args.pgd_steps)
    if args.poisoned_concepts >= preset.render.concepts:
        raise InputError(f"--poisoned-concepts must stay below the preset's {preset.render.concepts} concepts")
    assets = prepare_assets(preset, cache, log=log)
    similarity = concept_similarity(assets.clean_features) if args.targets in ("nearest", "farthest") else None
    plan = harness_plan(assets.data.names, args.targets, seed=args.seed, similarity=similarity)
    ptype, batch, mix, texts = point_mix(assets, plan, kind="poisoned", poison_type=args.mix,
                                         c_p=args.poisoned_concepts, p=args.poison_per_concept, seed=args.seed,
                                         cache_dir=cache)
    pixels = batch.pixels(assets.data.images)[mix.image_idx]
    text = np.concatenate([assets.instruments.judge.embed_texts(texts[i:i + 2048]) for i in range(0, len(texts), 2048)])
    image = np.concatenate([assets.instruments.judge.embed_images(pixels[i:i + 2048]) for i in range(0, len(pixels), 2048)])
    concept = np.r_[assets.data.labels, batch.concepts].astype(np.int64)
    arrays = {"text": text.astype(np.float32), "image": image.astype(np.float32), "concept": concept,
              "caption": np.asarray(texts, dtype=str),
              "is_poison": np.r_[np.zeros(len(assets.data), bool), batch.is_poison],
              "poison_type": np.asarray(ptype), "poisoned": np.asarray(plan.poisoned(args.poisoned_concepts),
                                                                       dtype=np.int64),
              "names": np.asarray(assets.data.names, dtype=str)}
    save_npz_atomically(args.out, **arrays)
    return arrays
