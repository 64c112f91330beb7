"""``python -m dataset_audit``: the command line of :mod:`dataset_audit.command`."""

from dataset_audit.command import main
from implosion_base.cli import run_main

run_main(main, prog="python -m dataset_audit")
