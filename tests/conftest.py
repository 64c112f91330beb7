"""Test settings: deterministic hypothesis runs, few torch threads, helpers shared by the tests."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "2")

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    derandomize=True,  # same examples every run
    deadline=None,
    max_examples=60,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
