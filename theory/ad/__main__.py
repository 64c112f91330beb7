"""``python -m theory.ad FILE``: the command line of :mod:`theory.ad.cli`."""

from implosion_base.cli import run_main
from theory.ad.cli import main

run_main(main, prog="python -m theory.ad")
