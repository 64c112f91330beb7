"""``dataset_audit`` on training sets whose poisons are known (the simulator's concept space): it flags the
dirty-label pairs, finds the poisoned concepts and their number, gives exact and sampled AD that agree, writes its
report, and refuses bad shards in one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dataset_audit.config import AuditConfig
from dataset_audit.pipeline import audit
from dataset_audit.concept_view import kmeans, silhouette
from dataset_audit.flags import modified_z
from simulate.concepts import ConceptConfig, make_space
from simulate.poison import PoisonConfig, benign_pairs, plan_for_space, poison_pairs
from theory.ad import pair_attribution
from implosion_base.pairs_file import load_side_metadata
from implosion_base.shards import open_shards

ROOT = Path(__file__).resolve().parents[1]
K, M, P, CP = 12, 25, 15, 3


def _poisoned_set(tmp: Path, seed: int = 0) -> tuple[list[Path], np.ndarray, list[int]]:
    """K concepts × M clean pairs + CP poisoned concepts × P dirty-label pairs, in two .npz shards with captions;
    returns the shard paths, the true poison mask and the poisoned concepts."""
    space = make_space(ConceptConfig(n_concepts=K, dim=32), seed)
    t, v, lab = benign_pairs(space, M, seed)
    cfg = PoisonConfig(poison_per_concept=P)
    plan = plan_for_space(space, cfg, seed)
    poisoned = [int(c) for c in plan.order[:CP]]
    ts, vs, labs = [t], [v], [lab]
    for c in poisoned:
        pt, pv = poison_pairs(space, plan, cfg, c, seed)
        ts.append(pt)
        vs.append(pv)
        labs.append(np.full(P, c))
    t, v, lab = np.concatenate(ts), np.concatenate(vs), np.concatenate(labs)
    truth = np.r_[np.zeros(K * M, bool), np.ones(CP * P, bool)]
    caps = np.array([f"a photo of a thing{c:02d}" for c in lab])
    names = np.array([f"{i:05d}.png" for i in range(len(t))])
    half = len(t) // 2
    paths = [tmp / "s0.npz", tmp / "s1.npz"]
    np.savez(paths[0], text=t[:half], image=v[:half], caption=caps[:half], file_name=names[:half])
    np.savez(paths[1], text=t[half:], image=v[half:], caption=caps[half:], file_name=names[half:])
    (tmp / "concepts.txt").write_text("".join(f"thing{c:02d}\n" for c in range(K)))
    return paths, truth, poisoned


def _precision_recall(flagged: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    tp = np.sum(flagged & truth)
    return tp / max(1, flagged.sum()), tp / truth.sum()


@pytest.mark.parametrize("concepts_from", ["names", "clustering"])
def test_exact_audit_finds_the_poisons_and_the_poisoned_concepts(tmp_path: Path, concepts_from):
    paths, truth, poisoned = _poisoned_set(tmp_path)
    src = open_shards(paths)
    names = [f"thing{c:02d}" for c in range(K)] if concepts_from == "names" else None
    res = audit(src, AuditConfig(predict=False), concept_names=names)
    s = res["summary"]
    assert s["ad_mode"] == "exact"
    t, v = src.block(0, src.n)
    assert s["ad"] == pytest.approx(pair_attribution(t, v).result.ad, abs=1e-12)
    # in this CLIP-like space matched and dirty-label cosines overlap: no rule can be perfect per pair
    precision, recall = _precision_recall(res["pairs"]["flagged"], truth)
    assert precision >= 0.8 and recall >= 0.75, (precision, recall)
    assert s["mixture"]["two_populations"] and abs(s["estimated_m"] - M) <= 3
    found = {r["name"] for r in res["concepts"] if r["poisoned"]}
    if concepts_from == "names":
        assert found == {f"thing{c:02d}" for c in poisoned}
        assert s["estimated_c_p"] == CP and abs(s["estimated_p"] - P) <= 3
    else:  # clustering finds about K concepts (text spread splits a few), so C_P is about right
        assert abs(s["n_concepts"] - K) <= 4 and "silhouette" in s["concepts"]["k"]
        assert abs(s["estimated_c_p"] - CP) <= 1


def test_sampled_audit_agrees_with_the_exact_one(tmp_path: Path):
    paths, truth, _ = _poisoned_set(tmp_path, seed=1)
    src = open_shards(paths)
    exact = audit(src, AuditConfig(predict=False, n_concepts=K))
    sampled = audit(src, AuditConfig(predict=False, n_concepts=K, exact_max=10, partners=200))
    lo, hi = sampled["summary"]["ad_ci95"]
    assert sampled["summary"]["ad_mode"] == "sampled" and lo <= exact["summary"]["ad"] <= hi
    a, b = exact["pairs"]["flagged"], sampled["pairs"]["flagged"]
    assert np.array_equal(a, b)  # flags come from the exact pair cosines in both modes
    assert abs(sampled["summary"]["estimated_c_p"] - CP) <= 1


def test_clean_data_flags_almost_nothing_and_no_concept(tmp_path: Path):
    space = make_space(ConceptConfig(n_concepts=K, dim=32), 4)
    t, v, _ = benign_pairs(space, M, 4)
    np.savez(tmp_path / "clean.npz", text=t, image=v)
    res = audit(open_shards([tmp_path / "clean.npz"]), AuditConfig(predict=False, n_concepts=K))
    assert res["summary"]["flagged"] <= 0.02 * len(t) and res["summary"]["estimated_c_p"] == 0


def test_modified_z_kmeans_and_silhouette():
    x = np.r_[np.zeros(50), 10.0]
    assert modified_z(x)[-1] > 3.5 and np.all(modified_z(x)[:-1] <= 0)  # MAD = 0: mean-deviation fallback
    rng = np.random.default_rng(0)
    centres = np.eye(4)
    pts = np.concatenate([c + 0.05 * rng.normal(size=(30, 4)) for c in centres])
    pts /= np.linalg.norm(pts, axis=1, keepdims=True)
    _, labels = kmeans(pts, 4, seed=0)
    assert all(len(set(labels[i * 30:(i + 1) * 30])) == 1 for i in range(4))
    assert silhouette(pts, labels) > 0.8 > silhouette(pts, rng.integers(0, 4, len(pts)))


def test_cli_writes_the_report_with_its_margin_and_warning(tmp_path: Path):
    paths, truth, _ = _poisoned_set(tmp_path)
    out = tmp_path / "audit"
    proc = subprocess.run([sys.executable, "-m", "dataset_audit", *map(str, paths), "--out", str(out),
                           "--concepts-file", str(tmp_path / "concepts.txt"), "--dim", "16"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "estimated C_P 3 of 12" in proc.stdout
    report = json.loads((out / "report.json").read_text())["summary"]
    assert report["margin"]["threshold_c_p"] is not None and "not a measurement" in report["margin"]["warning"]
    md = (out / "report.md").read_text()
    assert "a model, not a measurement" in md and "flag" in md
    rows = (out / "pairs.csv").read_text().splitlines()
    assert rows[0] == "index,shard,file_name,caption,cos,s_i,score,z,rank,p_mismatched,flagged,concept"
    assert len(rows) == 1 + K * M + CP * P and (out / "scores.png").stat().st_size > 1000


@pytest.mark.parametrize("make, message", [
    (lambda d: np.save(d / "text_emb_0000.npy", np.ones((5, 3))), "needs its img_emb_XXXX.npy"),
    (lambda d: np.savez(d / "x.npz", text=np.ones((5, 3)), image=np.ones((4, 3))), "shapes differ"),
    (lambda d: np.savez(d / "x.npz", text=np.full((5, 3), np.nan), image=np.ones((5, 3))), "NaN"),
])
def test_bad_shards_are_one_line_exit_2(tmp_path: Path, make, message):
    make(tmp_path)
    shard = next(p for p in tmp_path.iterdir())
    proc = subprocess.run([sys.executable, "-m", "dataset_audit", str(shard), "--out", str(tmp_path / "o"),
                           "--no-predict", "--n-concepts", "2"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_side_metadata_csv_names_the_pairs_of_npy_shards(tmp_path: Path):
    """LAION-style shards: text_emb_/img_emb_ .npy with a metadata_XXXX.csv beside them (url, caption) give each
    pair its name and caption; ``--metadata`` does the same for all shards at once; a CSV with the wrong number of
    rows, no usable column or bytes that are not UTF-8 is one line naming it, exit 2, nothing written."""
    paths, _, _ = _poisoned_set(tmp_path)
    z = [np.load(p) for p in paths]
    shards = tmp_path / "laion"
    shards.mkdir()
    for k, a in enumerate(z):
        np.save(shards / f"text_emb_{k:04d}.npy", a["text"].astype(np.float16))
        np.save(shards / f"img_emb_{k:04d}.npy", a["image"].astype(np.float16))
        rows = "".join(f"http://x/{f},{c}\n" for f, c in zip(a["file_name"], a["caption"]))
        (shards / f"metadata_{k:04d}.csv").write_text("url,caption\n" + rows)
    src = open_shards([shards])
    assert list(src.labels["file_name"][:2]) == ["http://x/00000.png", "http://x/00001.png"]
    assert list(src.labels["caption"]) == [str(c) for a in z for c in a["caption"]]

    def run(*extra):
        return subprocess.run([sys.executable, "-m", "dataset_audit", str(shards), "--out", str(tmp_path / "o"),
                               "--no-predict", "--n-concepts", "3", *extra], cwd=ROOT, capture_output=True,
                              text=True, timeout=300)

    proc = run()
    assert proc.returncode == 0, proc.stderr
    assert "http://x/00000.png" in (tmp_path / "o" / "pairs.csv").read_text()
    one = tmp_path / "all.csv"
    one.write_text("file_name,text\n" + "".join(f"{i}.jpg,cap {i}\n" for i in range(src.n)))
    bad_rows = tmp_path / "short.csv"
    bad_rows.write_text("file_name\n1.jpg\n")
    no_cols = tmp_path / "nocols.csv"
    no_cols.write_text("width,height\n1,2\n")
    not_utf8 = tmp_path / "latin.csv"
    not_utf8.write_bytes(b"caption\n\xe9t\xe9\n")
    for csv_file, message in ((bad_rows, "1 metadata rows for"), (no_cols, "no column of file names"),
                              (not_utf8, "cannot read this metadata CSV")):
        proc = run("--metadata", str(csv_file), "--out", str(tmp_path / "never"))
        assert proc.returncode == 2 and message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
        assert str(csv_file) in proc.stderr and not (tmp_path / "never").exists()
    src.labels.update(load_side_metadata(one, src.n))
    assert src.labels["caption"][5] == "cap 5" and src.labels["file_name"][0] == "0.jpg"


def test_a_memory_budget_too_small_for_the_data_is_refused_before_writing(tmp_path: Path):
    """--memory must hold the per-pair results and one block: otherwise one line says how much is needed."""
    paths, _, _ = _poisoned_set(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "dataset_audit", *map(str, paths), "--out", str(tmp_path / "o"),
                           "--no-predict", "--memory", "0.0001"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2 and "--memory 0.0001 GiB cannot hold" in proc.stderr and "give at least" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "o").exists()
    assert AuditConfig(memory_gib=2.0).rows(512, 4_000_000) >= 256


def test_the_old_address_still_runs_the_audit_for_one_release(tmp_path: Path):
    """``python -m simulate.audit`` forwards to ``python -m dataset_audit`` with a one-line note."""
    proc = subprocess.run([sys.executable, "-m", "simulate.audit", "--help"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0 and "usage: python -m dataset_audit" in proc.stdout
    assert proc.stderr.strip() == ("note: python -m simulate.audit is now python -m dataset_audit (the old name runs "
                                   "it for one release)")
