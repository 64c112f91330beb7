"""The list of figures and tables: key, title, what it shows, the command that feeds it, and its builder.

Keys follow the issue's numbering (F1–F18 as ``fig1``..``fig18``, T1–T12 as ``tab1``..``tab12``; T9 came with the
meaningless rate's known-truth check, T10 and F17 with the learnability predictor, T11 and F18 with its gauged
form, T12 with the meaningless rate calibrated on the clean model's samples); ``F3``/``T1`` and
any case are accepted on the command line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from paper_figures import (attention_figures, audit_figures, diagram, empirical_figures, learnability_figures,
                           measure_checks, prediction_figures, simulation_figures, tables, verdicts)
from paper_figures.built import Built
from paper_figures.sources import EMP_COMMANDS, SIM_COMMAND, Sources

Builder = Callable[[Sources, Path], Built]


@dataclass(frozen=True)
class Item:
    key: str
    title: str
    shows: str
    feeds: str
    build: Builder
    paper: str = ""  # the paper figure it reproduces, if any


_EMP_ALL = f"{EMP_COMMANDS['continuous']}; {EMP_COMMANDS['scratch']}; {EMP_COMMANDS['lora']}"

ITEMS: tuple[Item, ...] = (
    Item("fig1", "Training pipeline of a latent diffusion model", "diagram: text encoder → cross-attention ← image "
         "latents", "none (drawn)", diagram.fig1, "Figure 1"),
    Item("fig2", "Single-concept poisoning", '"bird" images + cross-attention maps: clean, fish→bicycle poisoned, '
         "a poisoned concept's own prompt", EMP_COMMANDS["continuous"], attention_figures.fig2, "Figure 2"),
    Item("fig3", "Implosion on unpoisoned concepts", "spiral shell and balloon images + maps as C_P grows",
         EMP_COMMANDS["continuous"], attention_figures.fig3, "Figure 3"),
    Item("fig4", "Implosion across training scenarios", "red apple (poisoned → top hat) and turtle (unpoisoned), "
         "scratch / continuous / LoRA", _EMP_ALL, attention_figures.fig4, "Figure 4"),
    Item("fig5", "G_txt and G_img", "the two similarity graphs of a small training set and its mismatched edges",
         "none (built on the spot from simulate + theory.graphs)", simulation_figures.fig5, "Figure 5"),
    Item("fig6", "AD vs C_P in simulation", "simulated AD (95% CI) and the block-model closed form, four regimes",
         SIM_COMMAND, simulation_figures.fig6),
    Item("fig7", "Conjecture 4.1: attack success vs poison pairs", "simulation (target rules) and the real model "
         "(dirty-label and Nightshade-style)", f"{SIM_COMMAND}; {EMP_COMMANDS['p']}", empirical_figures.fig7),
    Item("fig8", "Implosion in simulation", "unpoisoned accuracy and meaningless rate vs C_P and vs AD, per solver "
         "and capacity", SIM_COMMAND, simulation_figures.fig8),
    Item("fig9", "Implosion on the real model", "AD of the mix and unpoisoned-concept measures vs C_P per scenario, "
         "with controls", _EMP_ALL, empirical_figures.fig9),
    Item("fig10", "Cross-attention statistics vs C_P", "attention share, entropy and concentration of the concept "
         "maps, poisoned vs unpoisoned", _EMP_ALL, empirical_figures.fig10),
    Item("fig11", "AD-attribution poison detector", "precision–recall against known poisons, dirty-label vs "
         "Nightshade-style", EMP_COMMANDS["defence"], empirical_figures.fig11),
    Item("fig12", "Phase diagram of implosion", "threshold poison volume V against p/m per capacity and K; "
         "accuracy over (V, p/m)", "python -m simulate.experiments phase --out results/experiments --workers 2",
         simulation_figures.fig12),
    Item("fig13", "AD at fixed poison volume", "damage against AD across poison configurations at equal volume, "
         "raw and centred within volume", "python -m simulate.experiments ad-volume --out results/experiments",
         simulation_figures.fig13),
    Item("fig14", "Predicted vs measured implosion", "the simulator's pre-registered accuracy bands over V with the "
         "real model's poisoned points and controls", prediction_figures.FEEDS, prediction_figures.fig14),
    Item("fig15", "Capacity at fixed volume", "unpoisoned accuracy and attack success at V = 4 per LoRA rank and "
         "UNet size, poisoned runs and controls", prediction_figures.CAPACITY_FEEDS, prediction_figures.fig15),
    Item("fig16", "The audit in a CLIP-like space", "AP of the audit's AD share and of the concept disagreement vs "
         "poison pairs per concept, per poison kind and strength", audit_figures.FEEDS, audit_figures.fig16),
    Item("tab1", "AD of clean vs poisoned mixes", "simulation regimes and the real model's training mixes",
         f"{SIM_COMMAND}; {_EMP_ALL}", tables.tab1),
    Item("tab2", "Implosion thresholds", "first C_P with unpoisoned accuracy < 0.5, per regime and scenario",
         f"{SIM_COMMAND}; {_EMP_ALL}", tables.tab2),
    Item("tab3", "Symbolic check of Theorem 4.2", "every check of python -m theory.check with its verdict",
         "python -m theory.check", tables.tab3),
    Item("tab4", "Regime map of the real model", "per regime and C_P, never-poisoned concepts minus the same-volume "
         "control per seed, and attack success", _EMP_ALL, tables.tab4),
    Item("tab5", "Predictions scored", "predicted vs measured unpoisoned accuracy per (p, C_P), hit or miss, and "
         "the threshold C_P", prediction_figures.FEEDS, prediction_figures.tab5),
    Item("tab6", "The dataset audit on known truth", "per validated mix: flags' precision / recall, AP, estimated vs "
         "true C_P and p, predicted accuracy", tables.AUDIT_FEEDS, tables.tab6),
    Item("tab7", "Implosion verdicts", "per regime and poison volume: never-poisoned concepts against their "
         "controls, KID and meaningless gaps, attack success, implosion or not (and at V >= 3)", verdicts.FEEDS,
         verdicts.tab7),
    Item("tab8", "The audit in a CLIP-like space", "per poison and p: flags, AP of the AD share and two baselines, "
         "Ĉ_P error, mixes where AP >= 0.9 and Ĉ_P within ±10 %", audit_figures.FEEDS, audit_figures.tab8),
    Item("tab9", "The meaningless rate on known truth", "per data set and image family: the meaningless rate and the "
         "no-standout rate on images meaningless by construction and on clean renders", measure_checks.FEEDS,
         measure_checks.tab9),
    Item("tab10", "The learnability predictor on held-out settings", "registered predictions against the measured "
         "held-out runs: hits within ±0.10 and mean errors, with the constant, V-alone and attack-success baselines",
         learnability_figures.LINEAR.feeds, learnability_figures.tab10),
    Item("fig17", "Predicted vs measured on held-out settings", "the learnability predictor's registered "
         "predictions against the measured held-out settings, by scenario, with the ±0.10 band",
         learnability_figures.LINEAR.feeds, learnability_figures.fig17),
    Item("tab11", "The gauged learnability predictor on held-out settings", "the second registration (the gauged "
         "form, calibrated on every earlier run, OpenMoji's included) against its held-out runs, on a data set no "
         "calibration run used (Noto alone) among them: hits and mean errors with the three baselines",
         learnability_figures.GAUGED.feeds, learnability_figures.tab11),
    Item("fig18", "Predicted vs measured, the gauged form", "the gauged form's registered predictions against its "
         "measured held-out settings, by scenario, with the ±0.10 band", learnability_figures.GAUGED.feeds,
         learnability_figures.fig18),
    Item("tab12", "The meaningless rate on generated images", "per rerun point: the never-poisoned concepts' "
         "images read by the meaningless, off-render and no-standout rates, poisoned against its control",
         measure_checks.RERUN_FEEDS, measure_checks.tab12),
)

BY_KEY = {item.key: item for item in ITEMS}


def resolve(name: str) -> Item:
    """The item called ``name`` (fig3, F3, f3, tab1, T1, ...); KeyError if none."""
    n = name.strip().lower()
    if n.startswith("f") and n[1:].isdigit():
        n = "fig" + n[1:]
    elif n.startswith("t") and n[1:].isdigit():
        n = "tab" + n[1:]
    return BY_KEY[n]
