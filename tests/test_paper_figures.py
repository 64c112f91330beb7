"""paper_figures: the list, the quick build of every figure and table, the index, where data come from, errors."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from paper_figures.__main__ import main
from paper_figures.registry import ITEMS, resolve
from paper_figures.sources import Empirical, Sources

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def quick(tmp_path_factory) -> Path:
    """One quick build of everything (the issue's `python -m paper_figures all --quick`)."""
    out = tmp_path_factory.mktemp("figures")
    assert main(["all", "--quick", "--out", str(out), "--threads", "1"]) == 0
    return out


def test_list_names_every_item_with_its_command(capsys):
    assert main(["list"]) == 0
    text = capsys.readouterr().out
    for item in ITEMS:
        assert item.key in text and item.feeds in text
    assert [i.key for i in ITEMS] == ([f"fig{k}" for k in range(1, 17)] + [f"tab{k}" for k in range(1, 9)]
                                      + ["tab9", "tab10", "fig17", "tab11", "fig18", "tab12"])


def test_aliases_resolve():
    assert resolve("F3").key == "fig3" and resolve("t2").key == "tab2" and resolve("Fig11").key == "fig11"
    with pytest.raises(KeyError):
        resolve("fig99")


@pytest.mark.slow
def test_quick_build_writes_every_figure_and_table(quick):
    from PIL import Image

    for item in ITEMS:
        rec = json.loads((quick / f"{item.key}.json").read_text())
        assert rec["quick"] is True
        if item.key.startswith("fig"):
            png, pdf = quick / f"{item.key}.png", quick / f"{item.key}.pdf"
            assert pdf.stat().st_size > 1000 and pdf.read_bytes()[:4] == b"%PDF"
            img = np.asarray(Image.open(png).convert("L"), float)
            assert img.shape[0] > 200 and img.shape[1] > 300  # readable at column width, 200 dpi
            assert img.std() > 10  # not blank
        else:
            rows = list(csv.reader(open(quick / f"{item.key}.csv")))
            # a table may be empty only when it says what would fill it (T5: no cpu-preset run in quick data)
            assert (len(rows) > 2 or rec["missing"]) and (quick / f"{item.key}.md").read_text().startswith("| ")


@pytest.mark.slow
def test_index_lists_every_item_with_caption_and_image(quick):
    index = (quick / "figures.md").read_text()
    for item in ITEMS:
        rec = json.loads((quick / f"{item.key}.json").read_text())
        assert f"## {item.key}:" in index and rec["caption"] in index
        if item.key.startswith("fig"):
            assert f"]({item.key}.png)" in index
    assert "Quick build" in index


@pytest.mark.slow
def test_quick_empirical_data_feed_the_attention_figures(quick):
    """The micro runs must land in the headline selection (fig2–fig4 and fig9 draw from them, none skipped)."""
    src = Sources(results=quick / "nowhere", data=quick / "_data", quick=True, verbose=False)
    emp = src.empirical()
    assert emp.quick and emp.preset == "micro" and emp.concepts == 8
    for scenario in ("scratch", "continuous", "lora"):
        assert {int(r["c_p"]) for r in emp.main(scenario)} >= {0, 4}
    assert {r["poison_type"] for r in emp.by_p()} == {"dirty", "nightshade"}
    for key in ("fig2", "fig3", "fig4", "fig9", "fig11"):
        assert json.loads((quick / f"{key}.json").read_text())["missing"] == [], key


@pytest.mark.slow
def test_tab3_agrees_with_theory_check(quick):
    from theory.check import CHECKS

    rows = list(csv.DictReader(open(quick / "tab3.csv")))
    assert len(rows) == len(CHECKS) and all(r["verdict"] == "PASS" for r in rows)


@pytest.mark.slow
def test_building_one_figure_keeps_the_others_in_the_index(quick):
    before = (quick / "figures.md").read_text().count("## ")
    assert main(["fig1", "--quick", "--out", str(quick)]) == 0
    assert (quick / "figures.md").read_text().count("## ") == before


def test_full_mode_reads_simulator_tables_from_results(tmp_path):
    """With results present nothing is recomputed: tab1 shows exactly the numbers of the given table."""
    exp = tmp_path / "results" / "experiments"
    exp.mkdir(parents=True)
    with open(exp / "ad_regimes.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["regime", "c_p", "ad_mean", "ad_ci95", "closed_form", "d_stru_mean"])
        for c, a in ((0, 0.1234), (10, 0.2345), (20, 0.3456)):
            w.writerow(["toy regime", c, a, 0.0, a, 0.5])
    src = Sources(results=tmp_path / "results", data=tmp_path / "data", quick=False, verbose=False)
    rows, prov = src.sim("ad_regimes")
    assert "ad_regimes.csv" in prov and len(rows) == 3
    from paper_figures.tables import tab1

    src._emp = Empirical()  # no empirical data: tab1 names the commands instead of running them
    built = tab1(src, tmp_path)
    assert "| toy regime | 0 | clean | 0.123 |" in built.markdown
    assert "| toy regime | 20 | poisoned | 0.346 |" in built.markdown
    assert len(built.missing) == 3 and not (tmp_path / "data" / "sim").exists()


def test_full_mode_never_substitutes_quick_data(tmp_path, capsys):
    """Without --quick a missing simulator table is named with the command that makes it, nothing small is built
    in its place, and the build still succeeds for what it has (exit 0, the missing items said)."""
    from paper_figures.sources import MissingSource

    src = Sources(results=tmp_path / "results", data=tmp_path / "data", quick=False, verbose=False)
    with pytest.raises(MissingSource, match="simulate.experiments all --out"):
        src.sim("phase")
    assert src.empirical().rows == [] and not (tmp_path / "data").exists()
    assert main(["fig12", "fig5", "--results", str(tmp_path / "results"), "--out", str(tmp_path / "o")]) == 0
    err = capsys.readouterr().err
    assert "fig12: not built" in err and "phase.csv is missing" in err
    assert (tmp_path / "o" / "fig5.png").is_file() and not (tmp_path / "o" / "fig12.png").exists()
    assert not (tmp_path / "o" / "_data").exists()


def test_headline_selection_excludes_variants():
    base = {"preset": "cpu", "scenario": "continuous", "targets": "poisoned", "steps": "500",
            "poison_per_concept": "80", "kind": "poisoned", "poison_type": "dirty", "n_concepts": "150",
            "seed": "0", "c_p": "25", "folder": "a"}
    rows = [dict(base), dict(base, variant="unet.channels: [64, 128] -> [32, 64]", folder="b"),
            dict(base, steps="1500", folder="c"), dict(base, targets="all", folder="d"),
            dict(base, poison_per_concept="10", folder="e"), dict(base, n_concepts="50", folder="f"),
            dict(base, preset="smoke", folder="g")]
    for r in rows:
        r.setdefault("variant", "")
    emp = Empirical(rows=rows)
    assert emp.preset == "cpu" and emp.concepts == 150
    assert [r["folder"] for r in emp.main("continuous")] == ["a"]
    assert sorted(r["folder"] for r in emp.by_p()) == ["a", "e"]


def test_regime_map_pairs_each_seed_with_its_own_control(tmp_path):
    """tab4: gaps are poisoned − control of the same seed (averaged over seeds), a control is borrowed across
    targets/poison type but never across steps or seeds, and a regime without controls shows none."""
    from empirical.report import mean_ci
    from paper_figures.tables import tab4

    base = {"preset": "cpu", "scenario": "continuous", "targets": "poisoned", "steps": "500", "variant": "",
            "poison_per_concept": "80", "poison_type": "dirty", "n_concepts": "150", "c_p": "100",
            "attack_success": "0.3", "ad": "0.46", "fd_unpoisoned": "0.2", "folder": "a"}
    acc = {("poisoned", "0"): 0.70, ("poisoned", "1"): 0.80, ("poisoned", "2"): 0.75,
           ("control", "0"): 0.90, ("control", "1"): 0.95}  # seed 2 has no control
    rows = [dict(base, kind=k, seed=s, unpoisoned_acc=str(a), unpoisoned_prob=str(a - 0.1))
            for (k, s), a in acc.items()]
    rows.append(dict(base, kind="poisoned", seed="0", targets="all", unpoisoned_acc="0.85", unpoisoned_prob="0.7",
                     folder="d"))
    rows.append(dict(base, kind="poisoned", seed="0", steps="1500", unpoisoned_acc="0.88", unpoisoned_prob="0.7",
                     folder="c"))
    src = Sources(results=tmp_path / "r", data=tmp_path / "d", quick=False, verbose=False)
    src._emp = Empirical(rows=rows)
    table = {r["regime"]: r for r in csv.DictReader(open(tmp_path / "tab4.csv"))} if tab4(src, tmp_path) else {}
    m, e = mean_ci([0.70 - 0.90, 0.80 - 0.95])
    main_row = table["continuous, 500 steps"]
    assert main_row["seeds"] == "3" and main_row["acc − control"] == f"{m:+.3f} ± {e:.3f}"
    assert main_row["P(right) − control"] == f"{m:+.3f} ± {e:.3f}" and main_row["Fréchet − control"] == "+0.000"
    assert table["continuous, targets all, 500 steps"]["acc − control"] == f"{0.85 - 0.90:+.3f}"
    assert table["continuous, 1500 steps"]["control"] == "–" and table["continuous, 1500 steps"]["acc − control"] == "–"


@pytest.mark.parametrize("args, message", [
    (["fig99"], "unknown figure or table 'fig99'"),
    (["all", "fig1"], "'all' takes no other keys"),
    (["list", "fig1"], "'list' takes no other arguments"),
    (["fig1", "--threads", "0"], "--threads must be in [1,"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, message):
    r = subprocess.run([sys.executable, "-m", "paper_figures", *args, "--out", str(tmp_path / "o")],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert not (tmp_path / "o").exists()


def test_an_unreadable_results_folder_is_named(tmp_path):
    """A results folder whose manifest is unreadable is not a silent no-op: collect records which and why (the
    build prints it on stderr)."""
    from paper_figures.sources import collect

    bad = tmp_path / "results" / "broken"
    bad.mkdir(parents=True)
    (bad / "results.csv").write_text("seed\n0\n")
    (bad / "manifest.json").write_text("{not json")
    emp = collect([bad], [])
    assert not emp.rows and len(emp.skipped) == 1
    assert "broken" in emp.skipped[0] and "JSONDecodeError" in emp.skipped[0]
