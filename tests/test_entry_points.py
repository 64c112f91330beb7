"""``[project.scripts]``: every console script names a module's ``cli``, which runs that module's command behind
the same one-line error boundary as ``python -m``."""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _scripts() -> dict[str, str]:
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]


COMMAND_PACKAGES = ("theory", "simulate", "empirical", "dataset_audit")


def test_every_command_module_has_a_script():
    """Every command has a console script; an old address that forwards to a command (``FORWARDS_TO``) is no
    command of its own, and what it forwards to is one."""
    targets = {t.split(":")[0] for t in _scripts().values()}
    commands = [p for pkg in COMMAND_PACKAGES for p in (ROOT / pkg).glob("*.py")
                if 'if __name__ == "__main__":' in p.read_text()]
    forwards = {p: importlib.import_module(str(p.relative_to(ROOT))[:-3].replace("/", ".")).FORWARDS_TO
                for p in commands if "FORWARDS_TO = " in p.read_text()}
    mains = {str(p.relative_to(ROOT))[:-3].replace("/", ".") for p in commands if p not in forwards}
    mains |= {str(p.parent.relative_to(ROOT)).replace("/", ".") for pkg in COMMAND_PACKAGES
              for p in (ROOT / pkg).glob("*/__main__.py")}  # a command that is a package (theory.ad)
    mains |= {pkg for pkg in COMMAND_PACKAGES if (ROOT / pkg / "__main__.py").is_file()}  # python -m dataset_audit
    assert set(forwards.values()) <= mains
    packages = {m for m in mains if (ROOT / m.replace(".", "/") / "__main__.py").is_file()}
    targets = {t if t in mains else next((pkg for pkg in packages if t == pkg or t.startswith(pkg + ".")), t)
               for t in targets}  # a package's own script may live in one of its modules (dataset_audit.command)
    mains.add("paper_figures.__main__")
    assert targets == mains


@pytest.mark.parametrize("script, target", sorted(_scripts().items()))
def test_script_targets_are_callable_and_answer_help(script, target):
    module, func = target.split(":")
    assert callable(getattr(importlib.import_module(module), func))
    exe = shutil.which(script, path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip(f"{script} is not installed in this environment (pip install -e . makes it)")
    proc = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "usage:" in proc.stdout
    bad = subprocess.run([exe, "--no-such-option"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1


class _Captured(Exception):
    pass


@pytest.mark.parametrize("target", sorted(set(_scripts().values())))
def test_every_help_states_every_default_and_choice(target, monkeypatch):
    """Each command's ``--help``: every option with a default says it, every option with fixed choices lists
    them (argparse's ``{a,b}``), checked on the parser the command really builds."""
    import argparse

    from implosion_base.cli import ArgumentParser

    built: list[ArgumentParser] = []

    def capture(self, *args, **kwargs):
        built.append(self)
        raise _Captured

    monkeypatch.setattr(ArgumentParser, "parse_args", capture)
    module = importlib.import_module(target.split(":")[0])
    with pytest.raises(_Captured):
        module.main(["--help"])
    parser = built[0]
    text = parser.format_help()
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._StoreTrueAction, argparse._StoreFalseAction)):
            continue
        name = action.option_strings[0] if action.option_strings else action.dest
        if action.default not in (None, argparse.SUPPRESS):
            assert action.help and "default" in action.help, f"{target}: {name} hides its default"
        if action.choices:
            assert "{" + ",".join(map(str, action.choices)) + "}" in text, f"{target}: {name} hides its choices"


@pytest.mark.parametrize("script, target", sorted(_scripts().items()))
def test_every_command_says_its_version(script, target):
    from importlib import metadata

    module = target.split(":")[0].removesuffix(".__main__")
    proc = subprocess.run([sys.executable, "-m", module, "--version"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[-1] == metadata.version("implosion-toolkit")


@pytest.mark.parametrize("package", ["implosion_base", "theory", "simulate", "empirical", "dataset_audit",
                                     "paper_figures"])
def test_public_submodules_are_attributes_of_their_package(package):
    code = (f"import {package}, pkgutil\n"
            f"names = [m.name for m in pkgutil.iter_modules({package}.__path__) if not m.name.startswith('_')]\n"
            f"assert names and all(getattr({package}, n).__name__ == '{package}.' + n for n in names), names\n"
            f"try:\n    {package}.no_such_module\nexcept AttributeError:\n    pass\nelse:\n    raise SystemExit(1)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
