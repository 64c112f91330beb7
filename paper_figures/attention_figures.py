"""F2–F4: generated images and their cross-attention maps (the paper's Figures 2, 3 and 4), from the images and
concept-token maps every ``empirical.run`` point saves (``points/<tag>-attention.npz``).

Each panel pairs a generated image with the same image overlaid by the DAAM-style map of the concept's tokens
(heads, layers and steps averaged, upsampled; :mod:`empirical.attention`). The points are chosen from the headline
run of each scenario (seed 0, or the lowest seed present): the clean model (C_P = 0) and the smallest C_P at which
the attack named in the caption is in force while the shown concept is not poisoned (or is, where the panel says
so) — read from each point's saved list of poisoned concepts, never assumed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from paper_figures.built import Built
from paper_figures.sources import (EMP_COMMANDS, Empirical, PointImages, Sources, load_plan_targets, load_point,
                                   shown_seed_rows)
from implosion_base.plotting import FULL, pyplot, save

SHOWN_PER_PANEL = 2  # samples of a concept per panel


def _overlay(image: np.ndarray, heat: np.ndarray) -> np.ndarray:
    from empirical.attention import overlay

    return overlay(image, heat)


def _points(emp: Empirical, scenario: str) -> list[tuple[dict[str, Any], PointImages]]:
    """(row, images) of the headline poisoned points of ``scenario`` for its lowest seed, by C_P."""
    out = []
    for r in sorted(shown_seed_rows(emp.main(scenario, kinds=("poisoned",))), key=lambda r: int(r["c_p"])):
        pt = load_point(r)
        if pt is not None:
            out.append((r, pt))
    return out


def _cells(pt: PointImages, concept: str) -> list[np.ndarray]:
    """Up to SHOWN_PER_PANEL image / overlay pairs of ``concept`` (image, overlay, image, overlay, ...)."""
    imgs, maps = pt.of(concept)
    cells: list[np.ndarray] = []
    for img, heat in zip(imgs[:SHOWN_PER_PANEL], maps[:SHOWN_PER_PANEL]):
        cells += [img, _overlay(img, heat)]
    return cells


def _grid(rows: list[tuple[str, list[np.ndarray]]], title: str, path_key: str, out: Path,
          col_titles: list[str] | None = None):
    """Rows of image cells with a label on the left of each row."""
    plt = pyplot()
    ncol = max(len(c) for _, c in rows)
    cell = min(0.62, (FULL - 1.6) / max(ncol, 1))
    fig, axes = plt.subplots(len(rows), ncol, figsize=(1.6 + cell * ncol, 0.25 + cell * len(rows)), squeeze=False)
    for i, (label, cells) in enumerate(rows):
        for j in range(ncol):
            ax = axes[i][j]
            ax.set_xticks([])
            ax.set_yticks([])
            for s in ax.spines.values():
                s.set_visible(False)
            if j < len(cells):
                ax.imshow(cells[j], interpolation="nearest")
            if j == 0:
                ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=7, labelpad=4)
            if i == 0 and col_titles and j < len(col_titles):
                ax.set_title(col_titles[j], fontsize=6)
    fig.suptitle(title, fontsize=8, y=1.0 + (0.25 if col_titles else 0.05) / len(rows))
    fig.subplots_adjust(wspace=0.04, hspace=0.08, left=0.22)
    return save(fig, out, path_key)


def _blank() -> np.ndarray:
    return np.full((8, 8, 3), 255, np.uint8)


def _col_titles(n: int) -> list[str]:
    return ["image", "attention"] * n


def _prov(src: Sources, emp: Empirical, rows: list[dict[str, Any]]) -> list[str]:
    folders = sorted({r["folder"] for r in rows})
    tag = "quick micro-preset data (numbers meaningless)" if emp.quick else f"preset {emp.preset}"
    return [f"{tag}: {', '.join(folders)}"]


def fig2(src: Sources, out: Path) -> Built:
    """Single-concept poisoning: "bird" in the clean model and in a model where fish is poisoned to bicycle; the
    poisoned concepts themselves (fish, and red apple poisoned to top hat) in that model."""
    emp = src.empirical()
    pts = _points(emp, "continuous")
    caption = ('Single-concept poisoning (paper Figure 2), continuous training. Each pair of cells is a generated '
               'image and its cross-attention map for the concept\'s token(s). (a) "a photo of a bird" in the clean '
               'model; (b) the same prompt in a model where fish is poisoned to bicycle (bird itself unpoisoned), '
               'with the poisoned fish prompt beside it; (c) a poisoned concept\'s own prompt: red apple, poisoned '
               'to top hat (our plan poisons bird last, so the paper\'s "bird → chandelier" is replaced by its '
               'Figure 4 attack).')
    if not pts:
        return Built([], caption, missing=[f"no continuous run with saved maps: {EMP_COMMANDS['continuous']}"])
    clean = pts[0] if int(pts[0][0]["c_p"]) == 0 else None
    fish = next(((r, p) for r, p in pts if "fish" in p.poisoned and "bird" not in p.poisoned), None)
    apple = next(((r, p) for r, p in pts if "red apple" in p.poisoned), None)
    rows, missing = [], []
    if clean:
        rows.append(("(a) clean\nbird", _cells(clean[1], "bird")))
    else:
        missing.append("the clean point C_P = 0")
    if fish:
        r, p = fish
        targets = load_plan_targets(r)
        rows.append((f"(b) C_P={r['c_p']}\nbird", _cells(p, "bird")))
        rows.append((f"(b) C_P={r['c_p']}\nfish → {targets.get('fish', '?')}", _cells(p, "fish")))
    else:
        missing.append("a point with fish poisoned and bird not")
    if apple:
        r, p = apple
        targets = load_plan_targets(r)
        if clean:
            rows.append(("(c) clean\nred apple", _cells(clean[1], "red apple")))
        rows.append((f"(c) C_P={r['c_p']}\nred apple → {targets.get('red apple', '?')}", _cells(p, "red apple")))
    rows = [(lab, cells) for lab, cells in rows if cells]
    if not rows:
        return Built([], caption, missing=missing or ["no saved images of bird, fish or red apple"])
    files = _grid(rows, "Poisoning one concept: images and cross-attention maps", "fig2", out,
                  _col_titles(SHOWN_PER_PANEL))
    used = [x[0] for x in (clean, fish, apple) if x]
    return Built(files, caption, _prov(src, emp, used), missing)


def fig3(src: Sources, out: Path) -> Built:
    """Unpoisoned spiral shell and balloon as C_P grows."""
    emp = src.empirical()
    pts = _points(emp, "continuous")
    concepts = ("spiral shell", "balloon")
    caption = ("Implosion on unpoisoned concepts (paper Figure 3), continuous training: one generated image and "
               "its cross-attention map for spiral shell and balloon in models with increasing C_P (the columns); "
               "both concepts stay unpoisoned in every column shown.")
    usable = [(r, p) for r, p in pts if not any(c in p.poisoned for c in concepts)]
    if not usable:
        return Built([], caption, missing=[f"continuous points with saved maps: {EMP_COMMANDS['continuous']}"])
    rows = []
    for c in concepts:
        imgs, ovs = [], []
        for _, p in usable:
            cells = _cells(p, c)
            imgs.append(cells[0] if cells else np.zeros((8, 8, 3), np.uint8))
            ovs.append(cells[1] if cells else np.zeros((8, 8, 3), np.uint8))
        rows += [(f"{c}\nimage", imgs), (f"{c}\nattention", ovs)]
    files = _grid(rows, "Unpoisoned concepts as more concepts are poisoned", "fig3", out,
                  [f"C_P = {r['c_p']}" for r, _ in usable])
    return Built(files, caption, _prov(src, emp, [r for r, _ in usable]))


def fig4(src: Sources, out: Path) -> Built:
    """Red apple (poisoned to top hat) and turtle (unpoisoned) per training scenario."""
    emp = src.empirical()
    caption = ("Implosion across training scenarios (paper Figure 4): for each scenario, red apple (poisoned to "
               "top hat) and turtle (unpoisoned) in the clean model and in the most-poisoned model in which turtle "
               "is still unpoisoned; image and cross-attention map per cell.")
    rows, used, missing = [], [], []
    for scenario in ("scratch", "continuous", "lora"):
        pts = _points(emp, scenario)
        clean = next(((r, p) for r, p in pts if int(r["c_p"]) == 0), None)
        poisoned = [(r, p) for r, p in pts if "red apple" in p.poisoned and "turtle" not in p.poisoned]
        if not pts or not poisoned:
            missing.append(f"{scenario}: {EMP_COMMANDS[scenario]}")
            continue
        r, p = poisoned[-1]
        cells: list[np.ndarray] = []
        for c in ("red apple", "turtle"):
            before = _cells(clean[1], c)[:2] if clean else []
            after = _cells(p, c)[:2]
            cells += (before or [_blank(), _blank()]) + (after or [_blank(), _blank()])
        rows.append((f"{scenario}\nC_P = {r['c_p']}", cells))
        used += [r] + ([clean[0]] if clean else [])
    if not rows:
        return Built([], caption, missing=missing)
    titles = ["red apple\nclean model", "map", "red apple\npoisoned", "map",
              "turtle\nclean model", "map", "turtle\npoisoned model", "map"]
    files = _grid(rows, "Training scenarios: poisoned red apple, unpoisoned turtle", "fig4", out, titles)
    return Built(files, caption, _prov(src, emp, used), missing)
