"""The plan of a study: every (model, seed) run of one dataset and the folder it lives in.

A run folder is ``<results>/<dataset>/runs/<model>-seed<k>/``, laid out as
:mod:`deepm3.run_dir` says: its ``metrics.json`` marks it complete, its ``error.json`` records a failure.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from deepm3.errors import ConfigError
from deepm3.models.components.time import check_query_mode
from deepm3.run.lock import lock_holder
from deepm3.run_dir import has_error, is_complete, read_error

log = logging.getLogger(__name__)

RUNS_DIR = "runs"


@dataclass(frozen=True)
class RunSpec:
    """One training run: a model label (its overrides say what it is) at one seed."""

    model: str
    seed: int
    overrides: tuple[str, ...]
    directory: Path

    @property
    def name(self) -> str:
        return f"{self.model}-seed{self.seed}"

    @property
    def complete(self) -> bool:
        return is_complete(self.directory)

    @property
    def failed(self) -> bool:
        return not self.complete and has_error(self.directory)

    def error(self) -> str | None:
        """The recorded failure (one line), or None."""
        return None if self.complete else read_error(self.directory)


@dataclass(frozen=True)
class Plan:
    """Every run of one dataset: ``models`` (label -> overrides) x ``seeds``.

    ``dataset`` names the results folder (``dataset.name``); ``dataset_choice`` is the
    ``dataset=`` config the runs select (the same unless a config renames its dataset).
    """

    dataset: str
    results_dir: Path
    runs: tuple[RunSpec, ...]
    dataset_choice: str = ""

    @property
    def choice(self) -> str:
        return self.dataset_choice or self.dataset

    @property
    def dataset_dir(self) -> Path:
        return self.results_dir / self.dataset

    @property
    def models(self) -> list[str]:
        return list(dict.fromkeys(run.model for run in self.runs))

    def extended(self, other: Plan) -> Plan:
        """This plan's runs followed by ``other``'s (same dataset): what a report covers."""
        return Plan(self.dataset, self.results_dir, self.runs + other.runs, self.dataset_choice)

    def completed(self) -> list[RunSpec]:
        return [run for run in self.runs if run.complete]

    def missing(self) -> list[RunSpec]:
        return [run for run in self.runs if not run.complete]


def make_plan(
    dataset: str,
    models: Mapping[str, Sequence[str]],
    seeds: Sequence[int],
    results_dir: str | Path,
    dataset_choice: str = "",
) -> Plan:
    """Runs = models x seeds, in model order then seed order."""
    if not models:
        raise ConfigError("phase2: models is empty; expected at least one `label: [overrides]` entry")
    if not seeds:
        raise ConfigError("phase2: seeds is empty; expected a list of integers, e.g. seeds=[0,1,2]")
    for label in models:
        if not label or "/" in label or label.startswith("."):
            raise ConfigError(f"phase2: model label {label!r} cannot name a folder; use letters, digits, - and _")
    root = Path(results_dir).expanduser()
    runs = tuple(
        RunSpec(
            label, int(seed), tuple(str(o) for o in overrides), root / dataset / RUNS_DIR / f"{label}-seed{int(seed)}"
        )
        for label, overrides in models.items()
        for seed in seeds
    )
    return Plan(dataset, root, runs, dataset_choice)


MODE_SEPARATOR = "@"


def query_modes(cfg: Any) -> list[str]:
    """``query_modes`` of the phase2 config or its preset (first = primary); ``[]`` when unset.

    Unset: every run uses the training default of ``time.query`` and nothing is added.
    """
    modes = cfg.get("query_modes") or cfg.preset.get("query_modes") or []
    return [check_query_mode(str(m)) for m in modes]


def expand_query_modes(
    models: Mapping[str, Sequence[str]], modes: Sequence[str], time_blind: Sequence[str] = ()
) -> dict[str, list[str]]:
    """Each model once per query mode: ``label`` in the primary (first) mode, ``label@<mode>``
    in the others -- except the ``time_blind`` labels, trained once (what they compute cannot
    depend on the mode) and shown in every mode's tables."""
    if not modes:
        return {label: list(overrides) for label, overrides in models.items()}
    unknown = sorted(set(time_blind) - set(models))
    if unknown:
        raise ConfigError(f"phase2: time_blind names {unknown}, which are not in preset.models {sorted(models)}")
    out = {label: [*overrides, f"time.query={modes[0]}"] for label, overrides in models.items()}
    for mode in modes[1:]:
        out.update(
            {
                f"{label}{MODE_SEPARATOR}{mode}": [*overrides, f"time.query={mode}"]
                for label, overrides in models.items()
                if label not in time_blind
            }
        )
    return out


def base_label(label: str) -> str:
    """``deepm3-euler@last`` -> ``deepm3-euler``."""
    return label.split(MODE_SEPARATOR, 1)[0]


def mode_view(plan: Plan, modes: Sequence[str], mode: str) -> Plan:
    """The runs one query mode's tables are made of, labelled by their base label: the mode's
    own runs, plus (outside the primary mode) the time-blind runs of the primary."""
    if not modes or mode == modes[0]:
        return replace(plan, runs=tuple(r for r in plan.runs if MODE_SEPARATOR not in r.model))
    own = {base_label(r.model) for r in plan.runs if r.model.endswith(f"{MODE_SEPARATOR}{mode}")}
    runs = [
        replace(r, model=base_label(r.model))
        for r in plan.runs
        if r.model.endswith(f"{MODE_SEPARATOR}{mode}") or (MODE_SEPARATOR not in r.model and r.model not in own)
    ]
    return replace(plan, runs=tuple(runs))


def plan_seeds(cfg: Any) -> list[int]:
    """``seeds`` of a composed ``phase2`` config, else the preset's."""
    return [int(s) for s in (cfg.seeds if cfg.get("seeds") is not None else cfg.preset.seeds)]


def plan_from_config(cfg: Any) -> Plan:
    """The plan of a composed ``phase2`` config (models and seeds from ``preset`` unless
    overridden), each model once per query mode of :func:`query_modes`."""
    models = {str(k): [str(o) for o in v] for k, v in cfg.preset.models.items()}
    time_blind = [str(m) for m in (cfg.get("time_blind") or cfg.preset.get("time_blind") or [])]
    return make_plan(
        str(cfg.dataset.name),
        expand_query_modes(models, query_modes(cfg), time_blind),
        plan_seeds(cfg),
        cfg.results_dir,
        str(cfg.get("dataset_choice") or ""),
    )


WAIT_SECONDS = 15.0  # how often a runner looks again at runs another runner is training


def wait_for_other_runners(
    runs: Sequence[RunSpec], seconds: float = WAIT_SECONDS, sleep: Callable[[float], None] | None = None
) -> None:
    """Return once no run of ``runs`` is held by another live runner (its lock, :mod:`deepm3.run.lock`).

    Two runners on one study split each stage's runs; the first to finish its share waits here, so
    it never picks winners or writes tables from runs the other is still training."""
    sleep = sleep or time.sleep
    while held := [run.name for run in runs if not run.complete and _held_here(run)]:
        log.info("phase2: waiting for %s, being trained by another runner", ", ".join(held))
        sleep(seconds)


def _held_here(run: RunSpec) -> bool:
    """Held by a live process of this host. A lock from another host is not waited for: whether its
    process still lives cannot be told from here, and a dead one would make the wait endless."""
    holder = lock_holder(run.directory)
    if holder is not None and holder.partition("@")[2] != socket.gethostname():
        log.warning("phase2: %s is held by %s on another host; not waiting for it", run.name, holder)
        return False
    return holder is not None
