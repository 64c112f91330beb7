"""paper_figures.prediction_figures: the pre-registered scoring rule, applied to hand-made numbers, and the
committed prediction folders readable."""

from __future__ import annotations

import pytest

from paper_figures.prediction_figures import Prediction, load_predictions, score


def _pred() -> Prediction:
    s = {(240, 100): {"unpoisoned_acc": 0.20, "unpoisoned_acc_ci95": 0.10},
         (80, 100): {"unpoisoned_acc": 0.70, "unpoisoned_acc_ci95": 0.05}}
    return Prediction("test", 150, 40, 11, "x.npz", s, {240: "20.6", 80: "none"})


def test_point_and_verdict():
    meas = {(240, 100): {"poisoned": [0.25, 0.27, 0.26], "control": [0.90, 0.92, 0.91]},  # inside the band
            (80, 100): {"poisoned": [0.45], "control": [0.50]},  # below the band; < 0.5 but within 0.1 of control
            (80, 0): {"poisoned": [0.93], "control": []}}  # clean points are not scored
    rows = {(r["p"], r["c_p"]): r for r in score(_pred(), meas)}
    assert set(rows) == {(240, 100), (80, 100)}
    hit = rows[(240, 100)]
    assert hit["point"] == "hit" and hit["measured_implosion"] and hit["verdict"] == "agree"
    assert hit["measured"] == pytest.approx(0.26) and hit["volume"] == pytest.approx(100 * 240 / (150 * 40))
    low = rows[(80, 100)]
    assert low["point"] == "miss, below"
    assert not low["measured_implosion"] and low["verdict"] == "agree"  # neither says implosion


def test_disagreement_when_the_model_holds():
    meas = {(240, 100): {"poisoned": [0.85, 0.80], "control": [0.90, 0.91]}}
    (row,) = score(_pred(), meas)
    assert row["point"] == "miss, above" and row["verdict"] == "disagree"


def test_committed_predictions_load():
    preds = {p.name: p for p in load_predictions()}
    primary = preds["2026-11-30-cpu-preset-m40"]
    assert primary.n_concepts == 150 and primary.benign_per_concept == 40 and primary.dim == 11
    assert {(p, c) for p in (80, 160, 240, 400) for c in (0, 25, 50, 100, 140)} == set(primary.summary)
    assert preds["2026-11-30-cpu-preset-m10"].benign_per_concept == 10


def test_a_variant_prediction_is_scored_only_on_runs_of_that_variant():
    """A prediction for a smaller UNet (``--real-variant``) takes only the runs of that setting difference, the
    preset's own prediction only the preset's own runs — never each other's."""
    from paper_figures.prediction_figures import measured
    from paper_figures.sources import Empirical

    small = "unet.channels: [64, 128] -> [32, 64]"
    base = {"preset": "cpu", "scenario": "continuous", "targets": "poisoned", "poison_type": "dirty",
            "n_concepts": "150", "benign_per_concept": "40", "steps": "500", "poison_per_concept": "240",
            "c_p": "100", "seed": "0"}
    emp = Empirical()
    emp.rows = [{**base, "variant": "", "kind": "poisoned", "unpoisoned_acc": "0.65"},
                {**base, "variant": small, "kind": "poisoned", "unpoisoned_acc": "0.20"},
                {**base, "variant": small, "kind": "control", "unpoisoned_acc": "0.55"},
                {**base, "variant": "lora.rank: 8 -> 4", "kind": "poisoned", "unpoisoned_acc": "0.10"}]
    assert measured(emp, 150, 40)[(240, 100)] == {"poisoned": [0.65], "control": []}
    assert measured(emp, 150, 40, variant=small)[(240, 100)] == {"poisoned": [0.20], "control": [0.55]}
    preds = {p.name: p for p in load_predictions()}
    assert preds["2026-11-30-cpu-preset-small-unet-p240"].real_variant == small
    assert preds["2026-11-30-cpu-preset-small-unet-p240"].real_targets == "poisoned"
    assert preds["2026-11-30-cpu-preset-m40"].real_variant == ""


