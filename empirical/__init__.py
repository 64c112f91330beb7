"""empirical: poisoning a real latent text-to-image model and measuring implosion (docs/design.md §6).

Modules, one idea each: :mod:`empirical.data` (emoji concepts rendered from packaged fonts),
:mod:`empirical.folder_data` (users' image-text folders), :mod:`empirical.text_encoder` (the frozen MiniLM),
:mod:`empirical.judge` (the measuring instrument: a contrastive judge, or a local CLIP),
:mod:`empirical.model` (AutoencoderKL + UNet2DConditionModel as a StableDiffusionPipeline),
:mod:`empirical.poisons` (poison plans, dirty-label pairs, Nightshade-style PGD), :mod:`empirical.poison_kinds`
(the registry of poison kinds), :mod:`empirical.scenarios` (the registry of training scenarios),
:mod:`empirical.train` (the DDPM objective, EMA, resumable checkpoints), :mod:`empirical.lora`, :mod:`empirical.evaluate`
(measures of a point, AD of the training mix via theory.ad), :mod:`empirical.meaningless` (the meaningless rate,
checked on known truth by :mod:`empirical.known_truth`), :mod:`empirical.data_set` (the identity of the data set a
run used), :mod:`empirical.probe` and :mod:`empirical.calibration_table` (the learnability predictor's probe and
calibration runs), :mod:`empirical.assets` (what every point shares),
:mod:`empirical.point` (one point: mix, train, measure, write), :mod:`empirical.experiment` (the points of one
output folder), :mod:`empirical.layout` (that folder's files and setting), :mod:`empirical.request` and
:mod:`empirical.run` (the ``python -m empirical.run`` command line). Depends on :mod:`theory` and
:mod:`implosion_base` only; needs the ``empirical`` extra. Public names load on first use (importing ``empirical``
loads neither torch nor diffusers).
"""

from implosion_base.lazy import lazy_exports

_EXPORTS = {
    "Assets": "empirical.assets",
    "Instruments": "empirical.assets",
    "prepare_assets": "empirical.assets",
    "Experiment": "empirical.experiment",
    "run_experiment": "empirical.experiment",
    "load_pipeline": "empirical.model",
    "POISON_KINDS": "empirical.poison_kinds",
    "harness_plan": "empirical.poisons",
    "NightshadeConfig": "empirical.poisons",
    "PRESETS": "empirical.presets",
    "get_preset": "empirical.presets",
    "load_results": "empirical.report",
    "SCENARIOS": "empirical.scenarios",
}

__all__, __getattr__, __dir__ = lazy_exports("empirical", _EXPORTS)
