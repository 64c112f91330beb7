"""Write a preset's emoji data set as a Hugging Face ``imagefolder``: the built-in data as a user's own folder.

``python -m empirical.export_folder --preset cpu --out DIR`` writes ``DIR/train/metadata.jsonl`` (one line per pair:
``file_name``, ``text``), the images as PNG files in ``DIR/train/images/`` and ``DIR/concepts.txt`` (one concept
name per line, in the preset's concept order). Each concept's training renders come first and its held-out renders
(the preset's ``held_out``, another augmentation stream) last, so that :func:`empirical.folder_data.
concept_data_from_folder`, which holds out the last ``min(held_out, n_c // 5)`` pairs of each concept, splits the
folder exactly as the built-in data are split whenever ``held_out ≤ (per_concept + held_out) // 5`` (the smoke, cpu
and gpu presets; for micro the reader holds out fewer, and the command says so).

What it is for: the own-data path (``empirical.run --train-data-dir DIR --concepts-file DIR/concepts.txt``) run on
this folder must reproduce the built-in run (the same pixels, captions, concepts and split; only the cache keys
differ) — an end-to-end check of the reader, the concept matching and the harness on a user's data.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from implosion_base.errors import InputError


def export_image_folder(train, held, folder: Path) -> int:
    """Write ``train`` and ``held`` (:class:`empirical.data.ConceptData` of the same concepts) to ``folder`` as an
    imagefolder (``train/metadata.jsonl``, ``train/images/*.png``, ``concepts.txt``); concept by concept, its
    training pairs then its held-out pairs. Returns the number of pairs written."""
    from PIL import Image

    if list(train.names) != list(held.names):
        raise InputError("training and held-out data name different concepts")
    split = folder / "train"
    (split / "images").mkdir(parents=True)
    n = 0
    with open(split / "metadata.jsonl", "w", encoding="utf-8") as meta:
        for c, name in enumerate(train.names):
            for part, tag in ((train, "t"), (held, "h")):
                for i in np.flatnonzero(part.labels == c):
                    file_name = f"images/{c:04d}-{tag}{i:06d}.png"
                    Image.fromarray(part.images[i]).save(split / file_name)
                    meta.write(json.dumps({"file_name": file_name, "text": part.captions[i]}) + "\n")
                    n += 1
    (folder / "concepts.txt").write_text("".join(f"{name}\n" for name in train.names), encoding="utf-8")
    return n


def main(argv: Sequence[str] | None = None) -> int:
    from empirical.assets import concept_data
    from empirical.folder_data import held_out_count
    from empirical.presets import DEFAULT_CACHE, PRESETS, get_preset
    from implosion_base.cli import ArgumentParser, dry_run, path_arg
    from implosion_base.files import check_new_folder, ensure_writable_dir, write_folder_atomically

    parser = ArgumentParser(prog="python -m empirical.export_folder", description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=list(PRESETS), default="cpu", help="whose data (default cpu)")
    parser.add_argument("--out", type=path_arg, required=True, help="the new folder (must not exist, or be empty)")
    parser.add_argument("--cache", type=path_arg, default=DEFAULT_CACHE, help=f"asset cache (default {DEFAULT_CACHE})")
    args = parser.parse_args(argv)
    preset = get_preset(args.preset)
    check_new_folder(args.out)
    if dry_run(args, "python -m empirical.export_folder", {
            "preset": args.preset, "concepts": preset.render.concepts,
            "pairs": preset.render.concepts * (preset.render.per_concept + preset.held_out),
            "writes": f"{args.out}/train/metadata.jsonl, {args.out}/train/images/, {args.out}/concepts.txt"}):
        return 0
    cache = ensure_writable_dir(args.cache, name="--cache")
    train, held, _ = concept_data(preset, cache)
    counted: list[int] = []
    write_folder_atomically(args.out, lambda tmp: counted.append(export_image_folder(train, held, tmp)))
    n_c = preset.render.per_concept + preset.held_out
    if held_out_count(n_c, preset.held_out) < preset.held_out:
        print(f"note: the folder reader holds out {held_out_count(n_c, preset.held_out)} of each concept's {n_c} "
              f"pairs, the preset "
              f"{preset.held_out}: runs on this folder split it differently from the built-in data")
    print(f"wrote {args.out}: {counted[0]} pairs of {len(train.names)} concepts ({len(train)} training, "
          f"{len(held)} held out); try: python -m empirical.run --preset {args.preset} --train-data-dir {args.out} "
          f"--concepts-file {args.out}/concepts.txt --poisoned-concepts 0")
    return 0


def cli() -> None:
    from implosion_base.cli import run_main

    run_main(main, prog="implosion-export-folder")


if __name__ == "__main__":
    cli()
