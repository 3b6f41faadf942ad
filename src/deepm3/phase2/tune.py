"""Stage 0, tuning: each trained model over a small documented grid (``preset.tune``), one seed,
selected on validation NDCG@10 (the training monitor) -- never on test.

Every grid point is an ordinary run ``tune-<model>-<k>`` in ``runs/`` (resumable, failure-
isolated). The winners go to ``tuned.json`` (model -> the grid overrides that won); the main
runs of those models append them to their preset overrides, so tune before training the plan
(the default stage order does): runs trained before a tuning result existed are not redone.

**Bracketing.** A grid whose validation winner sits on its edge has not found the optimum, only
a direction. A 1-D grid of positive numbers (``optim.lr: [0.001, 0.003, 0.01]``) is therefore
extended by one point beyond that edge at the same log ratio as the edge's neighbour
(0.01 -> 0.0333333), trained, and looked at again, while the winner stays on an edge -- at most
:data:`MAX_EXTENSIONS` times per model (``tune.md`` says when that cap, not a bracket, stopped
it). The extension points are runs ``tune-<model>-<k>`` numbered after the grid's, and which
ones exist follows from the finished runs alone, so ``verify`` and a resumed study see the
same plan.

**Equal budgets.** ``tune.md`` counts the configurations each model had on validation: its grid
points here times the values of any choice made on validation before this study
(``preset.tune_prior``, e.g. DeepM3's flow, chosen among 4 in ``results/dynamics/``), so a model
that was searched more says so beside its winner.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from deepm3.errors import ConfigError
from deepm3.io import write_atomic, write_json
from deepm3.phase2.plan import Plan, RunSpec, make_plan, wait_for_other_runners
from deepm3.phase2.results import markdown
from deepm3.run_dir import has_error, read_metrics

log = logging.getLogger(__name__)

STEM = "tune"
TUNED_FILE = "tuned.json"
PREFIX = "tune"
MONITOR = "val/ndcg@10"
MAX_EXTENSIONS = 3  # points added beyond an edge per model; then the grid stays unbracketed, said so
# a model's status in tune.{csv,md}
BRACKETED, TIED, CAPPED, FAILED, PENDING, FLAT, NONE = (
    "bracketed",
    "not extended (the best score is shared by several points)",
    "winner on the edge: extension cap reached",
    "winner on the edge: the point beyond it failed",
    "winner on the edge: extension not trained yet",
    "not extended (not a 1-D grid of positive numbers)",
    "no complete point",
)


def grid_points(grid: Mapping[str, Sequence]) -> list[list[str]]:
    """Every combination of ``key: [values]`` as override lists, in grid order."""
    keys = list(grid)
    return [[f"{k}={v}" for k, v in zip(keys, values)] for values in itertools.product(*(grid[k] for k in keys))]


def extendable(grid: Mapping[str, Sequence]) -> str | None:
    """The key of a grid that can be extended: one key, at least two distinct positive numbers."""
    if len(grid) != 1:
        return None
    key, values = next(iter(grid.items()))
    numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if len(numbers) != len(values) or len(set(numbers)) < 2 or min(numbers) <= 0:
        return None
    return str(key)


def beyond(values: Sequence[float], upper: bool) -> float:
    """One point past the upper (or lower) edge of ``values`` at the log ratio of the edge to its
    neighbour: ``[1e-3, 3e-3, 1e-2]`` -> 0.0333333 up, 0.000333333 down. Whole numbers stay whole."""
    ordered = sorted(set(values))
    edge, neighbour = (ordered[-1], ordered[-2]) if upper else (ordered[0], ordered[1])
    value = edge * edge / neighbour
    if all(float(v).is_integer() for v in values):
        return float(round(value))
    return float(f"{value:.6g}")


def _text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) >= 1 else repr(float(value))


@dataclass(frozen=True)
class Points:
    """One model's tuning points: the grid's, then the extensions, and why the list ends there."""

    model: str
    points: tuple[tuple[str, ...], ...]
    extensions: int
    status: str


def _label(model: str, k: int) -> str:
    return f"{PREFIX}-{model}-{k}"


def _score(spec: RunSpec, monitor: str) -> float:
    """The run's best validation ``monitor``; NaN when it is not complete or did not log it."""
    if not spec.complete:
        return float("nan")
    value = (read_metrics(spec.directory).get("best_val") or {}).get(monitor)
    return float("nan") if value is None else float(value)


