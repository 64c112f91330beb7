"""The audit's report a person reads: the verdict first, the same content in report.md and a self-contained
report.html (pictures and thumbnails embedded, nothing fetched), the most suspicious pairs with their caption, file
and thumbnail when the image is local, and pairs.parquet holding what pairs.csv holds."""

from __future__ import annotations

import csv
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dataset_audit.document import Section, Table, to_html, to_markdown

ROOT = Path(__file__).resolve().parents[1]


def _folder(tmp: Path) -> Path:
    """An image-text folder's embeddings: 40 matched pairs of 4 concepts and 4 dirty-label pairs, each pair's
    file_name a PNG in images/ beside the .npz."""
    from PIL import Image

    rng = np.random.default_rng(3)
    names = ["circle", "square", "star", "moon"]
    concept = np.r_[np.repeat(np.arange(4), 10), [0, 1, 2, 3]]
    cos = np.r_[rng.normal(0.8, 0.03, 40), [-0.2, -0.1, 0.0, -0.3]]
    d = 16
    t = rng.normal(size=(4, d))[concept] + 0.3 * rng.normal(size=(44, d))
    t /= np.linalg.norm(t, axis=1, keepdims=True)
    w = rng.normal(size=(44, d))
    w -= np.sum(w * t, 1, keepdims=True) * t
    w /= np.linalg.norm(w, axis=1, keepdims=True)
    v = cos[:, None] * t + np.sqrt(1 - cos[:, None] ** 2) * w
    (tmp / "images").mkdir(parents=True)
    files = []
    for i, c in enumerate(concept):
        files.append(f"images/{i:03d}.png")
        Image.fromarray(np.full((24, 24, 3), 40 * c, np.uint8)).save(tmp / files[-1])
    np.savez(tmp / "emb.npz", text=t.astype(np.float32), image=v.astype(np.float32), file_name=np.array(files),
             caption=np.array([f"a drawing of a {names[c]}" for c in concept]))
    (tmp / "concepts.txt").write_text("\n".join(names) + "\n")
    return tmp / "emb.npz"


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("report")
    emb = _folder(tmp)
    out = tmp / "audit"
    proc = subprocess.run([sys.executable, "-m", "dataset_audit", str(emb), "--concepts-file",
                           str(tmp / "concepts.txt"), "--no-predict", "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return out


def test_the_verdict_comes_first_in_both_renderings(report: Path):
    md = (report / "report.md").read_text(encoding="utf-8").splitlines()
    assert md[0] == "# Dataset audit" and md[2].startswith("**Verdict: ")
    html = (report / "report.html").read_text(encoding="utf-8")
    first = re.search(r"<p[^>]*>(.*?)</p>", html).group(1)
    assert first.startswith("<b>Verdict: ") and 'class="verdict"' in html


def test_the_html_is_self_contained_and_shows_local_thumbnails(report: Path):
    html = (report / "report.html").read_text(encoding="utf-8")
    sources = re.findall(r'src="([^"]*)"', html)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)  # nothing fetched
    assert html.count('class="thumb"') == 15  # every shown pair's image is local
    assert "a drawing of a circle" in html and "images/040.png" in html


def test_the_most_suspicious_pairs_are_the_flagged_ones_first(report: Path):
    rows = list(csv.DictReader(open(report / "pairs.csv", encoding="utf-8")))
    flagged = {r["file_name"] for r in rows if r["flagged"] == "1"}
    assert flagged == {f"images/{i:03d}.png" for i in range(40, 44)}
    md = (report / "report.md").read_text(encoding="utf-8")
    table = [line for line in md.splitlines() if line.startswith("| ") and "images/" in line]
    assert {line.strip("| ").split(" | ")[5] for line in table[:4]} == flagged  # file_name column, flagged first


def test_pairs_parquet_holds_what_pairs_csv_holds(report: Path):
    pq = pytest.importorskip("pyarrow.parquet")
    table = pq.read_table(report / "pairs.parquet").to_pylist()
    rows = list(csv.DictReader(open(report / "pairs.csv", encoding="utf-8")))
    assert len(table) == len(rows) == 44
    for a, b in zip(table, rows):
        assert a["file_name"] == b["file_name"] and a["flagged"] == int(b["flagged"])
        assert a["cos"] == pytest.approx(float(b["cos"]), abs=1e-15)


def test_one_document_two_renderings_say_the_same_thing(tmp_path: Path):
    sections = [Section("", ["**Verdict: x** — y `z`"]), Section("T", ["p"], Table(["a", "b"], [["1", "x|y"]]))]
    md = to_markdown("Title", sections)
    html = to_html("Title", sections, tmp_path)
    assert "**Verdict: x** — y `z`" in md and "| 1 | x\\|y |" in md
    assert "<b>Verdict: x</b> — y <code>z</code>" in html and "<td>x|y</td>" in html and "<h2>T</h2>" in html
    assert "<script" not in html and to_html("<b>", [], tmp_path).count("&lt;b&gt;") == 2  # escaped
