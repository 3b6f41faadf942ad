"""The stages of ``python -m deepm3.phase2``, each one :class:`Stage` (a name, what it needs, and
``run(context) -> files written``), and the :class:`Context` they share, built once from the config.

The context holds what every stage reads (the plan, the shared overrides, the device, the output
folder, the query modes, the launcher, the tuning grids ...) and what the stages leave for the
later ones (the tuning plan, the training summary, the notes, the run folders already checked).
:func:`deepm3.phase2.pipeline.run_phase2` runs the stages the config names, in :data:`PIPELINE` order.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from deepm3.errors import DeepM3Error
from deepm3.phase2.claims import write_claims
from deepm3.phase2.launch import launcher_from_config
from deepm3.phase2.plan import (
    Plan,
    base_label,
    mode_view,
    plan_from_config,
    plan_seeds,
    query_modes,
    wait_for_other_runners,
)
from deepm3.phase2.progress import preset_hint
from deepm3.phase2.report import write_report
from deepm3.phase2.results import table_scope
from deepm3.phase2.sensitivity import sensitivity_plan, write_sensitivity
from deepm3.phase2.study_registry import MODE_SCOPED, PRIMARY_ONLY, STUDIES, _try_study
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

log = logging.getLogger("deepm3.phase2.pipeline")  # the suite's log lines keep their logger


@dataclass
class Context:
    """What the stages share, built once from the config by :meth:`from_config`; the stages
    record in it what later stages read (``tuning``, ``summary``, ``notes``, ``verified``)."""

    cfg: DictConfig
    command: str
    study_command: str | None
    base: Plan  # the plan as configured, before the tuned overrides
    shared: list[str]  # the overrides every run gets: dataset, preset, training
    device: str
    out: Path
    modes: list[str]
    models: dict[str, list[str]]
    grids: Any
    overwrite: bool
    launcher: Any  # None: train one run after another in this process
    hint: Any  # seconds per run until runs are measured (progress lines)
    monitor: str
    seed: int
    extensions: Any
    prior: Any
    allow_dirty: bool
    cross_checks: dict[str, str]
    facts: dict[str, Any] | None  # dataset.facts: what the claims page says of the data
    tuning: Plan | None = None
    plan: Plan = field(init=False)
    sensitivity: Plan | None = field(init=False, default=None)
    summary: TrainSummary = field(default_factory=TrainSummary)
    notes: list[str] = field(default_factory=list)
    verified: set[Path] = field(default_factory=set)  # run folders found to be this plan's (each checked once)

    @classmethod
    def from_config(cls, cfg: DictConfig, command: str, study_command: str | None) -> Context:
        plan = plan_from_config(cfg)
        out = plan.dataset_dir
        out.mkdir(parents=True, exist_ok=True)
        models = {str(k): [str(o) for o in v] for k, v in cfg.preset.models.items()}
        modes = query_modes(cfg)
        if modes:  # tuned once, in the primary mode: the tuning runs are then the main runs' seed-0 twins
            models = {k: [*v, f"time.query={modes[0]}"] for k, v in models.items()}
        context = cls(
            cfg=cfg,
            command=command,
            study_command=study_command,
            base=plan,
            shared=[*cfg.dataset_overrides, *cfg.preset.get("overrides", []), *cfg.train_overrides],
            device=str(cfg.device),
            out=out,
            modes=modes,
            models=models,
            grids=cfg.preset.get("tune") or {},
            overwrite=bool(cfg.get("overwrite", False)),  # retrain in place the runs another config made
            launcher=launcher_from_config(cfg),
            hint=preset_hint(cfg.preset, plan.dataset),
            monitor=str(cfg.tune_monitor),
            seed=plan_seeds(cfg)[0],
            extensions=extension_cap(cfg.preset.get("tune_extensions", MAX_EXTENSIONS)),  # beyond an edge, per model
            prior=cfg.preset.get("tune_prior") or {},  # choices made on validation before this study (tune.md)
            allow_dirty=bool(cfg.get("allow_dirty", False)),  # train from uncommitted code only when told to
            # dataset -> the folder of a fairer-budget study of it, which every claims line cites
            cross_checks={str(k): str(v) for k, v in (cfg.preset.get("cross_checks") or {}).items()},
            facts=_facts(cfg),
        )
        if context.grids:
            context.tuning = tune_plan(plan, models, context.grids, context.seed, context.monitor, context.extensions)
        context.settle()
        return context

    def settle(self) -> None:
        """The plan with the tuned overrides (``tuned.json``, as the tuning stage left it) and the
        sensitivity runs, trained as the reference's main runs are."""
        self.plan = with_tuned(self.base, tuned_overrides(self.out))
        grid = self.cfg.preset.get("sensitivity")
        if grid:  # its runs belong to the study's report whether or not this invocation trains them
            self.sensitivity = as_reference(
                sensitivity_plan(
                    self.plan.dataset, grid, plan_seeds(self.cfg), self.plan.results_dir, self.plan.dataset_choice
                ),
                tuned_overrides(self.out).get(str(self.cfg.reference), []),
                self.modes,
            )

    @property
    def primary(self) -> Plan:
        """The primary query mode's runs (every run when the study has one mode)."""
        return mode_view(self.plan, self.modes, self.modes[0]) if self.modes else self.plan

    @property
    def mode_note(self) -> str | None:
        return f"time.query={self.modes[0]}, this study's only query mode" if self.modes else None

    @property
    def reported(self) -> Plan:
        """Every run the report names: the plan, the tuning runs and the sensitivity runs."""
        reported = self.plan if self.tuning is None else self.plan.extended(self.tuning)
        return reported if self.sensitivity is None else reported.extended(self.sensitivity)

    def train(self, runs: Plan, stage: str, reusable: dict | None = None, measured_from: Any = None) -> None:
        """Train ``runs``' missing runs (from committed code unless told otherwise) into the summary:
        ``reusable``: run key -> a complete folder copied instead; ``measured_from``: runs whose
        durations the progress lines start from."""
        require_clean_tree(self.allow_dirty, len(runs.missing()), stage)
        reuse = () if reusable is None else (reusable,)
        measured = {} if measured_from is None else {"measured_from": measured_from}
        _merge(
            self.summary,
            train_all(
                runs,
                self.shared,
                self.device,
                *reuse,
                stage=stage,
                seconds_hint=self.hint,
                **measured,
                overwrite=self.overwrite,
                launcher=self.launcher,
            ),
        )

    def run_study(self, name: str, out: Path | None = None) -> list[Path]:
        """One of :data:`STUDIES` on its runs (the primary mode's for :data:`PRIMARY_ONLY`)."""
        return STUDIES[name](self.primary if name in PRIMARY_ONLY else self.plan, out or self.out, self.cfg)