def model_points(
    base: Plan,
    model: str,
    overrides: Sequence[str],
    grid: Mapping[str, Sequence],
    seed: int,
    monitor: str = MONITOR,
    max_extensions: int = MAX_EXTENSIONS,
) -> Points:
    """The model's points given the runs finished so far: the grid's, plus one extension each time
    every point so far is finished (complete or failed) and the best sits on an edge."""
    points = [tuple(p) for p in grid_points(grid)]
    key = extendable(grid)
    values = [float(v) for v in grid[key]] if key else []
    while True:
        specs = [_spec_of(base, model, k, overrides, point, seed) for k, point in enumerate(points)]
        scores = [_score(spec, monitor) for spec in specs]
        failed = [not spec.complete and has_error(spec.directory) for spec in specs]
        finished = all(spec.complete or bad for spec, bad in zip(specs, failed))
        extensions = len(points) - len(grid_points(grid))
        scored = [i for i, x in enumerate(scores) if math.isfinite(x)]
        if not finished:
            return Points(model, tuple(points), extensions, PENDING)
        if key is None or not scored:
            return Points(model, tuple(points), extensions, FLAT if key is None and scored else NONE)
        top = max(scores[i] for i in scored)
        best = [i for i in scored if scores[i] == top]
        if len(best) > 1:
            return Points(model, tuple(points), extensions, TIED)
        won, tried = values[best[0]], [values[i] for i in scored]
        upper, lower = won == max(tried), won == min(tried)
        if not (upper or lower):
            return Points(model, tuple(points), extensions, BRACKETED)
        if any(bad and (values[i] > won if upper else values[i] < won) for i, bad in enumerate(failed)):
            return Points(model, tuple(points), extensions, FAILED)
        if extensions >= max_extensions:
            return Points(model, tuple(points), extensions, CAPPED)
        value = beyond(values, upper)
        values.append(value)
        points.append((f"{key}={_text(value)}",))


def _spec_of(base: Plan, model: str, k: int, overrides: Sequence[str], point: Sequence[str], seed: int) -> RunSpec:
    label = _label(model, k)
    return make_plan(base.dataset, {label: [*overrides, *point]}, [seed], base.results_dir, base.dataset_choice).runs[0]


def tune_models(
    models: Mapping[str, Sequence[str]],
    grids: Mapping[str, Mapping],
    points: Mapping[str, Sequence[Sequence[str]]] | None = None,
) -> dict[str, list[str]]:
    """``tune-<model>-<k>`` -> the model's preset overrides + its k-th point (``points``: each
    model's points with extensions; default the grid's)."""
    out = {}
    for model, grid in grids.items():
        if model not in models:
            raise ConfigError(f"phase2: preset.tune names {model!r}, which is not in preset.models {sorted(models)}")
        for k, point in enumerate(grid_points(grid) if points is None else points[model]):
            out[_label(model, k)] = [*[str(o) for o in models[model]], *point]
    return out


def all_points(
    plan: Plan,
    models: Mapping[str, Sequence[str]],
    grids: Mapping[str, Mapping],
    seed: int,
    monitor: str = MONITOR,
    max_extensions: int = MAX_EXTENSIONS,
) -> dict[str, Points]:
    tune_models(models, grids)  # a grid naming a model outside the plan is a config error first
    return {
        model: model_points(plan, model, [str(o) for o in models[model]], grid, seed, monitor, max_extensions)
        for model, grid in grids.items()
    }


