"""The command line of ``python -m empirical.run`` (:mod:`empirical.run`): every option, in groups — what to
poison, the model, training in diffusers' words (their underscore spellings too: :class:`implosion_base.cli.
ArgumentParser`), a user's data, the base model and runtime, outputs."""

from __future__ import annotations

from pathlib import Path

from empirical.folder_data import CROPS
from empirical.poison_kinds import POISON_KINDS
from empirical.presets import DEFAULT_CACHE, MIXED_PRECISION, PRESETS
from empirical.scenarios import SCENARIOS
from empirical.schedule import LR_SCHEDULERS
from empirical.tracking import REPORT_TO
from implosion_base.cli import ArgumentParser, path_arg
from theory.poisoning import TARGET_RULES


def _poison_options(parser: ArgumentParser) -> None:
    """What to poison and how: preset, scenario, C_P, p, poison kind and its knobs, targets, seeds."""
    parser.add_argument("--preset", default="smoke", help=f"experiment size: {', '.join(PRESETS)} (default smoke)")
    parser.add_argument("--scenario", default="continuous", help=f"{', '.join(SCENARIOS)} (default continuous)")
    parser.add_argument("--poisoned-concepts", default=None, metavar="LIST",
                        help="C_P values, e.g. 0,25,50,100 or 0..100:25 (default: 0 and K/6, K/3, 2K/3 of the "
                             "preset's K concepts, i.e. 0,25,50,100 for cpu, 0,2,4,8 for smoke)")
    parser.add_argument("--poison-per-concept", type=int, default=None, metavar="P",
                        help="dirty-label pairs per poisoned concept (default: the preset's)")
    parser.add_argument("--poison-type", default="dirty", help=f"{', '.join(POISON_KINDS)} (default dirty)")
    parser.add_argument("--epsilon", type=float, default=None,
                        help="nightshade: L-infinity budget on the [0, 1] pixel scale (default: the preset's, 0.05)")
    parser.add_argument("--pgd-steps", type=int, default=None,
                        help="nightshade: signed-gradient steps per image (default: the preset's)")
    parser.add_argument("--lora-rank", "--rank", dest="lora_rank", type=int, default=None,
                        help="lora: adapter rank (default: the preset's, 8; --rank is diffusers' name)")
    parser.add_argument("--targets", default="poisoned",
                        help=f"poison target rule: {', '.join(TARGET_RULES)} (default poisoned: targets among the "
                             "poisoned concepts; 'all' is the old spelling of random)")
    parser.add_argument("--seeds", "--seed", dest="seeds", default="0", metavar="LIST",
                        help="seeds, a list: 0, 0,1,2 or 0..2 (default 0; --seed is the older name)")
    parser.add_argument("--base-seed", type=int, default=0,
                        help="seed of the clean pretraining that continuous and lora start from, shared by all "
                             "--seeds (default 0); scratch ignores it")


def _model_options(parser: ArgumentParser) -> None:
    """The real model and its training: K, UNet width, steps, benign pairs per concept."""
    g = parser.add_argument_group("model and training")
    g.add_argument("--n-concepts", "--concepts", dest="concepts", type=int, default=None,
                   help="K, the number of concepts (default: the preset's; --concepts is the older name)")
    g.add_argument("--unet-channels", default=None, metavar="LIST",
                   help="UNet channels per level, e.g. 32,64 (default: the preset's)")
    g.add_argument("--steps", "--max-train-steps", dest="steps", type=int, default=None,
                   help="optimiser steps of the poisoned phase (default: the preset's; --max-train-steps is "
                        "diffusers' name)")
    g.add_argument("--fonts", default=None, metavar="LIST",
                   help="the emoji data set's fonts, e.g. openmoji,noto or openmoji (default: the preset's, "
                        "openmoji,noto); each must be installed (Noto: Debian fonts-noto-color-emoji), and another "
                        "list is another data set")
    g.add_argument("--benign-per-concept", type=int, default=None, metavar="M",
                   help="clean pairs per concept in the poisoned phase's mix (default: every render, the "
                        "preset's per_concept); the clean pretraining keeps every render")


