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


def test_every_command_module_has_a_script():
    targets = set(_scripts().values())
    mains = {str(p.relative_to(ROOT))[:-3].replace("/", ".") for pkg in ("theory", "simulate", "empirical")
             for p in (ROOT / pkg).glob("*.py") if 'if __name__ == "__main__":' in p.read_text()}
    mains.add("paper_figures.__main__")
    assert {t.split(":")[0] for t in targets} == mains


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
