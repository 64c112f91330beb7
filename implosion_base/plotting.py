"""One look for every picture the toolkit draws — the paper's figures (``paper_figures``) and the plots a command
writes beside its results (the sweep's, the audit's, the harness report's): sizes at paper column width, colours
that mean the same thing everywhere, one way to save.

- poisoned concepts are red, unpoisoned concepts blue, same-volume controls grey (dashed), clean models black;
- scenarios keep one colour each (scratch purple, continuous blue-green, LoRA orange);
- a single-column figure is 3.4 in wide, a full-width one 7.0 in; fonts 8 pt so text stays readable when the PDF is
  placed at that width;
- :func:`save` writes a paper figure (PNG at 200 dpi and PDF), :func:`save_png` a command's plot, both atomically;
- :func:`grid_image` lays generated images out as a labelled grid (a row per name), as runs save their samples.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

POISONED = "#c0392b"
UNPOISONED = "#1f5fa8"
CONTROL = "#7f7f7f"
CLEAN = "#111111"
SCENARIO_COLOURS = {"scratch": "#7b3fa0", "continuous": "#138d75", "lora": "#d35400"}
TYPE_COLOURS = {"dirty": POISONED, "nightshade": "#8e44ad"}
RULE_COLOURS = {"nearest": "#c0392b", "random": "#7b3fa0", "farthest": "#1f5fa8"}
COLUMN = 3.4
FULL = 7.0


def pyplot():
    """matplotlib.pyplot on the Agg backend with the house rcParams (no global state beyond matplotlib's own)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({
        "font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "legend.fontsize": 7, "xtick.labelsize": 7,
        "ytick.labelsize": 7, "axes.spines.top": False, "axes.spines.right": False, "legend.frameon": False,
        "savefig.bbox": "tight", "savefig.pad_inches": 0.03, "figure.dpi": 100,
    })
    return plt


def panel_letters(axes, *, start: str = "a") -> None:
    """Label panels (a), (b), ... in reading order, in bold at each panel's top-left corner (outside the axes),
    so a caption and a text can name them."""
    for i, ax in enumerate(axes):
        ax.text(-0.02, 1.02, f"({chr(ord(start) + i)})", transform=ax.transAxes, ha="right", va="bottom",
                fontsize=8, fontweight="bold")


def save_png(fig, path: Path, *, dpi: int = 200) -> Path:
    """Write ``fig`` to the PNG ``path`` atomically (a kill leaves no half-written picture) and close it."""
    from implosion_base.files import atomic_path

    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, dpi=dpi)
    pyplot().close(fig)
    return Path(path)


def save(fig, out: Path, key: str) -> list[Path]:
    """Write ``key``.png (200 dpi) and ``key``.pdf into ``out``; close the figure; return both paths."""
    plt = pyplot()
    paths = [out / f"{key}.png", out / f"{key}.pdf"]
    fig.savefig(paths[0], dpi=200)
    fig.savefig(paths[1])
    plt.close(fig)
    return paths


def legend(ax, **kwargs) -> None:
    """``ax.legend`` only when something on ``ax`` carries a label (no empty-legend warning)."""
    handles, _ = ax.get_legend_handles_labels()
    if handles:
        ax.legend(**kwargs)


def attack_vs_p_axes(ax, ticks, *, xlabel: str, title: str, symlog: bool = False) -> None:
    """The axes of an attack-success-vs-p panel: log (or symlog, for p = 0) x with plain tick labels at
    ``ticks``, success on [0, 1], labels, title and legend."""
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    if symlog:
        ax.set_xscale("symlog", linthresh=2)
    else:
        ax.set_xscale("log")
    if len(ticks):
        ax.set_xticks(list(ticks))
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(xlabel)
    ax.set_ylabel("attack success")
    ax.set_ylim(-0.03, 1.03)
    ax.set_title(title)
    legend(ax, fontsize=6)


def grid_image(images: np.ndarray, rows: list[str], per_row: int, scale: int = 2):
    """A labelled PNG grid: one row of ``per_row`` images per name (images in row-major order)."""
    from PIL import Image, ImageDraw

    h = images.shape[1] * scale
    label_w = 90
    canvas = Image.new("RGB", (label_w + per_row * h, len(rows) * h), "white")
    draw = ImageDraw.Draw(canvas)
    for r, name in enumerate(rows):
        draw.text((2, r * h + h // 2 - 5), name[:14], fill="black")
        for j in range(per_row):
            im = Image.fromarray(images[r * per_row + j]).resize((h, h), Image.NEAREST)
            canvas.paste(im, (label_w + j * h, r * h))
    return canvas