def tune_plan(
    plan: Plan,
    models: Mapping[str, Sequence[str]],
    grids: Mapping[str, Mapping],
    seed: int,
    monitor: str = MONITOR,
    max_extensions: int = MAX_EXTENSIONS,
) -> Plan:
    """The tuning runs: every grid point, and the extensions the finished runs call for."""
    found = all_points(plan, models, grids, seed, monitor, max_extensions)
    labelled = tune_models(models, grids, {m: p.points for m, p in found.items()})
    return make_plan(plan.dataset, labelled, [seed], plan.results_dir, plan.dataset_choice)


def run_tuning(
    plan: Plan,
    models: Mapping[str, Sequence[str]],
    grids: Mapping[str, Mapping],
    seed: int,
    train: Callable[[Plan], object],
    monitor: str = MONITOR,
    max_extensions: int = MAX_EXTENSIONS,
    wait: Callable[[Sequence[RunSpec]], None] | None = None,
) -> Plan:
    """Train the grid, then each round of extensions (``train`` gets the tuning plan and trains
    what is missing), until no model asks for another point; returns the final tuning plan.

    After each round it waits (``wait``) for the points another runner is still training: with
    two runners on one study, the first to finish its share would otherwise choose the winners,
    and go on to train main runs, without the other's points."""
    wait = wait or wait_for_other_runners
    tuning = tune_plan(plan, models, grids, seed, monitor, max_extensions)
    train(tuning)
    wait(tuning.runs)
    for _ in range(max_extensions):
        after = tune_plan(plan, models, grids, seed, monitor, max_extensions)
        new = tuple(run for run in after.runs if run not in tuning.runs)
        if not new:
            break
        train(replace(after, runs=new))  # only this round's extensions (the rest was counted already)
        wait(new)
        tuning = after
    return tune_plan(plan, models, grids, seed, monitor, max_extensions)


def extension_cap(value: object) -> int:
    """``preset.tune_extensions`` as a count (a user's typo is one line, not a traceback)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"phase2: preset.tune_extensions is {value!r}; expected a whole number >= 0, e.g. 3")
    return value


def _prior(prior: Mapping[str, Mapping] | None, model: str) -> tuple[str, int]:
    """``("model.net.field.kind x4", 4)``: a model's choices made on validation before this study."""
    choices = dict(((prior or {}).get(model) or {}).items())
    for knob, count in choices.items():
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ConfigError(
                f"phase2: preset.tune_prior.{model}.{knob} is {count!r}; expected the number of values it was "
                "chosen among, a whole number >= 1"
            )
    return ", ".join(f"{k} x{v}" for k, v in choices.items()), math.prod(choices.values())


def selection(
    tuning: Plan,
    models: Mapping[str, Sequence[str]],
    grids: Mapping[str, Mapping],
    monitor: str,
    seed: int | None = None,
    prior: Mapping[str, Mapping] | None = None,
    max_extensions: int = MAX_EXTENSIONS,
) -> pd.DataFrame:
    """One row per point: model, overrides, validation score (NaN: missing or failed), ``selected``
    (the best point of each model; none if every point failed), ``extension`` (0: the grid's,
    k: the k-th point beyond an edge), and per model ``grid_points``, ``prior_choices``,
    ``configurations`` (grid points x prior values) and ``status`` (bracketed or why not)."""
    seed = tuning.runs[0].seed if seed is None and tuning.runs else (seed or 0)
    unknown = sorted(set(prior or {}) - set(models))
    if unknown:
        raise ConfigError(f"phase2: preset.tune_prior names {unknown}, which are not in preset.models {sorted(models)}")
    found = all_points(tuning, models, grids, seed, monitor, max_extensions)
    rows = []
    for model, grid in grids.items():
        points = found[model]
        base = len(grid_points(grid))
        choices, factor = _prior(prior, model)
        mine = []
        for k, point in enumerate(points.points):
            spec = _spec_of(tuning, model, k, [str(o) for o in models[model]], point, seed)
            if k >= base and not (spec.complete or has_error(spec.directory)):
                continue  # an extension not trained yet: its status says so, the table shows runs only
            mine.append(
                {
                    "model": model,
                    "point": k,
                    "overrides": " ".join(point),
                    monitor: _score(spec, monitor),
                    "extension": max(0, k - base + 1),
                }
            )
        for row in mine:  # the configurations it had: the points with a run, times the prior choices
            row.update(grid_points=len(mine), prior_choices=choices, configurations=len(mine) * factor)
            row["status"] = points.status
        rows += mine
    table = pd.DataFrame(rows)
    if table.empty:
        return table.assign(selected=[])
    winners = [
        group[monitor].idxmax() for _, group in table.groupby("model", sort=False) if group[monitor].notna().any()
    ]
    table.insert(4, "selected", table.index.isin(winners))  # ties: the first point in grid order
    return table


