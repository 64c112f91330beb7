"""T9: the meaningless rate on images whose answer is known (``python -m empirical.known_truth``).

One row per data set and image family: the truth (meaningless by construction, or meaningful), the number of
images, the meaningless rate (:mod:`empirical.meaningless`) with its two readings (far from every concept, judge
unsure), and the no-standout rate (the salience rule of :mod:`theory.implosion`, the harness's meaningless rate
before this check) — both rates side by side, so the table shows which one means what its name says.
"""

from __future__ import annotations

from pathlib import Path

from paper_figures.built import Built
from paper_figures.sources import Sources, num, read_csv

FEEDS = ("python -m empirical.known_truth --preset cpu --out results/known_truth/cpu-openmoji+noto.csv; the same "
         "with --fonts openmoji --out results/known_truth/cpu-openmoji.csv")
#: The targets item 3 of the issue set: at least this on meaningless images, at most that on clean renders.
ON_MEANINGLESS, ON_CLEAN = 0.9, 0.05


def tab9(src: Sources, out: Path) -> Built:
    """Both rates per family and data set, and per rate whether it met the targets."""
    from paper_figures.tables import _write

    found = sorted((src.results / "known_truth").glob("*.csv"))
    rows, verdicts = [], []
    for path in found:
        table = read_csv(path)
        for r in table:
            rows.append([r["data_set"], r["family"].replace("_", " "), r["truth"], int(num(r["n"])),
                         f"{num(r['meaningless_rate']):.3f}", f"{num(r['far_rate']):.3f}",
                         f"{num(r['unsure_rate']):.3f}", f"{num(r['no_standout_rate']):.3f}"])
        for rate, name in (("meaningless_rate", "meaningless rate"), ("no_standout_rate", "no-standout rate")):
            low = min(num(r[rate]) for r in table if r["truth"] == "meaningless")
            high = max(num(r[rate]) for r in table if r["truth"] == "meaningful")
            met = "met" if low >= ON_MEANINGLESS and high <= ON_CLEAN else "not met"
            verdicts.append(f"{table[0]['data_set']}, {name}: lowest on a meaningless family {low:.3f}, highest "
                            f"on a meaningful one {high:.3f} ({met})")
    header = ["data set", "images", "truth", "n", "meaningless rate", "far", "unsure", "no-standout rate"]
    files, md = _write(out, "tab9", header, rows)
    caption = ("The meaningless rate on known truth: the judge of the cpu preset reads images meaningless by "
               "construction (noise, blank and single-colour canvases, pixel averages of 16 and of all concepts, "
               "renders with shuffled tiles) and held-out renders the rule was not calibrated on, with their VAE "
               f"reconstructions. Targets: ≥ {ON_MEANINGLESS:g} on every meaningless family, ≤ {ON_CLEAN:g} on the "
               "meaningful ones. " + ("; ".join(verdicts) + "." if verdicts else ""))
    return Built(files, caption, [str(p) for p in found], [] if rows else [f"no known-truth table yet: {FEEDS}"], md)
