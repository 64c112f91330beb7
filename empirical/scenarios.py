"""The registry of training scenarios: where a point's UNet starts and how its poisoned phase trains
(docs/design.md, "Extending").

A scenario is a function ``(Start) -> (unet, TrainConfig)`` registered in :data:`SCENARIOS` under the name that
``--scenario`` takes; it returns the UNet the point trains (with its initial weights, adapters attached) and the
training config of the phase. :func:`empirical.point.train_point` then trains it on the point's mix.

- ``scratch``: an initialisation drawn with the point's seed, trained for the preset's ``scratch`` phase;
- ``continuous``: the clean pretraining of ``--base-seed`` (the one base model, like a released checkpoint, shared
  by every seed; or a ``--pretrained`` folder's UNet as loaded), fully fine-tuned for the ``continued`` phase;
- ``lora``: the same base model, frozen, with LoRA adapters (``preset.lora``) trained for the ``continued`` phase.

The point's seed draws the poisoned phase (batches, noise; ``seed + 1``) and the adapters' initialisation
(``seed + 2``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from empirical.assets import Assets, fresh_unet, pretrained_state
from empirical.lora import add_lora
from empirical.train import TrainConfig
from implosion_base.progress import Progress


@dataclass(frozen=True)
class Start:
    """What a scenario may use: the shared assets, the point's seed, the base model's seed, the cache."""

    assets: Assets
    seed: int
    base_seed: int = 0
    cache_dir: Path | None = None
    progress: Progress | bool = False


def base_model(start: Start):
    """The base model of continuous and LoRA: our clean pretraining of ``base_seed`` (cached), or the
    ``--pretrained`` folder's UNet as loaded."""
    unet = fresh_unet(start.assets, start.base_seed)
    if start.assets.instruments.base is None:
        unet.load_state_dict(pretrained_state(start.assets, start.base_seed, start.cache_dir, progress=start.progress))
    return unet


def scratch(start: Start) -> tuple[Any, TrainConfig]:
    return fresh_unet(start.assets, start.seed), TrainConfig(**{**asdict(start.assets.preset.scratch),
                                                                 "seed": start.seed})


def continuous(start: Start) -> tuple[Any, TrainConfig]:
    return base_model(start), TrainConfig(**{**asdict(start.assets.preset.continued), "seed": start.seed + 1})


def lora(start: Start) -> tuple[Any, TrainConfig]:
    unet, cfg = continuous(start)
    add_lora(unet, start.assets.preset.lora, seed=start.seed + 2)
    return unet, cfg


SCENARIOS: dict[str, Callable[[Start], tuple[Any, TrainConfig]]] = {
    "scratch": scratch, "continuous": continuous, "lora": lora}
