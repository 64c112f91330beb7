"""Every documented command runs: each shell command in README.md and docs/ that starts a project module is
parsed and validated by that module with ``--dry-run`` (nothing computed or written).

Commands come from fenced code blocks (continuation lines joined, ``&&`` / ``;`` / ``|`` split) and from inline
code spans that start with ``python -m`` and give arguments (not synopses with ``[...]``). A command may fail only for an input file or folder that another
documented command produces (the error names a path of the command line); a usage error, an unknown option or a
value the module refuses fails the test, naming the file, the line and the message.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import re
import shlex
from pathlib import Path

import pytest

from implosion_base.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("theory", "simulate", "empirical", "paper_figures")
# figures.md is paper_figures' generated index (git-ignored): its "fed by" lines are synopses, not docs
DOCS = [ROOT / "README.md", *sorted(p for p in (ROOT / "docs").rglob("*.md") if p.name != "figures.md")]
MISSING_INPUT = ("no such file", "does not exist", "is missing", "not a folder", "is not a diffusers")


def _segments(text: str) -> list[tuple[int, str]]:
    """(line number, command) for every project-module command in ``text``."""
    found: list[tuple[int, str]] = []
    lines = text.splitlines()
    in_block, buf, start = False, "", 0
    for i, line in enumerate(lines, 1):
        if line.strip().startswith("```"):
            in_block, buf = not in_block, ""
            continue
        if in_block:
            if not buf:
                start = i
            buf += line.rstrip()
            if buf.endswith("\\"):
                buf = buf[:-1] + " "
                continue
            for part in re.split(r"&&|;|\|", buf.split(" #")[0]):
                found.append((start, part.strip()))
            buf = ""
        else:
            for span in re.findall(r"`([^`]+)`", line):
                # a span with arguments is a command; a bare ``python -m x`` names the entry point
                if re.match(r"\s*(\S*/)?python3? -m \S+ \S", span) and not re.search(r"\[|\.\.\.|…|<", span):
                    found.append((i, span.strip()))
    return [(n, c) for n, c in found if re.search(r"(^|\s)(\S*/)?python3? -m (" + "|".join(PACKAGES) + r")\b", c)]


def _commands() -> list[tuple[str, int, str]]:
    out = []
    for doc in DOCS:
        for n, cmd in _segments(doc.read_text(encoding="utf-8")):
            out.append((str(doc.relative_to(ROOT)), n, cmd))
    return out


COMMANDS = _commands()


def test_the_docs_hold_commands_of_every_package():
    modules = {shlex.split(c)[shlex.split(c).index("-m") + 1].split(".")[0] for _, _, c in COMMANDS}
    assert set(PACKAGES) <= modules and len(COMMANDS) >= 40


def _check(command: str) -> str | None:
    """None when ``command`` parses and validates under ``--dry-run`` (or fails only for a produced input or a
    missing GPU), else why not."""
    words = shlex.split(command)
    module = words[words.index("-m") + 1]
    args = words[words.index("-m") + 2:]
    main = importlib.import_module(module if module != "paper_figures" else "paper_figures.__main__").main
    err = io.StringIO()
    try:
        with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.redirect_stderr(err):
            status = main([*args, "--dry-run"])
    except SystemExit as exc:  # argparse: a usage error
        return f"not a valid command line: {err.getvalue().strip()} (exit {exc.code})"
    except InputError as exc:
        message = str(exc)
        if "needs a CUDA GPU" in message:
            return None  # a GPU command, checked up to the GPU this machine lacks
        named = any(w.rstrip("/") in message for w in args if len(w) > 2 and not w.startswith("-"))
        # otherwise only an input that another documented command produces may be missing
        return None if named and any(m in message for m in MISSING_INPUT) else f"refused: {message}"
    if status != 0:
        return f"returned {status}"
    return None if "dry run" in out.getvalue() else "ran without honouring --dry-run"


@pytest.mark.parametrize("doc, line, command", COMMANDS, ids=[f"{d}:{n}" for d, n, _ in COMMANDS])
def test_documented_command_parses_and_validates(doc, line, command, monkeypatch):
    if "$" in command:
        pytest.skip("a shell variable: the loop around it is shown, not one command")
    monkeypatch.chdir(ROOT)
    problem = _check(command)
    assert problem is None, f"{doc}:{line}: `{command}` {problem}"


@pytest.mark.parametrize("command, why", [
    ("python -m simulate.sweep --conceptz 1..5", "not a valid command line"),
    ("python -m simulate.sweep --poisoned-concepts 0..5000", "refused: --concepts asks for C_P = 5000"),
    ("python -m empirical.run --preset smoke --poisoned-concepts 0,100", "exceeds the number of concepts"),
    ("python -m theory.ad missing.npz --top -1", "refused: --top must be in [0, inf]"),
])
def test_the_check_catches_broken_commands(command, why, monkeypatch):
    """The check can fail: a misspelt option, values the module refuses."""
    monkeypatch.chdir(ROOT)
    problem = _check(command)
    assert problem is not None and why in problem


def test_the_extractor_joins_continuations_and_splits_chains():
    text = "```bash\nmake x && .venv/bin/python -m simulate.sweep \\\n    --seeds 2 | tee log\n```\n" \
           "see `python -m theory.ad emb.npz --json` and `python -m theory.ad FILE [--alpha A]`\n"
    assert [" ".join(c.split()) for _, c in _segments(text)] == [".venv/bin/python -m simulate.sweep --seeds 2",
                                                                "python -m theory.ad emb.npz --json"]


@pytest.mark.parametrize("command", [
    "python -m simulate.sweep --poisoned-concepts 0..10 --n-concepts 20 --out {out}",
    "python -m simulate.experiments phase --out {out}",
    "python -m simulate.predict --n-concepts 20 --benign-per-concept 4 --poison-per-concept 8 "
    "--poisoned-concepts 0,5 --dim 8 --out {out}",
    "python -m empirical.run --preset micro --poisoned-concepts 0,1 --out {out}",
    "python -m empirical.defence --preset micro --poisoned-concepts 1 --out {out}",
    "python -m empirical.embed --builtin --preset micro --out {out}/e.npz",
    "python -m empirical.pretrained tiny {out}",
    "python -m paper_figures fig3 --out {out}",
])
def test_dry_run_writes_nothing(command, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    out = tmp_path / "never"
    assert _check(command.format(out=out)) is None
    assert not out.exists()


def test_every_committed_result_folder_is_inventoried():
    """docs/data/README.md names every folder under docs/data (a glob like ``emp-cpu-lora8-p{80,160}-b*`` counts),
    and every empirical folder there holds the results and the manifest that say how it was made (a detector
    folder its detection table, a figure point its images)."""
    import fnmatch
    import re

    data = ROOT / "docs" / "data"
    text = (data / "README.md").read_text()
    names = set()
    for token in re.findall(r"`([^`/ ]+)/?`", text):
        for alt in _braces(token):
            names.add(alt)
    folders = sorted(p.name for p in data.iterdir() if p.is_dir())
    unlisted = [f for f in folders if not any(fnmatch.fnmatch(f, n) for n in names)]
    assert not unlisted, f"docs/data/README.md does not name {unlisted}"
    for f in folders:
        if f.startswith("emp-"):
            assert (data / f / "results.csv").is_file() and (data / f / "manifest.json").is_file(), f
        if f.startswith("defence-"):
            assert (data / f / "detection.csv").is_file(), f
    # a figure point is its record and its images: a clean clone must hold both (``*.npz`` once kept the images
    # out of the repository, so F2-F4 could not be rebuilt from it)
    lonely = [str(js.relative_to(data)) for js in sorted(data.glob("*/points/*.json"))
              if not js.with_name(js.stem + "-attention.npz").is_file()]
    assert not lonely, f"figure points without their images: {lonely}"


def _braces(token: str) -> list[str]:
    """``a{1,2}b`` -> [a1b, a2b] (shell brace expansion, nested left to right)."""
    import re

    m = re.search(r"\{([^{}]*)\}", token)
    if not m:
        return [token]
    return [x for alt in m.group(1).split(",") for x in _braces(token[:m.start()] + alt + token[m.end():])]
