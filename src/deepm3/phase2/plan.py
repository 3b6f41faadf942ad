"""The plan of a study: every (model, seed) run of one dataset and the folder it lives in.

A run folder is ``<results>/<dataset>/runs/<model>-seed<k>/``; its ``metrics.json`` (written
last by :func:`deepm3.train.run`) marks it complete, its ``error.json`` records a failure.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deepm3.errors import ConfigError
from deepm3.train import ERROR_FILE, METRICS_FILE

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
        return (self.directory / METRICS_FILE).is_file()

    @property
    def failed(self) -> bool:
        return not self.complete and (self.directory / ERROR_FILE).is_file()

    def error(self) -> str | None:
        """The recorded failure (one line), or None."""
        path = self.directory / ERROR_FILE
        if self.complete or not path.is_file():
            return None
        try:
            return str(json.loads(path.read_text()).get("error", "unknown error"))
        except (OSError, json.JSONDecodeError) as exc:
            return f"unreadable {path}: {exc}"


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


def make_plan(dataset: str, models: Mapping[str, Sequence[str]], seeds: Sequence[int],
              results_dir: str | Path, dataset_choice: str = "") -> Plan:
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
        RunSpec(label, int(seed), tuple(str(o) for o in overrides),
                root / dataset / RUNS_DIR / f"{label}-seed{int(seed)}")
        for label, overrides in models.items() for seed in seeds
    )
    return Plan(dataset, root, runs, dataset_choice)


def plan_seeds(cfg: Any) -> list[int]:
    """``seeds`` of a composed ``phase2`` config, else the preset's."""
    return [int(s) for s in (cfg.seeds if cfg.get("seeds") is not None else cfg.preset.seeds)]


def plan_from_config(cfg: Any) -> Plan:
    """The plan of a composed ``phase2`` config (models and seeds from ``preset`` unless overridden)."""
    return make_plan(str(cfg.dataset.name), {str(k): list(v) for k, v in cfg.preset.models.items()},
                     plan_seeds(cfg), cfg.results_dir, str(cfg.get("dataset_choice") or ""))
