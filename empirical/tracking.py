"""Training signals while a run trains (``--report-to``): accelerate's experiment trackers, one run per point.

``tensorboard`` writes event files under ``OUT/logs/<point>/`` (offline; tensorboardX or tensorboard must be
installed: ``pip install tensorboardX``), readable with ``tensorboard --logdir OUT/logs``; ``wandb`` logs to Weights
& Biases and is accepted only when the package is installed *and* configured (``WANDB_API_KEY`` set, a login in
``~/.netrc``, or ``WANDB_MODE=offline``/``disabled``), so a run never stops half-way on a login prompt; ``none``
logs nothing beyond the run folder's own files. Each point logs its configuration once, ``train/loss`` and
``train/lr`` every step, and at every checkpoint the validation prompts' images and the judge's reading of them
(:mod:`empirical.validation`).
"""

from __future__ import annotations

import os
from pathlib import Path

from implosion_base.errors import InputError

#: The trackers ``--report-to`` takes.
REPORT_TO: tuple[str, ...] = ("none", "tensorboard", "wandb")


def check_report_to(name: str, environ: dict | None = None) -> str:
    """``name`` if that tracker can run here; InputError saying what to install or configure otherwise."""
    import importlib.util

    env = os.environ if environ is None else environ
    if name not in REPORT_TO:
        raise InputError(f"unknown --report-to {name!r}; choose from {', '.join(REPORT_TO)}")
    if name == "tensorboard" and not any(importlib.util.find_spec(m) for m in ("tensorboardX", "tensorboard")):
        raise InputError("--report-to tensorboard needs tensorboardX or tensorboard: pip install tensorboardX")
    if name == "wandb":
        if importlib.util.find_spec("wandb") is None:
            raise InputError("--report-to wandb needs the wandb package: pip install wandb (or use --report-to "
                             "tensorboard, which works offline)")
        netrc = Path(env.get("NETRC", Path.home() / ".netrc"))
        logged_in = netrc.is_file() and "api.wandb.ai" in netrc.read_text(encoding="utf-8", errors="replace")
        if not (env.get("WANDB_API_KEY") or logged_in or env.get("WANDB_MODE") in ("offline", "disabled")):
            raise InputError("--report-to wandb: wandb is not configured here (run `wandb login`, set "
                             "WANDB_API_KEY, or set WANDB_MODE=offline to log to files)")
    return name


def flat_config(values: dict, prefix: str = "") -> dict:
    """Nested settings as one level of ``a/b`` keys with bool, int, float or str values (what trackers store as
    hyperparameters); lists and None become text."""
    out: dict = {}
    for k, v in values.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flat_config(v, key + "/"))
        elif isinstance(v, (bool, int, float, str)):
            out[key] = v
        else:
            out[key] = str(v)
    return out


class Tracker:
    """One point's tracker: ``report_to`` (:data:`REPORT_TO`) under ``logging_dir`` as run ``run_name``, its
    ``config`` stored once. ``none`` is a tracker that logs nothing, so callers never ask."""

    def __init__(self, report_to: str, logging_dir: Path, run_name: str, config: dict) -> None:
        self.report_to, self.tracker = report_to, None
        if report_to == "none":
            return
        if report_to == "tensorboard":
            from accelerate.tracking import TensorBoardTracker

            Path(logging_dir).mkdir(parents=True, exist_ok=True)
            self.tracker = TensorBoardTracker(run_name, str(logging_dir))
        else:
            from accelerate.tracking import WandBTracker

            self.tracker = WandBTracker(run_name, dir=str(logging_dir), name=run_name)
        start = getattr(self.tracker, "start", None)
        if start is not None:  # accelerate ≥ 1.0 starts trackers explicitly
            start()
        self.tracker.store_init_configuration(flat_config(config))

    def log(self, values: dict, step: int) -> None:
        if self.tracker is not None:
            self.tracker.log(values, step=step)

    def log_images(self, values: dict, step: int) -> None:
        """``values``: name -> uint8 images (N, H, W, 3)."""
        if self.tracker is None:
            return
        if self.report_to == "tensorboard":
            self.tracker.log_images(values, step=step, dataformats="NHWC")
        else:
            self.tracker.log_images(values, step=step)

    def finish(self) -> None:
        if self.tracker is not None:
            self.tracker.finish()
            self.tracker = None
