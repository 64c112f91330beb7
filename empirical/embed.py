"""``python -m empirical.embed FOLDER --out emb.npz``: embed an image-text folder for ``python -m theory.ad``;
``python -m empirical.embed 00000.tar 00001.tar ... --out emb/``: embed a data set shard by shard into the
clip-retrieval layout, for ``python -m dataset_audit``.

    python -m empirical.embed my_pairs/ --out emb.npz                  # our trained judge (preset cpu)
    python -m empirical.embed my_pairs/ --out emb.npz --judge clip/    # a local CLIP folder (transformers)
    python -m theory.ad emb.npz                                        # the folder's Alignment Difficulty
    python -m empirical.embed --builtin --preset cpu --out mix.npz     # the preset's own clean training pairs
    python -m empirical.embed shards/{00000..00099}.tar --out emb/     # webdataset tars -> img_emb/ text_emb/ metadata/
    python -m dataset_audit emb/ --out audit/                          # the audit reads that layout unchanged

With ``--out`` a folder (no ``.npz``), every input — a webdataset tar (``KEY.jpg`` + ``KEY.txt`` [+ ``KEY.json``],
streamed, never unpacked: :mod:`empirical.webdataset`) or an image-text folder — becomes one partition of the
layout ``clip-retrieval inference`` writes (float16 ``img_emb/img_emb_N.npy``, ``text_emb/text_emb_N.npy``, parquet
``metadata/metadata_N.parquet``; :mod:`empirical.shard_embedding`); a rerun skips the partitions already done.

``--builtin`` embeds the preset's clean training renders with their captions instead of a folder and also writes
``concept`` (the concept index of each pair) and ``caption``: what ``python -m simulate.predict --embeddings``
needs to calibrate the simulator's geometry to this data and this judge.

FOLDER is a Hugging Face ``imagefolder`` (:mod:`empirical.folder_data`: ``metadata.jsonl`` or ``metadata.csv``, at
the top or in ``train/``, columns ``file_name`` and ``text`` unless ``--image-column`` / ``--caption-column`` say
otherwise; bad lines and unreadable images are skipped with one summary warning per kind of problem). Each pair's caption and image are embedded
in the model's joint space and L2-normalised; ``--out`` gets arrays ``text`` and ``image`` (n × d, float32),
``line`` (the metadata line of each pair), ``file_name`` and ``caption``: ``theory.ad`` reads the embeddings,
and its ``--top`` / ``--scores`` name each pair by file name and caption.

The model is loaded once and pairs are embedded in batches with a progress bar. Every ``--save-every`` batches
the embeddings so far go to ``OUT.partial.npz`` (with a fingerprint of the folder's metadata and the model), so a
killed run started again with the same arguments continues after the last saved line.

``--judge`` takes a folder written by our judge (``judge.json`` + ``judge.safetensors``) or a transformers CLIP
folder (``config.json`` with model_type clip, safetensors weights, tokenizer and image processor files); it is
loaded with ``local_files_only`` and without remote code. Without ``--judge`` the judge of ``--preset`` is taken
from the asset cache (trained there first if absent, as ``python -m empirical.run`` would).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from empirical.folder_data import FolderFormat, folder_key, metadata_file
from empirical.mix_embedding import add_mix_options, check_mix_options, embed_mix
from implosion_base.cli import ArgumentParser, dry_run, path_arg, run_main
from implosion_base.errors import InputError
from implosion_base.validate import check_scalar
from implosion_base.errors import DAMAGE
from implosion_base.files import atomic_path, check_output_file, discard_damaged, hold_output
from implosion_base.progress import Progress, as_progress, quiet_library_bars


class ClipEmbedder:
    """A local transformers CLIP folder as a joint embedder (loaded by :func:`empirical.judge.load_clip`)."""

    def __init__(self, folder: Path, device: str = "cpu"):
        from empirical.judge import ClipJudge

        self.clip = ClipJudge(folder, [], device=device)
        self.name = f"clip:{Path(folder).resolve()}"
        self.size = None  # the processor resizes

    def embed(self, images: list[np.ndarray], texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        return (self.clip.embed_texts(list(texts)).astype(np.float32),
                self.clip.embed_images(np.stack(images) if len({im.shape for im in images}) == 1 else images
                                       ).astype(np.float32))


class JudgeEmbedder:
    """Our judge (:class:`empirical.judge.Judge`) as a joint embedder; images are resized to its size."""

    def __init__(self, judge, size: int, name: str):
        self.judge = judge
        self.size = size
        self.name = name

    def embed(self, images: list[np.ndarray], texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        if len({im.shape for im in images}) > 1:
            raise InputError("images differ in size and this judge records no image size to resize them to")
        return (self.judge.embed_texts(list(texts)).astype(np.float32),
                self.judge.embed_images(np.stack(images)).astype(np.float32))


def run_folder_judge(folder: Path) -> Path:
    """``folder`` itself, or, for an ``empirical.run`` output folder (a manifest.json), the judge it trained on the
    user's data and kept (``assets.judge_folder``); InputError when that run kept none."""
    manifest = folder / "manifest.json"
    if not manifest.is_file() or (folder / "judge.json").is_file():
        return folder
    try:
        kept = json.loads(manifest.read_text(encoding="utf-8")).get("assets", {}).get("judge_folder")
    except (ValueError, AttributeError, OSError):
        kept = None
    if not kept:
        raise InputError(f"--judge {folder} is an empirical.run folder without a judge of its own (runs on "
                         "--train-data-dir without --pretrained or --judge keep theirs in OUT/judge/)")
    return folder / kept


