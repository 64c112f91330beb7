"""``python -m theory.ad FILE``: the command line of :mod:`theory.ad.command`."""

from implosion_base.cli import run_main
from theory.ad.command import main

run_main(main, prog="python -m theory.ad")
