"""The studies a phase-2 stage writes tables with (:data:`STUDIES`), each ``study(plan, out, cfg)``:
which run on every query mode's runs (:func:`per_mode`), which on the primary mode's only
(:data:`PRIMARY_ONLY`), and which name the mode on their tables (:data:`MODE_SCOPED`).
:mod:`deepm3.phase2.stages` makes each one a stage."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from omegaconf import DictConfig

from deepm3.errors import DeepM3Error
from deepm3.phase2.budget import write_budget
from deepm3.phase2.efficiency import write_efficiency
from deepm3.phase2.irregularity_study import write_irregularity
from deepm3.phase2.main_table import write_main_table
from deepm3.phase2.plan import Plan, mode_view, query_modes
from deepm3.phase2.robustness import write_robustness
from deepm3.phase2.selection import write_selection
from deepm3.phase2.significance_study import write_significance
from deepm3.phase2.target_kinds_study import write_target_kinds

log = logging.getLogger("deepm3.phase2.pipeline")  # the suite's log lines keep their logger

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
    "target_kinds": per_mode(
        lambda plan, out, cfg, mode, suffix: write_target_kinds(plan, out, cfg.significance_metric, mode, suffix)
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


def _try_study(name: str, plan: Plan, out: Path, cfg: DictConfig) -> list[Path]:
    """A study for ``verify``: one that cannot run (as the report notes) recomputes nothing."""
    try:
        return STUDIES[name](plan, out, cfg)
    except DeepM3Error as exc:
        log.info("verify: study %s recomputes nothing: %s", name, exc)
        return []
