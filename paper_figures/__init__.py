"""paper_figures: regenerates every figure and table of the paper from results (DESIGN.md §1).

Not built yet: arrives once the simulator and the empirical harness land.
"""