def _training_options(parser: ArgumentParser) -> None:
    """diffusers' training vocabulary (train_text_to_image.py): each applies to the poisoned phase (continued,
    LoRA, scratch) and is part of the folder's setting; ``--learning_rate`` etc. are accepted too."""
    g = parser.add_argument_group("training, in diffusers' words (the poisoned phase; underscore spellings work)")
    g.add_argument("--learning-rate", type=float, default=None, metavar="LR",
                   help="peak learning rate (default: the preset's, 1e-3)")
    g.add_argument("--train-batch-size", type=int, default=None, metavar="N",
                   help="pairs per batch (per process; default: the preset's)")
    g.add_argument("--gradient-accumulation-steps", type=int, default=None, metavar="N",
                   help="batches per optimiser step: the effective batch is N x the batch size x processes "
                        "(default 1)")
    g.add_argument("--lr-scheduler", default=None, choices=LR_SCHEDULERS,
                   help="learning-rate schedule: warmup_constant (ours: (k+1)/warmup, then constant) or one of "
                        "diffusers' get_scheduler (default: warmup_constant)")
    g.add_argument("--lr-warmup-steps", type=int, default=None, metavar="N",
                   help="warm-up steps of the schedule (default: the preset's)")
    g.add_argument("--resolution", type=int, default=None, metavar="PX",
                   help="image side in pixels: renders, a --train-data-dir's images and a --pretrained model train "
                        "at it (default: the preset's, or the base model's)")
    g.add_argument("--crop", default="center", choices=CROPS,
                   help="--train-data-dir: how an image becomes square before resizing: center, or random (drawn "
                        "once per image; latents are encoded once) (default center)")
    g.add_argument("--center-crop", dest="crop", action="store_const", const="center",
                   help="diffusers' flag: the same as --crop center (ours by default)")


def _data_options(parser: ArgumentParser) -> None:
    """A user's own image-text folder instead of the emoji renders."""
    g = parser.add_argument_group("your own data (--train-data-dir)")
    g.add_argument("--train-data-dir", type=Path, default=None, metavar="DIR",
                   help="your own image-text folder instead of the emoji renders (metadata.jsonl or .csv, at the "
                        "top or in train/; empirical.folder_data); needs --concepts-file or --caption-template")
    g.add_argument("--dataset-name", default=None, metavar="NAME",
                   help="a data set as datasets.load_dataset(NAME, split='train') reads it, offline: a local folder "
                        "it reads without a script, or a hub data set already in the local cache "
                        "(empirical.hub_data); image column --image-column or 'image', captions --caption-column "
                        "or a class label's name")
    g.add_argument("--concepts-file", type=Path, default=None, metavar="FILE",
                   help="--train-data-dir: concept names, one per line; a pair belongs to the concept its "
                        "caption names")
    g.add_argument("--caption-template", default=None, metavar="TEMPLATE",
                   help="--train-data-dir: captions of the form 'a photo of a {}'; the braces are the concept")
    g.add_argument("--image-column", default="file_name", help="--train-data-dir: metadata column of the image "
                                                               "path (default file_name)")
    g.add_argument("--caption-column", default="text", help="--train-data-dir: metadata column of the caption "
                                                            "(default text)")