def load_embedder(judge: Path | None, preset_name: str, cache: Path, device: str = "cpu", log=print):
    """The embedder for ``--judge`` (see the module docstring)."""
    from empirical.judge import Judge
    from empirical.text_encoder import TextEncoder
    from empirical.presets import get_preset

    if judge is not None:
        judge = Path(judge)
        if not judge.is_dir():
            raise InputError(f"--judge {judge} is not a folder")
        judge = run_folder_judge(judge)
        if (judge / "judge.json").is_file():
            Judge.read_meta(judge)  # a damaged judge is named before the text encoder loads
            j = Judge.load(judge, TextEncoder(device=device), device=device)
            return JudgeEmbedder(j, j.image_size, f"judge:{judge.resolve()}")
        return ClipEmbedder(judge, device)
    from empirical.assets import prepare_assets

    preset = get_preset(preset_name)
    log(f"using the judge of preset {preset.name!r} from {cache} (trained there first if absent)")
    assets = prepare_assets(preset, cache, log=log)
    return JudgeEmbedder(assets.instruments.judge, preset.render.size, f"judge:{preset.name}:{assets.data_key}")


def _fingerprint(folder: Path, model: str, fmt: FolderFormat = FolderFormat()) -> str:
    meta = metadata_file(folder)
    # a class-subfolder layout has no metadata file: its listing (names, sizes, times) stands for one
    h = hashlib.sha256(meta.read_bytes() if meta.is_file() else folder_key(folder, fmt).encode())
    h.update(model.encode())
    if fmt != FolderFormat():  # the default columns keep the fingerprints written before columns were options
        h.update(json.dumps([fmt.image_column, fmt.caption_column]).encode())
    return h.hexdigest()[:16]


def _save(path: Path, **arrays) -> None:
    with atomic_path(path) as tmp:
        np.savez(tmp, **arrays)


def _resume(partial: Path, fingerprint: str) -> tuple[list, list, list, list, list]:
    """What a partial file of the same run holds: (text batches, image batches, metadata lines, file names,
    captions); empty lists when there is none, it belongs to another run (or an older format), or a crash cut
    it (then it is discarded rather than blocking every rerun)."""
    if partial.is_file():
        try:
            with np.load(partial, allow_pickle=False) as z:
                if str(z["fingerprint"]) == fingerprint and "caption" in z.files:
                    return [z["text"]], [z["image"]], list(z["line"]), list(z["file_name"]), list(z["caption"])
        except DAMAGE as exc:
            discard_damaged(partial, exc)
    return [], [], [], [], []


