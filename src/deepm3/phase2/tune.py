"""Stage 0, tuning: each baseline over a small documented grid (``preset.tune``), one seed,
selected on validation NDCG@10 (the training monitor) -- never on test.

Every grid point is an ordinary run ``tune-<model>-<k>`` in ``runs/`` (resumable, failure-
isolated). The winners go to ``tuned.json`` (model -> the grid overrides that won); the main
runs of those models append them to their preset overrides, so tune before training the plan
(the default stage order does): runs trained before a tuning result existed are not redone.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from deepm3.errors import ConfigError
from deepm3.io import write_json
from deepm3.phase2.plan import Plan, RunSpec, make_plan
from deepm3.phase2.results import write_table
from deepm3.run_dir import read_metrics

STEM = "tune"
TUNED_FILE = "tuned.json"
PREFIX = "tune"


def grid_points(grid: Mapping[str, Sequence]) -> list[list[str]]:
    """Every combination of ``key: [values]`` as override lists, in grid order."""
    keys = list(grid)
    return [[f"{k}={v}" for k, v in zip(keys, values)] for values in itertools.product(*(grid[k] for k in keys))]


def tune_models(models: Mapping[str, Sequence[str]], grids: Mapping[str, Mapping]) -> dict[str, list[str]]:
    """``tune-<model>-<k>`` -> the model's preset overrides + the k-th grid point."""
    out = {}
    for model, grid in grids.items():
        if model not in models:
            raise ConfigError(f"phase2: preset.tune names {model!r}, which is not in preset.models {sorted(models)}")
        for k, point in enumerate(grid_points(grid)):
            out[f"{PREFIX}-{model}-{k}"] = [*[str(o) for o in models[model]], *point]
    return out


def tune_plan(plan: Plan, models: Mapping[str, Sequence[str]], grids: Mapping[str, Mapping], seed: int) -> Plan:
    return make_plan(plan.dataset, tune_models(models, grids), [seed], plan.results_dir, plan.dataset_choice)


def selection(
    tuning: Plan, models: Mapping[str, Sequence[str]], grids: Mapping[str, Mapping], monitor: str
) -> pd.DataFrame:
    """One row per grid point: model, overrides, validation score (NaN: missing or failed) and
    ``selected`` (the best point of each model; none if every point of it failed)."""
    rows = []
    for model, grid in grids.items():
        for k, point in enumerate(grid_points(grid)):
            spec = _spec(tuning, f"{PREFIX}-{model}-{k}")
            score = float("nan")
            if spec is not None and spec.complete:
                value = read_metrics(spec.directory)["best_val"].get(monitor)
                score = float("nan") if value is None else float(value)
            rows.append({"model": model, "point": k, "overrides": " ".join(point), monitor: score})
    table = pd.DataFrame(rows)
    winners = [
        group[monitor].idxmax() for _, group in table.groupby("model", sort=False) if group[monitor].notna().any()
    ]
    return table.assign(selected=table.index.isin(winners))  # ties: the first point in grid order


def write_tuning(
    tuning: Plan,
    models: Mapping[str, Sequence[str]],
    grids: Mapping[str, Mapping],
    out_dir: Path,
    monitor: str = "val/ndcg@10",
) -> list[Path]:
    """``tune.{csv,md}`` (every point) and ``tuned.json`` (the selected point per model)."""
    table = selection(tuning, models, grids, monitor)
    tuned = {row.model: row.overrides.split() for row in table[table["selected"]].itertuples()}
    written = write_table(table, out_dir, STEM, f"Tuning: every grid point, one seed, selected on {monitor}")
    written.append(write_json(out_dir / TUNED_FILE, tuned))
    return written


def tuned_overrides(out_dir: Path) -> dict[str, list[str]]:
    """``tuned.json`` of an earlier tuning stage (empty if none)."""
    path = out_dir / TUNED_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def _spec(plan: Plan, label: str) -> RunSpec | None:
    return next((run for run in plan.runs if run.model == label), None)