def _base_options(parser: ArgumentParser) -> None:
    """A Stable Diffusion folder as the base model, a CLIP judge, precision and device."""
    g = parser.add_argument_group("base model, judge and runtime")
    g.add_argument("--judge", type=Path, default=None, metavar="DIR",
                   help="a local transformers CLIP folder as the judge (default: a judge trained here on clean "
                        "renders)")
    g.add_argument("--pretrained", "--pretrained-model-name-or-path", dest="pretrained", type=Path, default=None,
                   metavar="DIR",
                   help="a local diffusers Stable Diffusion folder as the base model of continuous or lora "
                        "(safetensors only; its VAE, CLIP text encoder, UNet and schedule replace ours)")
    g.add_argument("--variant", default=None,
                   help="--pretrained: the weight variant to load, e.g. fp16 for *.fp16.safetensors (held as "
                        "float32)")
    g.add_argument("--mixed-precision", default=None, choices=MIXED_PRECISION,
                   help="training precision of every phase (default: the launcher's, e.g. accelerate launch "
                        "--mixed_precision bf16, else the preset's)")
    g.add_argument("--device", default=None,
                   help="cpu, cuda, cuda:N or mps (default: cpu under accelerate launch --cpu, else the "
                        "preset's)")


def _output_options(parser: ArgumentParser) -> None:
    """Controls, what is kept, where it goes, threads, progress."""
    g = parser.add_argument_group("outputs")
    g.add_argument("--no-control", action="store_true", help="skip the same-volume correctly-labelled controls")
    g.add_argument("--control", default="own", choices=("own", "matched"),
                   help="the control of each poisoned point: own = as many pairs of each poisoned concept's own "
                        "images, captioned correctly (default); matched = the poison's very images, each captioned "
                        "with the concept it shows (matches the poison in everything but the label)")
    g.add_argument("--keep-models", action="store_true", help="save each point's pipeline under OUT/models/")
    g.add_argument("--track-attention", action="store_true",
                   help="at every training checkpoint, record the grid concepts' cross-attention statistics "
                        "and judge readings into OUT/attention_track.csv")
    g.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help=f"asset cache (default {DEFAULT_CACHE})")
    g.add_argument("--out", "--output-dir", dest="out", type=path_arg, default=Path("results/empirical"),
                   help="output folder (--output-dir is diffusers' name)")
    g.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    g.add_argument("--report-to", default="none", choices=REPORT_TO,
                   help="where training signals go while it trains (accelerate's trackers; one run per point): "
                        "tensorboard (event files under OUT/logs/, offline; needs tensorboardX), wandb (when "
                        "installed and configured) or none (default none)")
    g.add_argument("--validation-prompt", action="append", default=None, metavar="TEXT",
                   help="a prompt sampled at every checkpoint and read by the judge (repeatable; default: two "
                        "never-poisoned sentinel concepts and two poisoned ones); images and readings go to "
                        "OUT/validation/, a line to stderr and the tracker")
    g.add_argument("--no-validation", action="store_true", help="sample no validation prompts at checkpoints")
    g.add_argument("--validation-images", type=int, default=None, metavar="N",
                   help="images per validation prompt and checkpoint (default: the preset's, 2; micro 0: off)")
    g.add_argument("--quiet", action="store_true",
                   help="no progress: without it a terminal shows bars, and a file (nohup, SLURM, CI) gets a line "
                        "per phase and at least every 30 s of training (step, loss, steps/s, ETA)")


def parser(description: str, prog: str = "python -m empirical.run") -> ArgumentParser:
    """``python -m empirical.run``'s parser (``description``: the command's first docstring paragraph); the probe
    (:mod:`empirical.probe`) shows the same options under its own ``prog``."""
    parser = ArgumentParser(prog=prog, description=description)
    for add in (_poison_options, _model_options, _training_options, _data_options, _base_options, _output_options):
        add(parser)
    return parser


def training_summary(exp) -> str:
    """The poisoned phase's optimisation in diffusers' words."""
    cfg = exp.preset.scratch if exp.scenario == "scratch" else exp.preset.continued
    accumulate = (f" x {cfg.gradient_accumulation_steps} accumulated" if cfg.gradient_accumulation_steps > 1
                  else "")
    return (f"{cfg.steps} steps, batch {cfg.batch_size}{accumulate}, learning rate {cfg.lr:g} "
            f"({cfg.lr_scheduler}, {cfg.warmup} warm-up steps)")
