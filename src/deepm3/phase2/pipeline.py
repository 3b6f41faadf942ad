"""The whole suite for one dataset: train the plan, run each chosen study, write the report.

The sensitivity study owns its runs: it trains the variants still missing whenever it runs.
A study that cannot run (e.g. the reference model has no complete run) is skipped with a
note in the report; the other studies still run. Tables are written from the runs of one plan
only: a folder holding a run of another config (another preset or budget) stops the stage that
would read it, with one line (:func:`deepm3.phase2.train_all.require_one_plan`).
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from deepm3.errors import ConfigError
from deepm3.phase2.stages import PIPELINE, TABLES, Context, Stage, as_reference, with_tuned
from deepm3.phase2.study_registry import MODE_SCOPED, PRIMARY_ONLY, STUDIES, _try_study, per_mode
from deepm3.phase2.train_all import require_one_plan

__all__ = [
    "MODE_SCOPED",
    "PIPELINE",
    "PRIMARY_ONLY",
    "STAGES",
    "STUDIES",
    "Context",
    "Stage",
    "_try_study",
    "as_reference",
    "per_mode",
    "run_phase2",
    "with_tuned",
]

STAGES = [stage.name for stage in PIPELINE]
BEFORE_TABLES = ("tune", "train")  # the stages that make the runs the tables are written from


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
    context = Context.from_config(cfg, command, study_command)
    named = [stage for stage in PIPELINE if stage.name in cfg.studies]
    written = {}
    checked = False
    for stage in named:
        if stage.name not in BEFORE_TABLES and not checked:  # once, before the first table is written
            checked = True
            if any(s.needs == TABLES for s in named):
                require_one_plan(context.plan, context.shared, context.device, TABLES, context.verified)
        files = stage.run(context)
        if files is not None:
            written[stage.name] = files
    return {"train": context.summary, "written": written, "notes": context.notes, "plan": context.reported}
