"""simulate: synthetic supervised graph alignment under poisoning (DESIGN.md §4).

Not built yet: concepts, poisoning, alignment solvers and ``python -m simulate.sweep`` arrive with the
simulator issue. Depends on :mod:`theory` only.
"""
