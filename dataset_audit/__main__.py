"""``python -m dataset_audit``: the command line of :mod:`dataset_audit.cli`."""

from dataset_audit.cli import main
from implosion_base.cli import run_main

run_main(main, prog="python -m dataset_audit")
