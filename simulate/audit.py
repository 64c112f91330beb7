"""``python -m simulate.audit``: the dataset audit's old address, kept for one release — the audit is now a package
of its own, ``python -m dataset_audit`` (same options, same outputs).

This module forwards the command (it runs ``dataset_audit`` as ``__main__``, after a one-line note on stderr); it
imports none of the audit's code, so ``simulate`` stays below the audit in the layers (docs/design.md §1).
"""

#: The command this old address forwards to.
FORWARDS_TO = "dataset_audit"

if __name__ == "__main__":
    import runpy
    import sys

    sys.stderr.write("note: python -m simulate.audit is now python -m dataset_audit (the old name runs it for one "
                     "release)\n")
    runpy.run_module(FORWARDS_TO, run_name="__main__", alter_sys=True)