def summary(table: pd.DataFrame, monitor: str) -> pd.DataFrame:
    """One row per model: its points, winner, configurations and whether the grid brackets it."""
    rows = []
    for model, group in table.groupby("model", sort=False):
        won = group[group["selected"]]
        rows.append(
            {
                "model": model,
                "points": " ".join(p.split("=", 1)[-1] for p in group["overrides"]),
                "winner": won["overrides"].iloc[0] if len(won) else "",
                monitor: float(won[monitor].iloc[0]) if len(won) else float("nan"),
                "extensions": int(group["extension"].max()),
                "prior_choices": group["prior_choices"].iloc[0] or "-",
                "configurations": int(group["configurations"].iloc[0]),
                "status": group["status"].iloc[0],
            }
        )
    return pd.DataFrame(rows)


def write_tuning(
    tuning: Plan,
    models: Mapping[str, Sequence[str]],
    grids: Mapping[str, Mapping],
    out_dir: Path,
    monitor: str = MONITOR,
    prior: Mapping[str, Mapping] | None = None,
    max_extensions: int = MAX_EXTENSIONS,
) -> list[Path]:
    """``tune.{csv,md}`` (every point; the page opens with one line per model) and ``tuned.json``."""
    table = selection(tuning, models, grids, monitor, prior=prior, max_extensions=max_extensions)
    tuned = {row.model: row.overrides.split() for row in table[table["selected"]].itertuples()} if len(table) else {}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    capped = [] if table.empty else sorted(set(table.loc[table["status"] == CAPPED, "model"]))
    lines = [
        f"### Tuning: every point, one seed, selected on {monitor}",
        "",
        "Per model: its points (a winner on the edge of a 1-D numeric grid adds one point beyond that edge at "
        f"the same log ratio, at most {max_extensions} times), the winner, and the configurations it had on "
        "validation: points here x the values of choices made on validation before this study "
        "(`prior_choices`, preset.tune_prior).",
        "",
        markdown(summary(table, monitor)) if len(table) else "(no tuning points)",
        "",
    ]
    if capped:
        lines += [
            f"**Not bracketed: the extension cap ({max_extensions}) stopped the grid of {', '.join(capped)} with "
            "its winner still on an edge; the optimum may lie beyond.**",
            "",
        ]
    lines += ["Every point:", "", markdown(table) if len(table) else "(empty)", ""]
    csv = write_atomic(out_dir / f"{STEM}.csv", lambda tmp: table.to_csv(tmp, index=False))
    md = write_atomic(out_dir / f"{STEM}.md", lambda tmp: tmp.write_text("\n".join(lines)))
    return [csv, md, write_json(out_dir / TUNED_FILE, tuned)]


def tuned_overrides(out_dir: Path) -> dict[str, list[str]]:
    """``tuned.json`` of an earlier tuning stage (empty if none)."""
    path = out_dir / TUNED_FILE
    return json.loads(path.read_text()) if path.is_file() else {}