def test_capacity_points_sort_lora_ranks_and_unet_sizes():
    """F15's data: LoRA ranks by rank (the preset's rank 8 has no variant), then the small and the full UNet; runs
    at other points, target modes, settings or data sets stay out."""
    from paper_figures.prediction_figures import capacity_points
    from paper_figures.sources import Empirical

    base = {"preset": "cpu", "targets": "poisoned", "poison_type": "dirty", "n_concepts": "150", "steps": "500",
            "poison_per_concept": "240", "c_p": "100", "seed": "0", "attack_success": "0.1",
            "data_set": "emoji-openmoji+noto-150"}
    rows = [dict(base, scenario="lora", variant="lora.rank: 8 -> 64", kind="poisoned", unpoisoned_acc="0.49"),
            dict(base, scenario="lora", variant="", kind="poisoned", unpoisoned_acc="0.35"),
            dict(base, scenario="lora", variant="", kind="control", unpoisoned_acc="0.90"),
            dict(base, scenario="lora", variant="lora.rank: 8 -> 1", kind="poisoned", unpoisoned_acc="0.20"),
            dict(base, scenario="continuous", variant="", kind="poisoned", unpoisoned_acc="0.62"),
            dict(base, scenario="continuous", variant="unet.channels: [64, 128] -> [32, 64]", kind="poisoned",
                 unpoisoned_acc="0.30"),
            dict(base, scenario="continuous", variant="", kind="poisoned", targets="all", unpoisoned_acc="0.7"),
            dict(base, scenario="continuous", variant="", kind="poisoned", c_p="50", unpoisoned_acc="0.8"),
            dict(base, scenario="continuous", variant="", kind="poisoned", data_set="emoji-noto-150",
                 unpoisoned_acc="0.9")]  # another data set, even without a variant that says so
    emp = Empirical()
    emp.rows = rows
    pts = capacity_points(emp)
    assert [k.replace("\n", " ") for k in pts] == ["LoRA rank 1", "LoRA rank 8", "LoRA rank 64", "small UNet 1.2 M",
                                                    "full UNet 4.2 M"]
    assert pts["LoRA\nrank 8"]["control"] == [0.90] and pts["full\nUNet\n4.2 M"]["poisoned"] == [0.62]


def test_a_prediction_is_scored_only_on_its_scenario_and_poison_type():
    """A LoRA prediction (``--real-scenario lora``) takes the LoRA runs, a feature-shift one (``--poison-kind
    shift``) the Nightshade-style runs with their controls — never the continuous dirty-label runs."""
    from paper_figures.prediction_figures import measured
    from paper_figures.sources import Empirical

    ns = "nightshade.epsilon: 0.05 -> 0.2"
    base = {"preset": "cpu", "targets": "poisoned", "n_concepts": "150", "benign_per_concept": "40",
            "steps": "500", "poison_per_concept": "240", "c_p": "100", "seed": "0", "variant": ""}
    emp = Empirical()
    emp.rows = [{**base, "scenario": "continuous", "poison_type": "dirty", "kind": "poisoned", "unpoisoned_acc": "0.65"},
                {**base, "scenario": "lora", "poison_type": "dirty", "kind": "poisoned", "unpoisoned_acc": "0.35"},
                {**base, "scenario": "lora", "poison_type": "none", "kind": "control", "unpoisoned_acc": "0.90"},
                {**base, "scenario": "continuous", "poison_type": "nightshade", "kind": "poisoned",
                 "unpoisoned_acc": "0.80", "variant": ns},
                {**base, "scenario": "continuous", "poison_type": "none", "kind": "control",
                 "unpoisoned_acc": "0.91", "variant": ns},
                {**base, "scenario": "scratch", "poison_type": "dirty", "kind": "poisoned", "unpoisoned_acc": "0.5",
                 "steps": "3000"}]
    assert measured(emp, 150, 40, scenario="lora")[(240, 100)] == {"poisoned": [0.35], "control": [0.90]}
    assert measured(emp, 150, 40, variant=ns, poison_type="nightshade")[(240, 100)] == \
        {"poisoned": [0.80], "control": [0.91]}
    assert measured(emp, 150, 40, variant=ns)[(240, 100)] == {"poisoned": [], "control": [0.91]}
    assert measured(emp, 150, 40, scenario="scratch")[(240, 100)] == {"poisoned": [0.5], "control": []}
    preds = {p.name: p for p in load_predictions()}
    lora = preds["2026-11-30-cpu-preset-lora8-volume"]
    assert lora.real_scenario == "lora" and lora.real_targets == "poisoned"  # its scoring.json, said there
    assert preds["2026-11-30-cpu-preset-nightshade-eps0.2-p240"].real_poison_type == "nightshade"
