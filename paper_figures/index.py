"""``figures.md``: the index of everything built into an output folder, in registry order.

Each built item leaves ``<key>.json`` (title, caption, files, sources, missing data) beside its files; the index is
rebuilt from those records, so building one figure later keeps the others' entries.
"""

from __future__ import annotations

import json
from pathlib import Path

from paper_figures.registry import ITEMS
from implosion_base.files import atomic_write_text


def write_index(out: Path) -> Path:
    """Rewrite ``out/figures.md`` from the ``<key>.json`` records found in ``out``; return its path."""
    lines = ["# Figures and tables", "",
             "Built by `python -m paper_figures`; each entry says which data it was built from and what would "
             "complete it.", ""]
    for item in ITEMS:
        path = out / f"{item.key}.json"
        if not path.is_file():
            continue
        rec = json.loads(path.read_text(encoding="utf-8"))
        paper = f" (paper {rec['paper']})" if rec.get("paper") else ""
        lines += [f"## {item.key}: {rec['title']}{paper}", ""]
        if rec.get("quick"):
            lines += ["*Quick build: smallest presets; the numbers only show that the pipeline runs.*", ""]
        png = [f for f in rec["files"] if f.endswith(".png")]
        if png:
            lines += [f"![{rec['title']}]({png[0]})", ""]
        if rec.get("markdown"):
            lines += [rec["markdown"], ""]
        lines += [rec["caption"], ""]
        if rec.get("sources"):
            lines += ["Data: " + "; ".join(rec["sources"]), ""]
        if rec.get("missing"):
            lines += ["Missing (run to complete): " + "; ".join(f"`{m}`" if m.startswith("python") else m
                                                                 for m in rec["missing"]), ""]
        lines += [f"Fed by: `{rec['feeds']}`", ""]
    path = out / "figures.md"
    atomic_write_text(path, "\n".join(lines))
    return path
