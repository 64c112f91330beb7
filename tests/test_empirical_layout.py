"""An experiment folder's layout (empirical.layout, empirical.presets): how settings differ, point names, the default
C_P lists."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")
pytest.importorskip("diffusers")


def test_first_difference_names_the_key_and_both_values():
    """Settings compare key by key (nested, sorted); keys only the newer setting has do not count."""
    from empirical.layout import first_difference, setting_difference

    old = {"unet": {"channels": [32, 64], "head_dim": 32}, "steps": 500}
    assert first_difference(old, old) is None and setting_difference(old, dict(old)) == "none"
    new = {"unet": {"channels": [64, 128], "head_dim": 32}, "steps": 500, "added_later": 1}
    assert first_difference(old, new) == ("unet.channels", [32, 64], [64, 128])
    assert setting_difference(old, new) == "unet.channels: [32, 64] -> [64, 128]"
    # a nested dict differing only by a later key is no difference; the next key still counts
    assert first_difference({"a": {"x": 1}, "b": 2}, {"a": {"x": 1, "y": 0}, "b": 3}) == ("b", 2, 3)
    # the data set a run used enters its setting once the data are read: a setting not yet read does not differ
    used = {**old, "data_set": {"data_set_id": "a"}}
    assert first_difference(used, old) is None and first_difference(old, used) is None
    assert first_difference(used, {**old, "data_set": {"data_set_id": "b"}}) == ("data_set.data_set_id", "a", "b")

def test_default_poisoned_concepts_fit_every_preset():
    """The documented `python -m empirical.run --preset smoke` must not fail on a C_P list made for 150 concepts."""
    from empirical.presets import PRESETS, default_poisoned_concepts

    assert default_poisoned_concepts(150) == [0, 25, 50, 100]
    assert default_poisoned_concepts(12) == [0, 2, 4, 8]
    assert default_poisoned_concepts(4, clean=False) == [1, 3]
    for preset in PRESETS.values():
        assert max(default_poisoned_concepts(preset.render.concepts)) < preset.render.concepts

def test_point_names_keep_target_modes_and_poison_types_apart():
    from empirical.layout import point_tag

    assert point_tag("continuous", 0, 100, "poisoned") == "continuous-s0-cp100-poisoned"  # unchanged old names
    names = {point_tag("continuous", 0, 100, k, t, m) for k in ("poisoned", "control")
             for t in ("dirty", "nightshade") for m in ("poisoned", "all", "scatter")}
    assert len(names) == 12
    assert point_tag("continuous", 0, 0, "poisoned", "dirty", "all") == "continuous-s0-cp0-poisoned"
