"""T1–T4: AD of clean vs poisoned mixes, implosion thresholds, the symbolic check of Theorem 4.2, the regime map.

Each table is written as ``<key>.md`` (shown inline in figures.md) and ``<key>.csv``.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from paper_figures.built import Built
from paper_figures.sources import EMP_COMMANDS, Empirical, Sources, num

IMPLOSION_ACC = 0.5  # "implosion threshold": first C_P where mean unpoisoned accuracy falls below this


def markdown_table(header: list[str], rows: list[list[Any]]) -> str:
    """A markdown table (``|`` inside cells escaped), ending in a newline."""
    md = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    md += ["| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |" for r in rows]
    return "\n".join(md) + "\n"


def write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


def _write(out: Path, key: str, header: list[str], rows: list[list[Any]]) -> tuple[list[Path], str]:
    text = markdown_table(header, rows)
    (out / f"{key}.md").write_text(text, encoding="utf-8")
    write_csv(out / f"{key}.csv", header, rows)
    return [out / f"{key}.md", out / f"{key}.csv"], text


def fmt_ci(m: float, e: float, *, sign: bool = False, digits: int = 3) -> str:
    """``m ± e`` ("–" when m is not finite; just ``m`` when e is 0, a single value)."""
    if not np.isfinite(m):
        return "–"
    s = f"{m:+.{digits}f}" if sign else f"{m:.{digits}f}"
    return s if e == 0 or not np.isfinite(e) else f"{s} ± {e:.{digits}f}"


def _mc(values: list[float]) -> str:
    from empirical.report import mean_ci

    return fmt_ci(*mean_ci(values))


def tab1(src: Sources, out: Path) -> Built:
    """AD of clean vs poisoned training sets, in simulation and on the real model's mixes."""
    rows: list[list[Any]] = []
    sim, prov = src.sim("ad_regimes")
    for regime in dict.fromkeys(r["regime"] for r in sim):
        sel = sorted((r for r in sim if r["regime"] == regime), key=lambda r: num(r["c_p"]))
        for r in (sel[0], sel[len(sel) // 2], sel[-1]):
            rows.append(["simulation", regime, int(num(r["c_p"])), "poisoned" if num(r["c_p"]) else "clean",
                         f"{num(r['ad_mean']):.3f}", f"{num(r['d_stru_mean']):.3f}"])
    emp = src.empirical()
    sources = [prov]
    missing = []
    for scenario in ("scratch", "continuous", "lora"):
        main = emp.main(scenario)
        if not main:
            missing.append(f"{scenario}: {EMP_COMMANDS[scenario]}")
            continue
        sources.append(f"{scenario}: " + ", ".join(sorted({r['folder'] for r in main})))
        for c in sorted({int(r["c_p"]) for r in main}):
            for kind in ("poisoned", "control"):
                sel = [r for r in main if int(r["c_p"]) == c and r["kind"] == kind]
                if not sel:
                    continue
                label = "clean" if c == 0 else kind
                rows.append([f"model ({emp.preset}{', quick' if emp.quick else ''})", scenario, c, label,
                             _mc([num(r["ad"]) for r in sel]), _mc([num(r["d_stru"]) for r in sel])])
    files, md = _write(out, "tab1", ["where", "regime / scenario", "C_P", "mix", "AD", "D_stru"], rows)
    caption = ("AD of clean and poisoned training sets. Simulation: the mean over seeds at the first, middle and "
               "last C_P of each regime. Model: the AD of the exact training mix (judge embeddings), mean ± 95% CI "
               "over seeds, poisoned mixes against same-volume correctly-labelled controls.")
    return Built(files, caption, sources, missing, md)


def _threshold(by_c: dict[int, list[float]]) -> tuple[str, float, int]:
    """First C_P whose mean is below IMPLOSION_ACC ('not reached'), the lowest mean and where."""
    cs = sorted(by_c)
    means = [float(np.nanmean(by_c[c])) for c in cs]
    first = next((c for c, m in zip(cs, means) if m < IMPLOSION_ACC), None)
    low = int(np.nanargmin(means))
    return ("not reached" if first is None else str(first)), means[low], cs[low]


def _variant_name(r: dict[str, Any], default_p: int, *, data_set_column: bool = False,
                  concepts: int | None = None) -> str:
    """A readable name of the regime a poisoned row belongs to (scenario and how it differs from the preset; the
    fonts left out where the table has a data-set column). ``concepts``, the headline number of concepts of a table
    without a data-set column: a row drawn from another number (another concept list: another data set) says
    ``K=<n>``, so it neither pools with nor reads as the headline's."""
    variant = r.get("model_variant", r["variant"]) if data_set_column else r["variant"]
    name = f"{r['scenario']}" + (f", {variant}" if variant else "")
    if concepts is not None and int(r["n_concepts"]) != concepts:
        name += f", K={r['n_concepts']}"
    if r["targets"] != "poisoned":
        name += f", targets {r['targets']}"
    if r["poison_type"] == "nightshade":
        name += ", nightshade"
    if int(r["poison_per_concept"]) != default_p:
        name += f", p={r['poison_per_concept']}"
    return name


#: A poisoned run and its control share the seed and the base model (runs of two base models may share a seed).
PAIRING = ("seed", "base_seed")


def _paired_gap(poisoned: list[dict[str, Any]], controls: list[dict[str, Any]], column: str, digits: int = 3) -> str:
    """Mean ± 95% CI over seeds of poisoned − control in ``column``, each poisoned row paired with the control of
    its seed and base model among ``controls`` (chosen by the caller: a control may serve several target modes) by
    :func:`empirical.report.paired_gaps`; "–" when no seed has both."""
    from empirical.report import mean_ci, paired_gaps

    gaps = [g[column] for g in paired_gaps([*poisoned, *controls], [column], pairing=PAIRING)
            if np.isfinite(g[column])]
    return fmt_ci(*mean_ci(gaps), sign=True, digits=digits) if gaps else "–"


def tab2(src: Sources, out: Path) -> Built:
    """Implosion thresholds: where unpoisoned accuracy first drops below 0.5, per regime and scenario."""
    rows: list[list[Any]] = []
    sim, prov = src.sim("implosion_regimes")
    for key in dict.fromkeys((r["group"], r["setting"]) for r in sim):
        by: dict[int, list[float]] = {}
        for r in sim:
            if (r["group"], r["setting"]) == key:
                by.setdefault(int(num(r["c_p"])), []).append(num(r["unpoisoned_acc"]))
        first, low, at = _threshold(by)
        rows.append(["simulation", f"{key[0]}: {key[1]}", max(by), first, f"{low:.3f} (C_P={at})", "–"])
    emp = src.empirical()
    sources = [prov]
    for (name, steps), sel in sorted(_regimes(emp).items()):
        by = {}
        for r in sel:
            by.setdefault(int(r["c_p"]), []).append(num(r["unpoisoned_acc"]))
        first, low, at = _threshold(by)
        top = max(by)
        ctrl = _controls([r for r in sel if int(r["c_p"]) == top], emp)
        rows.append([f"model ({emp.preset}{', quick' if emp.quick else ''})", f"{name}, {steps} steps", top, first,
                     f"{low:.3f} (C_P={at})", _mc([num(r["unpoisoned_acc"]) for r in ctrl]) if ctrl else "–"])
        sources.append(", ".join(sorted({r['folder'] for r in sel})))
    files, md = _write(out, "tab2", ["where", "regime / scenario", "largest C_P", f"acc < {IMPLOSION_ACC} from C_P",
                                     "lowest mean unpoisoned acc", "control acc at largest C_P"], rows)
    caption = (f"Implosion thresholds: the first C_P at which the mean unpoisoned-concept accuracy falls below "
               f"{IMPLOSION_ACC} (simulation: nearest image centroid; model: the judge's zero-shot reading of "
               f"generated images), the lowest mean accuracy reached, and, for the model, the same-volume control at "
               f"the largest C_P.")
    return Built(files, caption, sorted(set(sources)), [], md)


def _regimes(emp: Empirical) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """The model's poisoned rows of the chosen preset grouped by regime: (name, steps) -> rows."""
    out: dict[tuple[str, str], list[dict[str, Any]]] = {}
    default_p, concepts = emp.default_p(), emp.concepts  # each reads every row: once, not per row
    for r in emp.rows:
        if r["kind"] == "poisoned" and r["preset"] == emp.preset:
            out.setdefault((_variant_name(r, default_p, concepts=concepts), r["steps"]), []).append(r)
    return out


def _pair(r: dict[str, Any]) -> tuple[str, ...]:
    """What a poisoned row and its control share (:data:`PAIRING`), as strings."""
    return tuple(str(r.get(k)) for k in PAIRING)


def _controls(poisoned: list[dict[str, Any]], emp: Empirical) -> list[dict[str, Any]]:
    """The same-volume controls of poisoned rows at one C_P, one per seed and base model of those rows. A control
    adds correctly labelled pairs of the poisoned concepts, so it depends on the scenario, the setting, the steps, p
    and the universe, not on the targets or the poison type: a run with ``--no-control`` borrows its setting's
    control. Where several folders hold a control for a seed and base model, the one in the poisoned row's own
    folder is taken (each run draws its control's extra pairs from its own stream, so two such controls differ a
    little)."""
    if not poisoned:
        return []
    same = ("scenario", "variant", "steps", "poison_per_concept", "n_concepts", "c_p")
    own: dict[tuple, set[str]] = {}
    for r in poisoned:
        own.setdefault(_pair(r), set()).add(r["folder"])
    found: dict[tuple, dict[str, Any]] = {}
    candidates = [c for c in emp.rows if c["kind"] == "control" and c["preset"] == emp.preset and _pair(c) in own
                  and all(str(c[k]) == str(poisoned[0][k]) for k in same)]
    for c in sorted(candidates, key=lambda c: c["folder"] not in own[_pair(c)]):  # own folders' first (stable)
        found.setdefault(_pair(c), c)
    return list(found.values())


def tab4(src: Sources, out: Path) -> Built:
    """The regime map of the real model: per regime and C_P, the never-poisoned concepts against the same-volume
    control of each seed, and the attack success."""
    emp = src.empirical()
    rows: list[list[Any]] = []
    sources: list[str] = []
    for (name, steps), sel in sorted(_regimes(emp).items()):
        for c in sorted({int(r["c_p"]) for r in sel}):
            at = [r for r in sel if int(r["c_p"]) == c]
            ctrl = _controls(at, emp)
            rows.append([f"{name}, {steps} steps", c, len(at),
                         _mc([num(r["unpoisoned_acc"]) for r in at]),
                         _mc([num(r["unpoisoned_acc"]) for r in ctrl]) if ctrl else "–",
                         _paired_gap(at, ctrl, "unpoisoned_acc"), _paired_gap(at, ctrl, "unpoisoned_prob"),
                         _paired_gap(at, ctrl, "fd_unpoisoned"), _paired_gap(at, ctrl, "kid_unpoisoned", 4),
                         _paired_gap(at, ctrl, "unpoisoned_meaningless"),
                         _paired_gap(at, ctrl, "unpoisoned_off_render"),
                         _paired_gap(at, ctrl, "unpoisoned_no_standout"),
                         _mc([num(r["attack_success"]) for r in at]), _mc([num(r["ad"]) for r in at])])
            sources.append(", ".join(sorted({r["folder"] for r in at} | {r["folder"] for r in ctrl})))
    missing = [] if rows else [f"continuous: {EMP_COMMANDS['continuous']}"]
    files, md = _write(out, "tab4", ["regime", "C_P", "seeds", "unpoisoned acc", "control", "acc − control",
                                     "P(right) − control", "Fréchet − control", "KID − control",
                                     "meaningless − control", "off-render − control", "no-standout − control",
                                     "attack success", "AD"], rows)
    caption = (f"The regime map of the real model ({emp.preset or 'no'} preset): for each regime (scenario, and how "
               f"it departs from the preset: steps, UNet, targets, p, poison type) and C_P, the never-poisoned "
               f"concepts' accuracy against the same-volume correctly-labelled control, the gaps poisoned − control "
               f"pairing each seed with its own control (mean ± 95% CI over seeds), and the attack success. "
               f"Implosion shows as negative gaps that grow with C_P; incoherent images would also show as large "
               f"Fréchet and kernel-distance (KID, unbiased) gaps and a positive meaningless-rate gap (the rate "
               f"calibrated on the clean renders and the clean base model's own samples, checked on known truth, "
               f"T9, and read against the control, T12); the off-render "
               f"rate is the same rule calibrated on clean renders, which also flags a third or more of the "
               f"controls' images, so only its gap is read (runs written before a measure existed show –); the "
               f"no-standout rate "
               f"is the salience rule that was called the meaningless rate before that check showed it reads noise "
               f"as meaningful.")
    return Built(files, caption, sorted(set(sources)), missing, md)


def tab3(src: Sources, out: Path) -> Built:
    """The symbolic and numeric checks of Theorem 4.2 (python -m theory.check), one verdict each."""
    from theory.check import CHECKS

    rows = []
    for check in CHECKS:
        v = check()
        rows.append([v.name, "PASS" if v.passed else "FAIL", v.figure])
    files, md = _write(out, "tab3", ["check", "verdict", "figure behind it"], rows)
    passed = sum(r[1] == "PASS" for r in rows)
    caption = (f"Theorem 4.2 checked symbolically (sympy) and numerically against theory.ad on explicit instances of "
               f"the block model, including configurations outside its assumptions where AD does not grow: {passed} of "
               f"{len(rows)} checks pass.")
    return Built(files, caption, ["python -m theory.check (run in-process)"], [], md)


#: What feeds T6: the audit's validation tables under <results>/audit/.
AUDIT_FEEDS = ("python -m dataset_audit --validate results/geometry/cpu-clean-mix.npz --poisoned-concepts "
               "0,25,50,100,140 --poison-per-concept 80 --dim 11 --out results/audit; python -m dataset_audit "
               "--validate-mix MIX... --dim 11 --out results/audit/mixes (MIX from python -m empirical.embed --builtin "
               "--mix dirty|nightshade ...)")


def tab6(src: Sources, out: Path) -> Built:
    """The dataset audit on known truth: per validated mix, its poisons, the flags' precision and recall, the AP of
    the AD share, estimated vs true C_P and p, and the margin's predicted accuracy."""
    from paper_figures.sources import read_csv

    found = sorted((src.results / "audit").glob("**/validation.csv"))
    rows = []
    for path in found:
        for r in read_csv(path):
            f = {k: num(v) for k, v in r.items() if k not in ("source", "poison_type", "predicted_threshold_c_p")}
            pr = "nothing flagged" if f["flagged"] == 0 else f"{f['precision']:.3f} / {f['recall']:.3f}"
            rows.append([r.get("source", "dirty-label pairs made in embedding space"), r.get("poison_type", "dirty"),
                         int(f["c_p"]), int(f["p"]), f"{int(f['n']):,}", pr,
                         "–" if not np.isfinite(f["ap_of_score"]) else f"{f['ap_of_score']:.3f}",
                         f"{int(f['estimated_c_p'])} ({int(f['false_concepts'])})", int(f["estimated_p"]),
                         f"{f['ad']:.4f}", "–" if not np.isfinite(f["predicted_acc_now"]) else
                         f"{f['predicted_acc_now']:.3f}"])
    files, md = _write(out, "tab6", ["mix", "poisons", "true C_P", "true p", "pairs", "flagged: precision / recall",
                                     "AP of the AD share", "estimated C_P (false concepts)", "estimated p", "AD",
                                     "predicted unpoisoned acc"], rows)
    caption = ("The dataset audit (python -m dataset_audit) on training sets whose poisons are known: the cpu "
               "preset's clean pairs in its judge's space plus dirty-label pairs made in embedding space, and real "
               "training mixes of the harness (dirty-label and Nightshade-style) embedded with their truth. "
               "Flags: the two-population mixture rule; AP: ranking every pair by its share of AD.")
    return Built(files, caption, [str(p) for p in found], [] if rows else [f"no validation table yet: {AUDIT_FEEDS}"],
                 md)
