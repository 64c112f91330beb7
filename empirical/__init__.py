"""empirical: the same predictions on real trained text-to-image models (diffusers + transformers; DESIGN.md §5).

Not built yet: arrives with the empirical-harness issues. Depends on :mod:`theory` only; needs the
``empirical`` extra (torch, diffusers, transformers, accelerate, peft).
"""
