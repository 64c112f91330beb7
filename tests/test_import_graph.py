"""The packages' import graph, read from the source (every import statement, also those inside functions):
no module imports one of its importers (no circle anywhere), and the layers of docs/design.md hold
(implosion_base ← theory ← {simulate, empirical} ← {dataset_audit, paper_figures})."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("implosion_base", "theory", "simulate", "empirical", "dataset_audit", "paper_figures")
_BASE = {"implosion_base"}
_MIDDLE = _BASE | {"theory", "simulate", "empirical"}
ALLOWED = {"implosion_base": _BASE, "theory": _BASE | {"theory"}, "simulate": _BASE | {"theory", "simulate"},
           "empirical": _BASE | {"theory", "empirical"}, "dataset_audit": _MIDDLE | {"dataset_audit"},
           "paper_figures": _MIDDLE | {"paper_figures"}}


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for f in (ROOT / pkg).rglob("*.py"):
            name = ".".join(f.relative_to(ROOT).with_suffix("").parts)
            out[name.removesuffix(".__init__")] = f
    return out


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, f in mods.items():
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            for n in names:
                while n and n not in mods:
                    n = n.rpartition(".")[0]
                if n and n != m and n not in PACKAGES:
                    graph[m].add(n)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state and (found := visit(n)):
                return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_no_import_circle():
    cycle = _cycle(_graph())
    assert cycle is None, " -> ".join(cycle)


def test_dependency_direction():
    wrong = [(m, n) for m, deps in _graph().items() for n in deps
             if n.split(".")[0] not in ALLOWED[m.split(".")[0]]]
    assert not wrong, wrong


def test_the_checker_finds_a_circle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_modules_and_functions_stay_small():
    """The house rules, everywhere (every package, bench/ and tests/, no exception): no module over 400 lines, no
    function over 60 (docstring included); empirical/run.py the command line only (at most 200 lines)."""
    long_modules, long_functions = [], []
    for path in sorted(p for folder in (*PACKAGES, "bench", "tests") for p in (ROOT / folder).rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        name = path.relative_to(ROOT)
        if len(text.splitlines()) > 400:
            long_modules.append(str(name))
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 60:
                long_functions.append(f"{name}:{node.name} ({node.end_lineno - node.lineno + 1} lines)")
    assert not long_modules and not long_functions, (long_modules, long_functions)
    assert len((ROOT / "empirical" / "run.py").read_text().splitlines()) <= 200


def test_range_checks_go_through_one_helper():
    """Every "knob out of range" message comes from implosion_base.validate.check_scalar: no InputError message
    elsewhere states a numeric bound by hand ("must be >= 1", "must be in (0, 1]"). The checker itself is tested
    on a hand-written one."""
    import re

    pattern = re.compile(r"InputError\(\s*f?[\"'][^\"']*must be (?:>=|>|<=|<|in [(\[])\s*-?[\d{]")
    assert pattern.search('raise InputError(f"--steps must be >= 1, got {s}")')
    offenders = [f"{path.relative_to(ROOT)}:{text[:m.start()].count(chr(10)) + 1}"
                 for name, path in _modules().items() if name != "implosion_base.validate"
                 for text in [path.read_text(encoding="utf-8")] for m in pattern.finditer(text)]
    assert not offenders, offenders
