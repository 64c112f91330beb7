"""Which concept a caption names: from a list of concept names, or from a caption template.

Shared by the empirical harness (a user's folder, ``empirical.folder_data``) and the dataset audit
(``dataset_audit``): a pair belongs to the concept whose name its caption contains (whole words,
case-insensitive; a name inside a longer matched name, "apple" in "red apple", counts as the longer one; a caption
naming two concepts is ambiguous and left out), or to what fills the braces of a template such as
``"a photo of a {}"``.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np

from implosion_base.errors import InputError


def read_concepts_file(path: Path) -> list[str]:
    """Concept names, one per non-empty line (``#`` starts a comment), unique, at least two."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"--concepts-file {path}: no such file")
    names: list[str] = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        name = line.split("#")[0].strip()
        if name and name.lower() not in (n.lower() for n in names):
            names.append(name)
    if len(names) < 2:
        raise InputError(f"--concepts-file {path} names {len(names)} concept(s); poisoning needs at least 2")
    return names


def concept_of_captions(captions: list[str], *, names: list[str] | None = None, template: str | None = None
                        ) -> tuple[np.ndarray, list[str], dict[str, int]]:
    """Each caption's concept index (−1: none or ambiguous), the concept names, and how many captions were left
    out and why. With ``names``: the concept whose name the caption contains (whole words, case-insensitive; two
    names → ambiguous; a name inside a longer one, "apple" in "red apple", counts only the longer). With
    ``template`` (one ``{}``): the concept is the text filling the braces; the names are those found, sorted."""
    if (names is None) == (template is None):
        raise InputError("give the concepts as names (--concepts-file) or as a caption template, one of the two")
    why: Counter = Counter()
    if template is not None:
        if template.count("{}") != 1:
            raise InputError(f"--caption-template must hold exactly one {{}}, got {template!r}")
        head, tail = (re.escape(x) for x in template.split("{}"))
        pattern = re.compile(rf"^\s*{head}(.+?){tail}\s*$", re.IGNORECASE)
        found = [m.group(1).strip().lower() if (m := pattern.match(c)) else None for c in captions]
        names = sorted({f for f in found if f})
        index = {n: i for i, n in enumerate(names)}
        labels = np.array([index[f] if f else -1 for f in found], dtype=np.int64)
        why["do not match the caption template"] = int(np.sum(labels < 0))
        return labels, names, {k: v for k, v in why.items() if v}
    patterns = [re.compile(rf"(?<![\w-]){re.escape(n.lower())}(?![\w-])") for n in names]
    labels = np.full(len(captions), -1, dtype=np.int64)
    for i, c in enumerate(captions):
        low = c.lower()
        spans = [(j, m.span()) for j, p in enumerate(patterns) for m in [p.search(low)] if m]
        # a name inside a longer name's match ("apple" in "red apple") is that longer name
        spans = [(j, s) for j, s in spans if not any(k != j and t[0] <= s[0] and s[1] <= t[1] and t != s
                                                     for k, t in spans)]
        hit = sorted({j for j, _ in spans})
        if len(hit) == 1:
            labels[i] = hit[0]
        else:
            why["name no concept" if not hit else "name more than one concept"] += 1
    return labels, list(names), {k: v for k, v in why.items() if v}
