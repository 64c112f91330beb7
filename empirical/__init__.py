"""empirical: poisoning a real latent text-to-image model and measuring implosion (docs/design.md §6).

Modules, one idea each: :mod:`empirical.data` (emoji concepts rendered from packaged fonts; imagefolder loader),
:mod:`empirical.encoders` (frozen MiniLM text encoder; the contrastive judge; Fréchet distance),
:mod:`empirical.model` (tiny AutoencoderKL + UNet2DConditionModel as a StableDiffusionPipeline),
:mod:`empirical.poisons` (dirty-label poison plans and pairs), :mod:`empirical.train` (DDPM training, EMA,
resumable checkpoints), :mod:`empirical.evaluate` (measures per C_P, AD of the training mix via theory.ad),
:mod:`empirical.presets` and :mod:`empirical.run` (the ``python -m empirical.run`` experiment).
Depends on :mod:`theory` only; needs the ``empirical`` extra.
"""
