"""T9: the meaningless rate on images whose answer is known (``python -m empirical.known_truth``).

One row per data set, rule and image family: what the rule was calibrated on (clean renders: the off-render rate;
the clean base model's samples: the meaningless rate, :mod:`empirical.meaningless`), the truth (meaningless by
construction, or meaningful), the number of images, the rule's rate with its two readings (far from every
concept, judge unsure), and the no-standout rate (the salience rule of :mod:`theory.implosion`, the harness's
meaningless rate before this check) — the rates side by side, so the table shows which one means what its name
says, on generated images too (``clean sample``: a competent generator's held-out images).
"""

from __future__ import annotations

from pathlib import Path

from empirical.known_truth import by_rule, separation
from paper_figures.built import Built
from paper_figures.sources import Sources, num, numeric, read_csv

FEEDS = ("python -m empirical.known_truth --preset cpu --calibrate-on samples --out "
         "results/known_truth/recon-samples-b0/cpu-openmoji+noto.csv; the same with --fonts noto (cpu-noto.csv), "
         "--fonts noto --n-concepts 100 (cpu-noto-100.csv) and --fonts openmoji --n-concepts 100 "
         "(cpu-openmoji-100.csv); without --calibrate-on samples: the off-render rule alone")
#: The targets item 3 of the issue set: at least this on meaningless images, at most that on clean renders.
ON_MEANINGLESS, ON_CLEAN = 0.9, 0.05


def tab9(src: Sources, out: Path) -> Built:
    """Both rates per family and data set, and per rate whether it met the targets."""
    from paper_figures.tables import _write

    root = src.results / "known_truth"
    found = [p for p in sorted(root.rglob("*.csv")) if "tried" not in p.relative_to(root).parts]
    rows, verdicts = [], []
    for path in found:
        name = str(path.relative_to(root))
        table = numeric(read_csv(path))
        for rule, mine in by_rule(table).items():
            for r in mine:
                rows.append([name, r["data_set"], rule, r["family"].replace("_", " "), r["truth"], int(r["n"]),
                             *(f"{num(r[k]):.3f}" for k in ("meaningless_rate", "far_rate", "unsure_rate",
                                                            "no_standout_rate"))])
        rates = {said: separation(table, rate) for rate, said in (("meaningless_rate", "rule calibrated on {}"),
                                                                   ("no_standout_rate", "no-standout rate"))}
        for rule in by_rule(table):
            for said, seps in rates.items():
                low, high = seps[rule]["lowest_on_meaningless"], seps[rule]["highest_on_meaningful"]
                met = "met" if low >= ON_MEANINGLESS and high <= ON_CLEAN else "not met"
                verdicts.append(f"{name} ({table[0]['data_set']}), {said.format(rule)}: lowest on a meaningless "
                                f"family {low:.3f}, highest on a meaningful one {high:.3f} ({met})")
    header = ["table", "data set", "calibrated on", "images", "truth", "n", "rate", "far", "unsure / off-render",
              "no-standout rate"]
    files, md = _write(out, "tab9", header, rows)
    caption = ("The meaningless rate on known truth: the judge of the cpu preset reads images meaningless by "
               "construction (noise, blank and single-colour canvases, pixel averages of 16 and of all concepts, "
               "renders with shuffled tiles) and meaningful ones: held-out renders the rules were not calibrated on, "
               "their VAE reconstructions and, where the clean base model's samples were drawn, its held-out "
               "samples. The rule on renders (the off-render rate) flags an image far from every concept's mean "
               "render or read unsurely (its two readings, far and unsure: either flags); the second rule "
               "(samples-b<base seed>) flags it when it is both far from every one of the clean base model's "
               "calibration samples (far) and off-render at q = 0.05 (both must flag); the harness's meaningless "
               "rule (recon+samples-b<base seed>) also asks it to be off the renders' VAE reconstructions (the "
               "off-render column then reads off-render and off the reconstructions). Targets: "
               f"≥ {ON_MEANINGLESS:g} on every "
               f"meaningless family, ≤ {ON_CLEAN:g} on the meaningful ones. "
               + "Tables at the top level came from the assets (VAE, judge) of the machine of the first check; "
               "samples-b0/ from those retrained on a second machine, where the clean base model 0 drew the "
               "samples; recon-samples-b0/ from those retrained on a third (with the data sets of 100 concepts, "
               "which no rule had seen). " + ("; ".join(verdicts) + "." if verdicts else ""))
    return Built(files, caption, [str(p) for p in found], [] if rows else [f"no known-truth table yet: {FEEDS}"], md)


