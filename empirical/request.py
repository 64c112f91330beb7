"""From ``python -m empirical.run``'s arguments to an :class:`empirical.experiment.Experiment`: every argument
checked, and the inputs that can be wrong (a base model, a judge, a user's folder) loaded, before anything is
written — a bad one is one :class:`implosion_base.errors.InputError` naming it."""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Sequence

import numpy as np

from empirical.experiment import Experiment
from empirical.poison_kinds import POISON_KINDS
from theory.poisoning import target_rule
from empirical.presets import default_poisoned_concepts, get_preset, with_overrides, with_runtime
from empirical.scenarios import SCENARIOS
from empirical.tracking import check_report_to
from empirical.validation import Signals
from implosion_base.errors import InputError
from implosion_base.cli import parse_int_list, parse_seeds
from implosion_base.validate import check_scalar, check_threads, torch_device


def _choice(value: str, choices: Sequence[str], what: str) -> str:
    if value not in choices:
        raise InputError(f"unknown {what} {value!r}; choose from {', '.join(choices)}")
    return value


def _channels(spec: str | None) -> tuple[int, ...] | None:
    """``"32,64"`` -> (32, 64), in the order given (InputError for anything else)."""
    try:
        channels = None if spec is None else tuple(int(x) for x in spec.split(","))
    except ValueError:
        raise InputError(f"--unet-channels must be a comma list of integers, e.g. 32,64; got {spec!r}") from None
    for c in channels or ():
        check_scalar(c, "--unet-channels (each)", low=1, high=4096, integer=True)
    return channels


def _fonts(spec: str | None) -> tuple[str, ...] | None:
    """``"openmoji,noto"`` -> ("openmoji", "noto"): known names, each once (InputError otherwise); every one
    installed is checked when the data set is drawn (:func:`empirical.data.available_fonts`)."""
    from empirical.data import FONT_NAMES, available_fonts

    if spec is None:
        return None
    names = tuple(x.strip() for x in spec.split(",") if x.strip())
    bad = [n for n in names if n not in FONT_NAMES]
    if bad or not names or len(set(names)) != len(names):
        raise InputError(f"--fonts must list {' and/or '.join(FONT_NAMES)}, each once; got {spec!r}")
    available_fonts(names)  # a missing font stops here, before anything is written
    return names


def _check_numbers(args) -> None:
    # upper ends: what numpy's and torch's seeds take, and sizes that could never be allocated or run
    for name, value, low, high in (("--n-concepts", args.concepts, 2, 100_000), ("--steps", args.steps, 1, 10**9),
                                   ("--base-seed", args.base_seed, 0, 2**32 - 1),
                                   ("--poison-per-concept", args.poison_per_concept, 0, 1_000_000),
                                   ("--train-batch-size", args.train_batch_size, 1, 1_000_000),
                                   ("--gradient-accumulation-steps", args.gradient_accumulation_steps, 1, 1_000_000),
                                   ("--lr-warmup-steps", args.lr_warmup_steps, 0, 10**9),
                                   ("--resolution", args.resolution, 8, 4096)):
        if value is not None:
            check_scalar(value, name, low=low, integer=True)
            if value > high:
                raise InputError(f"{name} must be at most {high:,}, got {value:,}")
    if args.learning_rate is not None:
        check_scalar(args.learning_rate, "--learning-rate", low=0.0, low_open=True, high=10.0)
    check_threads(args.threads)
    if args.device is not None:
        import torch

        torch_device(torch, args.device)


def _check_data_options(args) -> None:
    """The options that name a user's data are given together, and only with --train-data-dir or
    --dataset-name (one of the two)."""
    if args.train_data_dir is not None and args.dataset_name is not None:
        raise InputError("--train-data-dir and --dataset-name both name the training data; give one")
    if args.dataset_name is not None:
        if args.concepts is not None:
            raise InputError("--n-concepts: with --dataset-name the concepts are the data's")
        if args.concepts_file and args.caption_template:
            raise InputError("--concepts-file and --caption-template both name the concepts; give one")
        return
    if args.train_data_dir is None:
        if args.concepts_file or args.caption_template:
            raise InputError("--concepts-file and --caption-template name the concepts of --train-data-dir; there "
                             "is none")
        if not (args.image_column == "file_name" and args.caption_column == "text"):
            raise InputError("--image-column and --caption-column read --train-data-dir; there is none")
        if args.crop != "center":
            raise InputError("--crop random crops the images of --train-data-dir; there is none (renders are drawn "
                             "at the resolution)")
        return
    if args.concepts is not None:
        raise InputError("--n-concepts: with --train-data-dir the concepts are the data's")
    if args.concepts_file is None and args.caption_template is None:
        from empirical.folder_data import CLASS_TEMPLATE, metadata_file

        if metadata_file(args.train_data_dir).is_dir():  # class subfolders: the concept is the subfolder
            args.caption_template = CLASS_TEMPLATE
    if (args.concepts_file is None) == (args.caption_template is None):
        raise InputError("--train-data-dir needs its concepts: --concepts-file FILE or --caption-template "
                         "'a photo of a {}' (one of the two; a folder of class subfolders names its own)")