def embed_folder(folder: Path, embedder, out: Path, *, batch_size: int = 64, save_every: int = 20,
                 fmt: FolderFormat = FolderFormat(),
                 progress: Progress | bool = False) -> dict[str, np.ndarray]:
    """Embed every usable pair of ``folder`` (resuming from ``out``'s partial file) and write ``out``."""
    from empirical.folder_data import count_folder_lines, iter_image_folder

    folder, out = Path(folder), Path(out)
    partial = out.with_name(out.name.removesuffix(".npz") + ".partial.npz")
    fp = _fingerprint(folder, embedder.name, fmt)
    text, image, lines, names, captions = _resume(partial, fp)
    after = int(lines[-1]) if lines else 0

    def flush():
        _save(partial, text=np.concatenate(text) if text else np.zeros((0, 0), np.float32),
              image=np.concatenate(image) if image else np.zeros((0, 0), np.float32),
              line=np.asarray(lines, np.int64), file_name=np.asarray(names, dtype=str),
              caption=np.asarray(captions, dtype=str), fingerprint=np.asarray(fp))

    bar = as_progress(progress).bar(desc="embed", total=count_folder_lines(folder), initial=after, unit="pair")
    batch: list[tuple[int, np.ndarray, str, str]] = []
    n_batches = 0

    def run_batch():
        nonlocal n_batches
        t, v = embedder.embed([b[1] for b in batch], [b[2] for b in batch])
        text.append(t)
        image.append(v)
        lines.extend(b[0] for b in batch)
        names.extend(b[3] for b in batch)
        captions.extend(b[2] for b in batch)
        bar.update(batch[-1][0] - bar.n)  # progress in metadata lines
        batch.clear()
        n_batches += 1
        if n_batches % save_every == 0:
            flush()

    for item in iter_image_folder(folder, size=embedder.size, after_line=after, fmt=fmt):
        batch.append(item)
        if len(batch) == batch_size:
            run_batch()
    if batch:
        run_batch()
    bar.close()
    if not lines:
        raise InputError(f"no readable image-text pairs in {folder}")
    arrays = {"text": np.concatenate(text).astype(np.float32), "image": np.concatenate(image).astype(np.float32),
              "line": np.asarray(lines, np.int64), "file_name": np.asarray(names, dtype=str),
              "caption": np.asarray(captions, dtype=str)}
    _save(out, **arrays)
    partial.unlink(missing_ok=True)
    return arrays


def embed_builtin(preset_name: str, cache: Path, out: Path, judge: Path | None = None, device: str = "cpu",
                  batch_size: int = 256, log=print) -> dict[str, np.ndarray]:
    """Embed the clean training pairs of a preset (renders + captions; judge of the preset or ``judge``) and write
    ``out`` with arrays text, image, concept and caption."""
    from empirical.presets import get_preset
    from empirical.assets import prepare_assets

    preset = get_preset(preset_name)
    assets = prepare_assets(preset, cache, log=log)
    embedder = load_embedder(judge, preset_name, cache, device, log=log) if judge is not None else \
        JudgeEmbedder(assets.instruments.judge, preset.render.size, f"judge:{preset.name}:{assets.data_key}")
    data = assets.data
    text, image = [], []
    for i in range(0, len(data.captions), batch_size):
        t, v = embedder.embed(list(data.images[i:i + batch_size]), list(data.captions[i:i + batch_size]))
        text.append(t)
        image.append(v)
    arrays = {"text": np.concatenate(text), "image": np.concatenate(image),
              "concept": np.asarray(data.labels, np.int64), "caption": np.asarray(data.captions, dtype=str)}
    _save(out, **arrays)
    return arrays


