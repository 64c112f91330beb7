"""Learning-rate schedules: the VAE's and judge's (:func:`warmup_cosine`) and the UNet's (:func:`lr_factor`: ours
or one of diffusers' ``get_scheduler``, ``--lr-scheduler``)."""

from __future__ import annotations

import math
from typing import Callable


def warmup_cosine(step: int, total: int, warmup_fraction: float = 0.1) -> float:
    """LR factor at ``step`` of ``total``: linear warm-up over w = max(1, ⌊warmup_fraction·total⌋) steps,
    then cosine decay, f(s) = min(1, (s+1)/w) · ½(1 + cos(π·s/total))."""
    w = max(1, int(warmup_fraction * total))
    return min(1.0, (step + 1) / w) * 0.5 * (1.0 + math.cos(math.pi * step / max(1, total)))


#: Learning-rate schedules: ours (``warmup_constant``) and those of diffusers' ``get_scheduler``.
LR_SCHEDULERS: tuple[str, ...] = ("warmup_constant", "constant", "constant_with_warmup", "linear", "cosine",
                                  "cosine_with_restarts", "polynomial")
#: Schedules whose factor at a step does not depend on the run's length.
LENGTH_FREE: tuple[str, ...] = ("warmup_constant", "constant", "constant_with_warmup")


def lr_factor(cfg) -> Callable[[int], float]:
    """The factor of ``cfg.lr`` at step k (``cfg`` an :class:`empirical.train.TrainConfig`): min(1, (k+1)/warmup)
    for ``warmup_constant`` (the step being taken counts, so step 0 learns), else diffusers'
    ``get_scheduler(name, num_warmup_steps=warmup, num_training_steps=steps)`` at k, exactly as diffusers'
    training scripts step it (its factor is 0 at k = 0 with a warm-up)."""
    if cfg.lr_scheduler == "warmup_constant":
        return lambda k: min(1.0, (k + 1) / max(1, cfg.warmup))
    import torch
    from diffusers.optimization import get_scheduler

    # the factor may depend on the peak rate itself (polynomial decays to an absolute lr_end): build it at cfg.lr
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=cfg.lr)
    return get_scheduler(cfg.lr_scheduler, opt, num_warmup_steps=cfg.warmup,
                         num_training_steps=cfg.steps).lr_lambdas[0]