#: The run folders T12 reads (under the results folder): reruns of points already in the tables (T4, T7 would
#: count them twice), made to measure what those points' images are.
RERUNS = "reruns"
RERUN_FEEDS = ("the python -m empirical.run commands of docs/predictions/README.md, 'the meaningless rate "
               "calibrated on the clean base model's own samples' (m01-m06) and 'a third reference for the "
               "meaningless rate' (m07, m08), with --out results/reruns/<name>")
#: Which measure each T12 column pair reads.
GENERATED = (("unpoisoned acc", "unpoisoned_acc"), ("meaningless", "unpoisoned_meaningless"),
             ("off-render", "unpoisoned_off_render"), ("no-standout", "unpoisoned_no_standout"))


def tab12(src: Sources, out: Path) -> Built:
    """T12: per rerun point, its never-poisoned concepts' images read by every rate, poisoned against its control."""
    from paper_figures.tables import _write

    found = sorted((src.results / RERUNS).glob("*/results.csv"))
    rows = []
    for path in found:
        table = read_csv(path)
        rule = _rule_used(path.parent)
        for p in (r for r in table if r["kind"] == "poisoned" and r["c_p"] != "0"):
            ctrl = next((c for c in table if c["kind"] == "control" and c["seed"] == p["seed"]
                         and c["c_p"] == p["c_p"]), None)
            cells = []
            for _, column in GENERATED:
                a, b = num(p[column]), num(ctrl[column]) if ctrl else float("nan")
                cells += [f"{a:.3f}", f"{b:.3f}", f"{a - b:+.3f}"]
            rows.append([path.parent.name, p["data_set"], p["scenario"], p["targets"], p["c_p"],
                         p["poison_per_concept"], p["seed"], rule, *cells, f"{num(p['attack_success']):.3f}"])
    header = ["run", "data set", "scenario", "targets", "C_P", "p", "seed", "meaningless rule"]
    for name, _ in GENERATED:
        header += [name, f"{name} (control)", f"{name} − control"]
    files, md = _write(out, "tab12", header + ["attack success"], rows)
    caption = ("The meaningless rate on generated images: points already in T7, rerun (same commands, same seeds) "
               "on a second machine (m01-m06) and a third (m07, m08), "
               "to read their never-poisoned concepts' images by the meaningless rate (calibrated on the clean base "
               "model's own samples: the first rule, either reading against the samples at q = 0.01; the second, "
               "off-render and far from every sample at q = 0.05; or the third, the harness's, also off the "
               "renders' VAE reconstructions; as the run's manifest records), the off-render "
               "rate (the rule calibrated on clean renders alone) and the no-standout rate, each poisoned run "
               "against its same-volume control (the matched one under the scatter rule). m04, m05 and m06 are m01, "
               "m03 and m02 again (identical images) read by the second rule; m07 and m08 are m01 and m02 on the "
               "third machine, whose assets reproduce the first machine's, read by the third.")
    return Built(files, caption, [str(p.parent) for p in found], [] if rows else [f"no rerun yet: {RERUN_FEEDS}"],
                 md)


def _rule_used(folder: Path) -> str:
    """The meaningless rule a run folder's manifest says it used: "samples, q 0.01" (the first, either reading
    against the clean samples), "samples and renders, q 0.05" (the second) or "samples, renders and
    reconstructions, q 0.05" (the third); "–" when it records none (an unreadable manifest is an InputError naming
    it)."""
    from implosion_base.records import read_manifest

    rule = read_manifest(folder / "manifest.json").get("assets", {}).get("meaningless_rule")
    if not isinstance(rule, dict) or "quantile" not in rule:
        return "–"
    refs = ["samples"] + ["renders"] * ("off_render" in rule) + ["reconstructions"] * ("off_decoded" in rule)
    return f"{', '.join(refs[:-1])}{' and ' if len(refs) > 1 else ''}{refs[-1]}, q {rule['quantile']:g}"
