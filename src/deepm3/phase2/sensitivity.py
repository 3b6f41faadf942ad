"""Study 6, sensitivity: the reference DeepM3 re-trained with one factor changed at a time
(hidden size, ODE steps per gap, time unit/transform, Lipschitz on/off, vector-field depth,
and training on shuffled gaps), over the same seeds; a table and one line plot per factor.

The grid is data (``preset.sensitivity``): ``base`` overrides and, per factor, value -> overrides.
Each variant is an ordinary run labelled ``sens-<factor>-<value>`` in ``runs/``, so it is
resumable and failure-isolated like every other run; a value with no overrides is the base
itself, trained once as ``sens-base`` and shown in every factor's panel.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from deepm3.analysis.noise import make_noise, perturb_samples
from deepm3.data.datamodule import SequenceDataModule
from deepm3.errors import ConfigError
from deepm3.phase2.plan import Plan, make_plan
from deepm3.phase2.plots import figure, save_png
from deepm3.phase2.results import run_metrics, write_table

STEM = "sensitivity"
PLOT = "sensitivity.png"
PREFIX = "sens"
BASE = f"{PREFIX}-base"


class ShuffledGapsDataModule(SequenceDataModule):
    """Training windows with all their gaps permuted (seeded): the gap sequence no longer
    carries information, only its distribution does. Validation and test inputs stay real,
    so the drop vs the unshuffled run measures how much the model used the order of gaps."""

    def setup(self, stage: str | None = None) -> None:
        fresh = self.data is None
        super().setup(stage)
        if fresh:
            assert self.data is not None
            shuffle = make_noise("shuffle", 1.0)
            self.splits["train"] = perturb_samples(self.splits["train"], shuffle, self.seed, self.data.num_items)


def variant_label(factor: str, value: str, overrides: Sequence[str]) -> str:
    return f"{PREFIX}-{factor}-{value}" if overrides else BASE


def sensitivity_models(grid: Mapping) -> dict[str, list[str]]:
    """Label -> base overrides + the value's overrides (``sens-base`` first: the base alone)."""
    base = [str(o) for o in grid.get("base", [])]
    factors = grid.get("factors") or {}
    if not factors:
        raise ConfigError("phase2: preset.sensitivity.factors is empty; expected factor -> {value: [overrides]}")
    models = {BASE: base}
    for factor, values in factors.items():
        for value, overrides in values.items():
            models[variant_label(factor, value, overrides)] = [*base, *[str(o) for o in overrides]]
    return models


def sensitivity_plan(
    dataset: str, grid: Mapping, seeds: Sequence[int], results_dir: Path, dataset_choice: str = ""
) -> Plan:
    return make_plan(dataset, sensitivity_models(grid), seeds, results_dir, dataset_choice)


def summarise(plan: Plan, grid: Mapping, metrics: Sequence[str] = ("ndcg@10", "hr@10")) -> pd.DataFrame:
    """One row per (factor, value) with complete runs: mean and std over seeds of each metric."""
    runs = run_metrics(plan)
    records = []
    for factor, values in (grid.get("factors") or {}).items():
        for value, overrides in values.items():
            mine = [r for r in runs if r["model"] == variant_label(factor, value, overrides)]
            if not mine:
                continue
            row = {
                "factor": factor,
                "value": str(value),
                "seeds": len(mine),
                "params": int(np.median([r["num_params"] for r in mine])),
                "seconds_per_epoch": float(np.mean([r["seconds_per_epoch"] for r in mine])),
            }
            for name in metrics:
                scores = [r["test"][name] for r in mine]
                row[name] = float(np.mean(scores))
                row[f"{name}_std"] = float(np.std(scores, ddof=1)) if len(scores) > 1 else 0.0
            records.append(row)
    return pd.DataFrame.from_records(records)


def sensitivity_plot(table: pd.DataFrame, metric: str):
    """One panel per factor: metric vs the factor's values (in grid order), std error bars."""
    factors = list(dict.fromkeys(table["factor"]))
    fig, axes = figure(columns=max(len(factors), 1), width=3.0)
    for ax, factor in zip(axes, factors):
        mine = table[table["factor"] == factor]
        x = np.arange(len(mine))
        ax.errorbar(x, mine[metric], yerr=mine[f"{metric}_std"].fillna(0), marker="o", capsize=3)
        ax.set_xticks(x, mine["value"].tolist(), rotation=30)
        ax.set_title(factor)
        ax.set_ylabel(metric)
    return fig


def write_sensitivity(plan: Plan, grid: Mapping, out_dir: Path, metric: str = "ndcg@10") -> list[Path]:
    table = summarise(plan, grid, (metric, "hr@10") if metric != "hr@10" else (metric,))
    if table.empty:
        return []
    written = write_table(
        table,
        out_dir,
        STEM,
        "Sensitivity of DeepM3: one factor changed at a time from the base (mean ± std over seeds)",
    )
    written.append(save_png(sensitivity_plot(table, metric), out_dir / PLOT))
    return written