def _parser() -> ArgumentParser:
    from empirical.presets import DEFAULT_CACHE

    parser = ArgumentParser(prog="python -m empirical.embed", description=__doc__.split("\n\n")[0])
    parser.add_argument("inputs", type=Path, nargs="*", metavar="INPUT",
                        help="an image-text folder (metadata.jsonl or metadata.csv, at the top or in train/); with "
                             "--out a folder, any number of webdataset tars and image-text folders (one partition "
                             "each)"),
    parser.add_argument("--image-column", default="file_name", help="metadata column of the image path (default "
                                                                    "file_name)")
    parser.add_argument("--caption-column", default="text", help="metadata column of the caption (default text)")
    parser.add_argument("--builtin", action="store_true",
                        help="embed the preset's own clean training pairs instead of a folder")
    parser.add_argument("--out", type=path_arg, required=True,
                        help="output .npz (arrays text, image, line, file_name, caption), or a folder: the "
                             "clip-retrieval layout (img_emb/, text_emb/, metadata/)")
    parser.add_argument("--judge", type=Path, default=None,
                        help="our judge folder or a local transformers CLIP folder (default: the preset's judge)")
    parser.add_argument("--preset", default="cpu", help="whose judge to use without --judge (default cpu)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help=f"asset cache (default {DEFAULT_CACHE})")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--save-every", type=int, default=20, metavar="BATCHES")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--quiet", action="store_true")
    add_mix_options(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    check_scalar(args.batch_size, "--batch-size", low=1, integer=True)
    check_scalar(args.save_every, "--save-every", low=1, integer=True)
    if args.out.suffix not in ("", ".npz") and not args.out.is_dir():
        raise InputError(f"--out must end in .npz (one file), or name a folder without a suffix (the clip-retrieval "
                         f"layout), got {args.out}")
    layout = args.out.suffix != ".npz"
    _check_inputs(args, layout)
    check_mix_options(args)
    import torch

    from implosion_base.validate import torch_device

    args.device = str(torch_device(torch, args.device))
    if dry_run(args, "python -m empirical.embed", {
            "input": (f"the training mix of {args.mix} poisons, C_P {args.poisoned_concepts}, p "
                      f"{args.poison_per_concept}, seed {args.seed}" if args.mix else
                      "the preset's clean pairs" if args.builtin else ", ".join(map(str, args.inputs))),
            "judge": args.judge or f"the {args.preset} preset's", "out": args.out,
            "writes": "the clip-retrieval layout, one partition per input" if layout else "one .npz",
            "device": args.device}):
        return 0
    if layout:
        with hold_output(args.out):  # one writer of this folder at a time
            return _embed_layout(args)
    check_output_file(args.out, name="--out")
    with hold_output(args.out, folder=False):  # one writer of this file (and its resume checkpoint) at a time
        return _embed(args)


def _check_inputs(args, layout: bool) -> None:
    """One-line errors for the inputs and --out, before anything is loaded."""
    if layout:
        if args.builtin or args.mix:
            raise InputError("--builtin and --mix write one .npz; give --out a name ending in .npz")
        if not args.inputs:
            raise InputError("give the webdataset tars or image-text folders to embed into --out")
        if args.out.exists() and not args.out.is_dir():
            raise InputError(f"--out {args.out} is a file; the clip-retrieval layout is a folder")
        for p in args.inputs:
            if not p.exists():
                raise InputError(f"{p} does not exist (a webdataset tar or an image-text folder)")
            if p.is_dir():
                metadata_file(p)
            elif not p.is_file() or not p.name.endswith((".tar", ".tar.gz", ".tgz")):
                raise InputError(f"{p}: not a webdataset tar (.tar) nor an image-text folder")
        return
    if len(args.inputs) > 1:
        raise InputError("one image folder per .npz; give --out a folder to embed several inputs (the "
                         "clip-retrieval layout)")
    args.folder = args.inputs[0] if args.inputs else None
    if (args.folder is None) == (not args.builtin):
        raise InputError("give an image folder or --builtin (not both)")
    if args.out.is_dir():
        raise InputError(f"--out {args.out} is a folder; name the .npz file to write")
    if not args.builtin:
        if not args.folder.is_dir():
            raise InputError(f"image folder {args.folder} does not exist")
        metadata_file(args.folder)


def _embed_layout(args) -> int:
    """Every input as one partition of the clip-retrieval layout in ``args.out``."""
    from empirical.shard_embedding import embed_partitions

    log = (lambda m: None) if args.quiet else (lambda m: print(m, file=sys.stderr, flush=True))
    embedder = load_embedder(args.judge, args.preset, args.cache, args.device, log=log)
    counts = embed_partitions(list(args.inputs), embedder, args.out, batch_size=args.batch_size, log=log)
    print(f"{sum(counts)} pairs in {len(counts)} partitions -> {args.out} (img_emb/, text_emb/, metadata/); "
          f"next: python -m dataset_audit {args.out} --out DIR")
    return 0


def _embed(args) -> int:
    """The embedding proper, once ``args.out`` is held."""
    log = (lambda m: None) if args.quiet else (lambda m: print(m, file=sys.stderr, flush=True))
    progress = Progress.choose(quiet=args.quiet)
    quiet_library_bars(progress)
    if args.mix:
        arrays = embed_mix(args, args.cache, log=log)
        print(f"{len(arrays['concept'])} pairs of the mix ({int(arrays['is_poison'].sum())} {args.mix} poisons) "
              f"embedded -> {args.out}; next: python -m dataset_audit --validate-mix {args.out} --out DIR")
        return 0
    if args.builtin:
        arrays = embed_builtin(args.preset, args.cache, args.out, args.judge, args.device, log=log)
        print(f"{len(arrays['concept'])} clean pairs of preset {args.preset} embedded "
              f"({arrays['text'].shape[1]}-d) -> {args.out}")
        return 0
    embedder = load_embedder(args.judge, args.preset, args.cache, args.device, log=log)
    arrays = embed_folder(args.folder, embedder, args.out, batch_size=args.batch_size, save_every=args.save_every,
                          fmt=FolderFormat(args.image_column, args.caption_column),
                          progress=progress)
    print(f"{len(arrays['line'])} pairs embedded ({arrays['text'].shape[1]}-d) -> {args.out}; "
          f"next: python -m theory.ad {args.out}")
    return 0


def cli() -> None:
    """The ``implosion-embed`` console script: :func:`main` behind the one-line error boundary."""
    run_main(main, prog="implosion-embed")


if __name__ == "__main__":
    run_main(main, prog="python -m empirical.embed")