@dataclass(frozen=True)
class Stage:
    """One stage of the suite: its name in ``studies=[...]``, what it needs (``tables``: the
    plan's runs, checked to be this config's before any table is written from them) and
    ``run(context) -> files written`` (None: it writes no entry in the summary)."""

    name: str
    needs: str
    run: Callable[[Context], list[Path] | None]


TABLES = "tables"  # a stage that writes tables from the plan's runs


def tune(ctx: Context) -> list[Path] | None:
    """The tuning grid, then the extensions it asks for; ``tuned.json`` names the winners."""
    if ctx.tuning is None:
        return None
    ctx.tuning = run_tuning(
        ctx.base,
        ctx.models,
        ctx.grids,
        ctx.seed,
        lambda runs: ctx.train(runs, "tune"),  # each round: the grid, then the extensions it asks for
        ctx.monitor,
        ctx.extensions,
    )
    written = write_tuning(ctx.tuning, ctx.models, ctx.grids, ctx.out, ctx.monitor, ctx.prior, ctx.extensions)
    ctx.settle()
    return written


def train(ctx: Context) -> None:
    """The main runs; a tuning run that is a main run's seed-0 twin is reused, not trained again."""
    reusable = (
        {}
        if ctx.tuning is None
        else {
            same_run_key(run_overrides(ctx.tuning, spec, ctx.shared, ctx.device)): spec.directory
            for spec in ctx.tuning.completed()
        }
    )
    measured = [] if ctx.tuning is None else ctx.tuning.completed()
    ctx.train(ctx.plan, "train", reusable, measured)
    wait_for_other_runners(ctx.plan.runs)  # no table from a plan another runner is still training
    return None


