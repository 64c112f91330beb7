"""The audit validated on known truth: real training mixes embedded with their poison mask
(``empirical.embed --builtin --mix``) and scored by ``dataset_audit --validate-mix``; the dirty-label mixes made
in embedding space (``--validate``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dataset_audit.validation import MIX_ARRAYS, validate, validate_mixes
from dataset_audit.config import AuditConfig
from simulate.concepts import ConceptConfig, make_space
from simulate.poison import PoisonConfig, benign_pairs, plan_for_space, poison_pairs

ROOT = Path(__file__).resolve().parents[1]


def _mix_file(path: Path, c_p: int, kind: str = "dirty", k: int = 12, m: int = 25, p: int = 15) -> list[int]:
    """A mix file as empirical.embed --mix writes it, from the simulator's space (well separated concepts);
    returns the poisoned concepts."""
    space = make_space(ConceptConfig(n_concepts=k, dim=32, separation=0.95, text_spread=0.2, image_spread=0.3), 0)
    t, v, lab = benign_pairs(space, m, 0)
    cfg = PoisonConfig(poison_per_concept=p, kind="dirty" if kind == "dirty" else "shift", shift=0.3)
    plan = plan_for_space(space, cfg, 0)
    chosen = [int(c) for c in plan.order[:c_p]]
    extra = [poison_pairs(space, plan, cfg, c, 0) for c in chosen]
    text = np.concatenate([t, *(e[0] for e in extra)])
    image = np.concatenate([v, *(e[1] for e in extra)])
    concept = np.r_[lab, np.repeat(chosen, p)].astype(np.int64)
    names = np.array([f"thing{c:02d}" for c in range(k)])
    np.savez(path, text=text, image=image, concept=concept, caption=np.array([f"a photo of a {names[c]}" for c in concept]),
             is_poison=np.r_[np.zeros(len(t), bool), np.ones(c_p * p, bool)], poisoned=np.array(chosen, np.int64),
             poison_type=np.array(kind), names=names)
    return chosen


def test_mixes_with_their_truth_are_scored():
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        paths = [Path(d) / f"mix-{c}.npz" for c in (0, 3)]
        _mix_file(paths[0], 0)
        _mix_file(paths[1], 3)
        rows = validate_mixes(paths, AuditConfig(predict=False))
    clean, poisoned = rows
    assert clean["c_p"] == 0 and clean["flagged"] == 0 and clean["estimated_c_p"] == 0 and clean["p"] == 0
    assert poisoned["c_p"] == 3 and poisoned["p"] == 15 and poisoned["poison_type"] == "dirty"
    assert poisoned["precision"] > 0.9 and poisoned["recall"] > 0.9
    assert poisoned["ap_of_score"] > 3 * 45 / 345  # ranking by the AD share: well above the base rate
    assert poisoned["estimated_c_p"] == 3 == poisoned["poisoned_found"] and poisoned["false_concepts"] == 0
    assert abs(poisoned["estimated_p"] - 15) <= 2


def test_validation_in_embedding_space_matches_its_truth(tmp_path: Path):
    """Dirty-label mixes of 10 concepts x 30 pairs, 4 poisoned with 20 pairs each, drawn with seeds 0-9 (one draw
    is a sample: recall over draws runs 0.87-1.00 and p-hat 19-21 with this generator as with the audit's earlier
    one): every mix finds C_P within one, p within one, and recall averages above 0.93."""
    space = make_space(ConceptConfig(n_concepts=10, dim=32, separation=0.95, text_spread=0.2, image_spread=0.3), 1)
    t, v, lab = benign_pairs(space, 30, 1)
    np.savez(tmp_path / "clean.npz", text=t, image=v, concept=lab)
    rows = validate(tmp_path / "clean.npz", [0, 4], 20, AuditConfig(predict=False))
    assert [r["c_p"] for r in rows] == [0, 4] and rows[0]["flagged"] == 0
    draws = [validate(tmp_path / "clean.npz", [4], 20, AuditConfig(predict=False), seed=s)[0] for s in range(10)]
    assert all(abs(r["estimated_c_p"] - 4) <= 1 and abs(r["estimated_p"] - 20) <= 1 for r in draws)
    assert sum(r["estimated_c_p"] == 4 for r in draws) >= 9 and np.mean([r["recall"] for r in draws]) > 0.93


def test_a_mix_file_without_its_truth_is_refused_in_one_line(tmp_path: Path):
    np.savez(tmp_path / "m.npz", text=np.eye(4), image=np.eye(4))
    r = subprocess.run([sys.executable, "-m", "dataset_audit", "--validate-mix", str(tmp_path / "m.npz"), "--out",
                        str(tmp_path / "o"), "--no-predict"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert "m.npz" in r.stderr and "caption" in r.stderr and not (tmp_path / "o" / "validation.csv").exists()
    assert set(MIX_ARRAYS) >= {"is_poison", "poisoned"}


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["dirty", "nightshade"])
def test_embedded_mix_is_the_run_s_mix_with_its_truth(tmp_path: Path, kind):
    """empirical.embed --builtin --mix on the micro preset: the clean pairs then C_P·p poison pairs captioned as
    their poisoned concept (the plan's first C_P), marked in is_poison; dirty-label poisons show their target's
    clean renders (same judge embedding), Nightshade ones new pixels."""
    from empirical.assets import prepare_assets
    from empirical.poisons import harness_plan
    from empirical.presets import get_preset

    out = tmp_path / "mix.npz"
    r = subprocess.run([sys.executable, "-m", "empirical.embed", "--builtin", "--preset", "micro", "--mix", kind,
                        "--poisoned-concepts", "2", "--poison-per-concept", "3", "--seed", "1", "--out", str(out),
                        "--cache", str(tmp_path / "c"), "--quiet"], cwd=ROOT, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr
    a = np.load(out)
    assets = prepare_assets(get_preset("micro"), tmp_path / "c")
    n = len(assets.data)
    plan = harness_plan(assets.data.names, "poisoned", seed=1)
    assert list(a["poisoned"]) == plan.poisoned(2) and str(a["poison_type"]) == kind
    assert a["is_poison"].sum() == 6 and not a["is_poison"][:n].any()
    assert list(a["concept"][n:]) == [c for c in plan.poisoned(2) for _ in range(3)]
    assert np.allclose(a["image"][:n], assets.instruments.judge.embed_images(assets.data.images), atol=1e-5)
    targets = dict(plan.pairs(2))
    clean_by_concept = {c: assets.instruments.judge.embed_images(assets.data.images[assets.data.labels == c]) for c in targets.values()}
    for row, a_concept in zip(a["image"][n:], a["concept"][n:]):
        near = np.max(clean_by_concept[targets[int(a_concept)]] @ row)
        assert (near > 0.9999) == (kind == "dirty")


def test_the_simulator_s_clean_set_is_a_validation_source():
    rows = validate("sim:12x25", [0, 3], 40, AuditConfig(predict=False))
    assert rows[0]["flagged"] == 0 and rows[1]["estimated_c_p"] == 3 and rows[1]["recall"] > 0.9
    assert rows[1]["source"].startswith("the simulator's default space, K = 12, m = 25")
    from implosion_base.errors import InputError

    with pytest.raises(InputError, match="sim:KxM"):
        validate("sim:twelve", [0], 10, AuditConfig(predict=False))
