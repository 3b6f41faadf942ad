"""The whole suite for one dataset: train the plan, run each chosen study, write the report.

The sensitivity study owns its runs: it trains the variants still missing whenever it runs.
A study that cannot run (e.g. the reference model has no complete run) is skipped with a
note in the report; the other studies still run. Tables are written from the runs of one plan
only: a folder holding a run of another config (another preset or budget) stops the stage that
would read it, with one line (:func:`deepm3.phase2.train_all.require_one_plan`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from deepm3.errors import ConfigError, DeepM3Error
from deepm3.phase2.budget import write_budget
from deepm3.phase2.claims import write_claims
from deepm3.phase2.efficiency import write_efficiency
from deepm3.phase2.irregularity_study import write_irregularity
from deepm3.phase2.launch import launcher_from_config
from deepm3.phase2.main_table import write_main_table
from deepm3.phase2.plan import Plan, base_label, mode_view, plan_from_config, plan_seeds, query_modes
from deepm3.phase2.progress import preset_hint
from deepm3.phase2.report import write_report
from deepm3.phase2.results import table_scope
from deepm3.phase2.robustness import write_robustness
from deepm3.phase2.selection import write_selection
from deepm3.phase2.sensitivity import sensitivity_plan, write_sensitivity
from deepm3.phase2.significance_study import write_significance
from deepm3.phase2.train_all import TrainSummary, require_one_plan, run_overrides, train_all
from deepm3.phase2.tune import (
    MAX_EXTENSIONS,
    extension_cap,
    run_tuning,
    tune_plan,
    tuned_overrides,
    write_tuning,
)
from deepm3.phase2.verify import VERIFIED, robustness_from_runs, verify_study
from deepm3.provenance import require_clean_tree
from deepm3.run.identity import same_run_key

log = logging.getLogger(__name__)

Study = Callable[[Plan, Path, DictConfig], list[Path]]


def per_mode(write: Callable[[Plan, Path, DictConfig, str | None, str], list[Path]]) -> Study:
    """A study written once per query mode: the primary mode's files keep their names, another
    mode's get ``_<mode>`` (``main_table_last.md``); each from that mode's runs only."""

    def study(plan: Plan, out: Path, cfg: DictConfig) -> list[Path]:
        modes = query_modes(cfg)
        written = []
        for mode in modes or [None]:
            suffix = "" if mode is None or mode == modes[0] else f"_{mode}"
            view = plan if mode is None else mode_view(plan, modes, mode)
            written += write(view, out, cfg, mode, suffix)
        return written

    return study


STUDIES: dict[str, Study] = {
    "main_table": per_mode(lambda plan, out, cfg, mode, suffix: write_main_table(plan, out, mode, suffix)),
    "significance": per_mode(
        lambda plan, out, cfg, mode, suffix: write_significance(
            plan,
            out,
            cfg.reference,
            cfg.significance_metric,
            [*(cfg.get("extra_references") or []), *(cfg.preset.get("extra_references") or [])],
            mode,
            suffix,
        )
    ),
    "irregularity": lambda plan, out, cfg: write_irregularity(
        plan, out, cfg.reference, cfg.significance_metric, n_boot=int(cfg.bootstrap)
    ),
    "robustness": lambda plan, out, cfg: write_robustness(
        plan,
        out,
        list(cfg.noise_sweeps),
        cfg.significance_metric,
        int(cfg.noise_seed),
        list(cfg.entropy_seeds),
        list(cfg.entropy_channels),
        str(cfg.device),
    ),
    "efficiency": lambda plan, out, cfg: write_efficiency(
        plan,
        out,
        str(cfg.device),
        list(cfg.preset.get("efficiency", [])),
        [*cfg.dataset_overrides, *cfg.preset.get("overrides", []), *cfg.train_overrides],  # trained networks
    ),
    "selection": lambda plan, out, cfg: write_selection(
        plan, out, cfg.preset.get("selection"), cfg.significance_metric, str(cfg.tune_monitor)
    ),
    "budget": lambda plan, out, cfg: write_budget(plan, out),  # every mode's main runs: what the claims rest on
}
# Studies of one mode only (irregularity, robustness, efficiency, selection): the primary mode's runs.
PRIMARY_ONLY = ("irregularity", "robustness", "efficiency", "selection")
# Those whose numbers depend on the mode name it on each table (efficiency measures speed).
MODE_SCOPED = ("irregularity", "robustness", "selection")
STAGES = ["tune", "train", *STUDIES, "sensitivity", "claims", "report", "verify"]


def run_phase2(
    cfg: DictConfig, command: str = "python -m deepm3.phase2", study_command: str | None = None
) -> dict[str, Any]:
    """The stages named in ``cfg.studies``, in the order tune, train, studies, sensitivity,
    claims, report; returns what happened (runs trained/skipped/failed, files, notes, the reported plan).

    ``command`` is this invocation; ``study_command`` the same without ``studies=`` (every stage),
    which the report gives as the way to reproduce the whole study."""
    unknown = [s for s in cfg.studies if s not in STAGES]
    if unknown:
        raise ConfigError(f"phase2: studies={list(cfg.studies)} has unknown {unknown}; expected names from {STAGES}")
    plan = plan_from_config(cfg)
    shared = [*cfg.dataset_overrides, *cfg.preset.get("overrides", []), *cfg.train_overrides]
    out = plan.dataset_dir
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, list[Path]] = {}
    summary = TrainSummary()
    models = {str(k): [str(o) for o in v] for k, v in cfg.preset.models.items()}
    modes = query_modes(cfg)
    if modes:  # tuned once, in the primary mode: the tuning runs are then the main runs' seed-0 twins
        models = {k: [*v, f"time.query={modes[0]}"] for k, v in models.items()}
    grids = cfg.preset.get("tune") or {}
    overwrite = bool(cfg.get("overwrite", False))  # retrain in place the runs another config made
    launcher = launcher_from_config(cfg)  # None: train one run after another in this process
    verified: set[Path] = set()  # run folders found to be this plan's (each checked once)
    hint = preset_hint(cfg.preset, plan.dataset)  # seconds per run until runs are measured (progress lines)
    monitor, seed = str(cfg.tune_monitor), plan_seeds(cfg)[0]
    extensions = extension_cap(cfg.preset.get("tune_extensions", MAX_EXTENSIONS))  # points beyond an edge, per model
    prior = cfg.preset.get("tune_prior") or {}  # choices made on validation before this study (tune.md counts them)
    tuning = tune_plan(plan, models, grids, seed, monitor, extensions) if grids else None
    allow_dirty = bool(cfg.get("allow_dirty", False))  # train from uncommitted code only when told to
    if tuning is not None and "tune" in cfg.studies:

        def train_tuning(runs: Plan) -> None:  # each round: the grid, then the extensions it asks for
            require_clean_tree(allow_dirty, len(runs.missing()), "tune")
            _merge(
                summary,
                train_all(
                    runs,
                    shared,
                    str(cfg.device),
                    stage="tune",
                    seconds_hint=hint,
                    overwrite=overwrite,
                    launcher=launcher,
                ),
            )

        tuning = run_tuning(plan, models, grids, seed, train_tuning, monitor, extensions)
        written["tune"] = write_tuning(tuning, models, grids, out, monitor, prior, extensions)
    plan = with_tuned(plan, tuned_overrides(out))
    if "train" in cfg.studies:
        require_clean_tree(allow_dirty, len(plan.missing()), "train")
        reusable = (
            {}
            if tuning is None
            else {
                same_run_key(run_overrides(tuning, spec, shared, str(cfg.device))): spec.directory
                for spec in tuning.completed()
            }
        )
        _merge(
            summary,
            train_all(
                plan,
                shared,
                str(cfg.device),
                reusable,
                stage="train",
                seconds_hint=hint,
                measured_from=[] if tuning is None else tuning.completed(),
                overwrite=overwrite,
                launcher=launcher,
            ),
        )
    notes: list[str] = []
    if any(name in cfg.studies for name in [*STUDIES, "verify"]):
        require_one_plan(plan, shared, str(cfg.device), "tables", verified)
    primary = mode_view(plan, modes, modes[0]) if modes else plan
    mode_note = f"time.query={modes[0]}, this study's only query mode" if modes else None
    for name, study in STUDIES.items():
        if name not in cfg.studies:
            continue
        try:
            with table_scope(mode_note if name in MODE_SCOPED else None):
                written[name] = study(primary if name in PRIMARY_ONLY else plan, out, cfg)
        except DeepM3Error as exc:
            notes.append(f"study `{name}` skipped: {exc}")
            log.error("phase2: study %s skipped: %s", name, exc)
    reported = plan if tuning is None else plan.extended(tuning)
    grid = cfg.preset.get("sensitivity")
    if grid:  # its runs belong to the study's report whether or not this invocation trains them
        sensitivity = as_reference(
            sensitivity_plan(plan.dataset, grid, plan_seeds(cfg), plan.results_dir, plan.dataset_choice),
            tuned_overrides(out).get(str(cfg.reference), []),
            modes,
        )
        reported = reported.extended(sensitivity)
    if grid and "sensitivity" in cfg.studies:
        require_clean_tree(allow_dirty, len(sensitivity.missing()), "sensitivity")
        main_runs = {
            same_run_key(run_overrides(plan, spec, shared, str(cfg.device))): spec.directory
            for spec in plan.completed()
        }
        _merge(
            summary,
            train_all(
                sensitivity,
                shared,
                str(cfg.device),
                main_runs,  # sens-base is the reference's main run: copied, not trained again
                stage="sensitivity",
                seconds_hint=hint,
                measured_from=plan.completed(),
                overwrite=overwrite,
                launcher=launcher,
            ),
        )
        require_one_plan(sensitivity, shared, str(cfg.device), "sensitivity", verified)
        with table_scope(mode_note):
            written["sensitivity"] = write_sensitivity(sensitivity, grid, out, cfg.significance_metric)
    # dataset -> the folder of a fairer-budget study of it, which every claims line cites
    cross_checks = {str(k): str(v) for k, v in (cfg.preset.get("cross_checks") or {}).items()}
    if "claims" in cfg.studies:  # from the tables just written (or left by an earlier invocation)
        written["claims"] = write_claims(out, plan.dataset, str(cfg.reference), cross_checks)
    if "report" in cfg.studies:
        require_one_plan(reported, shared, str(cfg.device), "report", verified)
        run_commands = [
            f"python -m deepm3.train {' '.join(run_overrides(reported, spec, shared, str(cfg.device)))}"
            for spec in reported.runs
        ]
        commands = [study_command or command] + ([command] if study_command not in (None, command) else [])
        written["report"] = [write_report(reported, out, commands, notes, run_commands)]
    if "verify" in cfg.studies:  # every table that needs no training or re-testing (verify.SKIPPED: the rest)
        steps = {
            name: (lambda tmp, name=name: _try_study(name, primary if name in PRIMARY_ONLY else plan, tmp, cfg))
            for name in VERIFIED
        }
        steps["robustness"] = lambda tmp: robustness_from_runs(primary, out, tmp, cfg.significance_metric)
        if tuning is not None:
            steps["tune"] = lambda tmp: write_tuning(tuning, models, grids, tmp, monitor, prior, extensions)
        if grid:
            steps["sensitivity"] = lambda tmp: write_sensitivity(sensitivity, grid, tmp, cfg.significance_metric)
        verify_study(out, steps, lambda tmp: write_claims(tmp, plan.dataset, str(cfg.reference), cross_checks))
    return {"train": summary, "written": written, "notes": notes, "plan": reported}


def _try_study(name: str, plan: Plan, out: Path, cfg: DictConfig) -> list[Path]:
    """A study for ``verify``: one that cannot run (as the report notes) recomputes nothing."""
    try:
        return STUDIES[name](plan, out, cfg)
    except DeepM3Error as exc:
        log.info("verify: study %s recomputes nothing: %s", name, exc)
        return []


def with_tuned(plan: Plan, tuned: dict[str, list[str]]) -> Plan:
    """The plan with each tuned model's winning grid overrides appended to its own (a model
    is tuned once, in the primary query mode; the winner serves every mode)."""
    runs = tuple(replace(run, overrides=(*run.overrides, *tuned.get(base_label(run.model), []))) for run in plan.runs)
    return replace(plan, runs=runs)


def as_reference(sensitivity: Plan, tuned: Sequence[str], modes: Sequence[str]) -> Plan:
    """Sensitivity runs trained as the reference's main runs are: in the primary query mode and
    with the reference's tuned overrides, so each factor moves one thing away from the model
    the main table reports (and the base is that very run)."""
    extra = ([f"time.query={modes[0]}"] if modes else []) + list(tuned)
    return replace(sensitivity, runs=tuple(replace(r, overrides=(*r.overrides, *extra)) for r in sensitivity.runs))


def _merge(summary: TrainSummary, more: TrainSummary) -> None:
    summary.trained += more.trained
    summary.skipped += more.skipped
    summary.failed.update(more.failed)