def study(name: str) -> Callable[[Context], list[Path] | None]:
    """A study of :data:`STUDIES`; one that cannot run is skipped with a note in the report."""

    def run(ctx: Context) -> list[Path] | None:
        try:
            with table_scope(ctx.mode_note if name in MODE_SCOPED else None):
                return ctx.run_study(name)
        except DeepM3Error as exc:
            ctx.notes.append(f"study `{name}` skipped: {exc}")
            log.error("phase2: study %s skipped: %s", name, exc)
            return None

    return run


def sensitivity(ctx: Context) -> list[Path] | None:
    """The sensitivity runs still missing (sens-base is the reference's main run: copied), then its table."""
    if ctx.sensitivity is None:
        return None
    main_runs = {
        same_run_key(run_overrides(ctx.plan, spec, ctx.shared, ctx.device)): spec.directory
        for spec in ctx.plan.completed()
    }
    ctx.train(ctx.sensitivity, "sensitivity", main_runs, ctx.plan.completed())
    wait_for_other_runners(ctx.sensitivity.runs)
    require_one_plan(ctx.sensitivity, ctx.shared, ctx.device, "sensitivity", ctx.verified)
    with table_scope(ctx.mode_note):
        return write_sensitivity(
            ctx.sensitivity, ctx.cfg.preset.get("sensitivity"), ctx.out, ctx.cfg.significance_metric
        )


def claims(ctx: Context) -> list[Path]:
    """``claims.md`` from the tables just written (or left by an earlier invocation)."""
    return write_claims(ctx.out, ctx.plan.dataset, str(ctx.cfg.reference), ctx.cross_checks, ctx.facts)


def report(ctx: Context) -> list[Path]:
    reported = ctx.reported
    require_one_plan(reported, ctx.shared, ctx.device, "report", ctx.verified)
    run_commands = [
        f"python -m deepm3.train {' '.join(run_overrides(reported, spec, ctx.shared, ctx.device))}"
        for spec in reported.runs
    ]
    commands = [ctx.study_command or ctx.command] + (
        [ctx.command] if ctx.study_command not in (None, ctx.command) else []
    )
    return [write_report(reported, ctx.out, commands, ctx.notes, run_commands)]


def verify(ctx: Context) -> None:
    """Every table that needs no training or re-testing, recomputed (verify.SKIPPED: the rest)."""
    steps: dict[str, Callable[[Path], object]] = {
        name: (lambda tmp, name=name: _try_study(name, ctx.primary if name in PRIMARY_ONLY else ctx.plan, tmp, ctx.cfg))
        for name in VERIFIED
    }
    steps["robustness"] = lambda tmp: robustness_from_runs(ctx.primary, ctx.out, tmp, ctx.cfg.significance_metric)
    if ctx.tuning is not None:
        tuning = ctx.tuning
        steps["tune"] = lambda tmp: write_tuning(
            tuning, ctx.models, ctx.grids, tmp, ctx.monitor, ctx.prior, ctx.extensions
        )
    if ctx.sensitivity is not None:
        runs, grid = ctx.sensitivity, ctx.cfg.preset.get("sensitivity")
        steps["sensitivity"] = lambda tmp: write_sensitivity(runs, grid, tmp, ctx.cfg.significance_metric)
    verify_study(
        ctx.out,
        steps,
        lambda tmp: write_claims(tmp, ctx.plan.dataset, str(ctx.cfg.reference), ctx.cross_checks, ctx.facts),
    )
    return None


PIPELINE: list[Stage] = [
    Stage("tune", "the preset's tuning grids", tune),
    Stage("train", "the plan", train),
    *(Stage(name, TABLES, study(name)) for name in STUDIES),
    Stage("sensitivity", "the preset's sensitivity grid and the reference's main runs", sensitivity),
    Stage("claims", "the tables in the output folder", claims),
    Stage("report", "every run of the plan, the tuning and the sensitivity", report),
    Stage("verify", TABLES, verify),
]


def _facts(cfg: DictConfig) -> dict[str, Any] | None:
    """The composed config's ``dataset.facts`` (None: a config without the block)."""
    facts = cfg.dataset.get("facts") if cfg.get("dataset") is not None else None
    return None if facts is None else OmegaConf.to_container(facts, resolve=True)


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