def _inputs(args, preset):
    """Load (and so validate, before anything is written) the base model, the judge and the user's data; returns
    them with the preset adapted to them (image size of the base model, K and m of the user's data)."""
    from empirical.folder_data import FolderFormat, concept_data_from_folder
    from implosion_base.captions import read_concepts_file
    from implosion_base.files import content_key

    pretrained = judge_key = user_data = None
    if args.pretrained is not None:
        if args.scenario == "scratch":
            raise InputError("--pretrained is the base model of continuous and lora; scratch trains from an "
                             "initialisation and would not use it")
        from empirical.pretrained import load_base

        pretrained = load_base(args.pretrained, device=preset.device, variant=args.variant)
        size = pretrained[0].image_size if args.resolution is None else base_resolution(pretrained, args.resolution)
        preset = replace(preset, render=replace(preset.render, size=size))
    if args.judge is not None:
        from empirical.judge import load_clip

        load_clip(args.judge)
        judge_key = "clip:" + content_key(args.judge)  # its weights too, not only its config
    if args.train_data_dir is not None:
        names = read_concepts_file(args.concepts_file) if args.concepts_file else None
        user_data = concept_data_from_folder(args.train_data_dir, size=preset.render.size, held_out=preset.held_out,
                                             fmt=FolderFormat(args.image_column, args.caption_column, args.crop),
                                             names=names,
                                             template=args.caption_template)
    if args.dataset_name is not None:
        from empirical.hub_data import concept_data_from_hub

        names = read_concepts_file(args.concepts_file) if args.concepts_file else None
        user_data = concept_data_from_hub(args.dataset_name, size=preset.render.size, held_out=preset.held_out,
                                          fmt=FolderFormat(args.image_column, args.caption_column, args.crop),
                                          names=names, template=args.caption_template, cache_dir=args.cache)
    if user_data is not None:  # its K sets the C_P range
        counts = np.bincount(user_data[0].labels)
        preset = replace(preset, render=replace(preset.render, concepts=len(user_data[0].names),
                                                per_concept=int(counts.max())))
    return preset, pretrained, judge_key, user_data


def base_resolution(pretrained: tuple, resolution: int) -> int:
    """``--resolution`` for a ``--pretrained`` model: a multiple of its VAE's downsampling times its UNet's
    (InputError otherwise)."""
    base, vae, _ = pretrained
    step = 2 ** (len(vae.config.block_out_channels) - 1) * 2 ** (len(base.unet_config["block_out_channels"]) - 1)
    if resolution % step:
        raise InputError(f"--resolution {resolution} does not fit {base.path}: it must be a multiple of {step} "
                         f"(VAE and UNet downsampling), e.g. {max(step, resolution // step * step)}")
    return resolution


def resolve(args) -> Experiment:
    """The experiment the arguments ask for, every argument checked (InputError naming the first bad one)."""
    preset = get_preset(args.preset)
    _choice(args.scenario, SCENARIOS, "scenario")
    _choice(args.poison_type, POISON_KINDS, "poison type")
    args.targets = target_rule(args.targets, note=True)
    _check_numbers(args)
    _check_data_options(args)
    if args.variant is not None and args.pretrained is None:
        raise InputError("--variant chooses the weights of a --pretrained folder; there is none")
    training = {"lr": args.learning_rate, "batch_size": args.train_batch_size, "warmup": args.lr_warmup_steps,
                "lr_scheduler": args.lr_scheduler, "gradient_accumulation_steps": args.gradient_accumulation_steps}
    fonts = _fonts(args.fonts)
    if fonts is not None and (args.train_data_dir is not None or args.dataset_name is not None):
        raise InputError("--fonts draws the emoji data set; with your own data there is none to draw")
    preset = with_overrides(preset, steps=args.steps, concepts=args.concepts, fonts=fonts,
                            unet_channels=_channels(args.unet_channels), epsilon=args.epsilon,
                            pgd_steps=args.pgd_steps, lora_rank=args.lora_rank, training=training,
                            resolution=args.resolution if args.pretrained is None else None)
    preset, notes = with_runtime(preset, mixed_precision=args.mixed_precision, device=args.device, environ=os.environ)
    if preset.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise InputError(f"preset {preset.name!r} needs a CUDA GPU and none is available")
    preset, pretrained, judge_key, user_data = _inputs(args, preset)
    k = preset.render.concepts
    c_ps = parse_int_list(args.poisoned_concepts, name="--poisoned-concepts") if args.poisoned_concepts is not None \
        else default_poisoned_concepts(k)
    if max(c_ps) > k:
        raise InputError(f"--poisoned-concepts {max(c_ps)} exceeds the number of concepts ({k})")
    if args.benign_per_concept is not None and not 1 <= args.benign_per_concept <= preset.render.per_concept:
        raise InputError(f"--benign-per-concept must be in 1..{preset.render.per_concept} (the clean pairs per "
                         f"concept), got {args.benign_per_concept}")
    p = preset.poison_per_concept if args.poison_per_concept is None else args.poison_per_concept
    if args.control == "matched" and (args.no_control or args.poison_type != "dirty"):
        raise InputError("--control matched gives a dirty-label poison's images their true captions; it needs "
                         "controls (drop --no-control) and --poison-type dirty")
    if args.no_validation and args.validation_prompt:
        raise InputError("--validation-prompt and --no-validation contradict each other; give one")
    prompts = () if args.no_validation else (tuple(args.validation_prompt) if args.validation_prompt else None)
    if args.validation_images is not None:
        check_scalar(args.validation_images, "--validation-images", low=0, high=64, integer=True)
    per_prompt = preset.validation_images if args.validation_images is None else args.validation_images
    signals = Signals(check_report_to(args.report_to), prompts, max(c_ps), per_prompt)
    return Experiment(preset, args.scenario, c_ps, p, parse_seeds(args.seeds), args.out, args.cache, args.base_seed,
                      args.targets, args.poison_type, args.benign_per_concept, not args.no_control,
                      args.keep_models, args.track_attention, pretrained, args.judge, judge_key, user_data, notes,
                      signals, control=args.control)
