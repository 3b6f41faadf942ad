"""Equal, bracketed tuning: a 1-D numeric grid whose validation winner sits on an edge grows one
point beyond that edge (same log ratio) while the winner stays there, at most ``MAX_EXTENSIONS``
times, and ``tune.{csv,md}`` counts the configurations every model had.

A fake run function stands in for training: it writes each tuning run's ``metrics.json`` with a
validation score that is a known function of the learning rate, so every test knows its answer."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path

import pandas as pd
import pytest

from deepm3.errors import ConfigError
from deepm3.phase2.plan import Plan, make_plan, wait_for_other_runners
from deepm3.phase2.tune import (
    BRACKETED,
    CAPPED,
    FAILED,
    FLAT,
    MAX_EXTENSIONS,
    PENDING,
    TIED,
    beyond,
    extension_cap,
    run_tuning,
    selection,
    tune_plan,
    write_tuning,
)
from deepm3.run_dir import LOCK_FILE

MONITOR = "val/ndcg@10"
GRID = {"optim.lr": [0.001, 0.003, 0.01]}


def lr_of(overrides: tuple[str, ...]) -> float:
    return float(next(o for o in overrides if o.startswith("optim.lr=")).split("=", 1)[1])


def fake_training(score: Callable[[float], float | None], trained: list[str]) -> Callable[[Plan], None]:
    """A run function: each missing run gets ``metrics.json`` with ``score(lr)`` (None: the run fails)."""

    def train(plan: Plan) -> None:
        for spec in plan.missing():
            spec.directory.mkdir(parents=True, exist_ok=True)
            value = score(lr_of(spec.overrides))
            if value is None:
                (spec.directory / "error.json").write_text(json.dumps({"error": "RuntimeError: diverged"}))
            else:
                (spec.directory / "metrics.json").write_text(json.dumps({"best_val": {MONITOR: value}}))
            trained.append(spec.name)

    return train


def peaked_at(lr: float) -> Callable[[float], float]:
    """Validation NDCG highest at ``lr``, falling with the log distance from it."""
    return lambda x: 0.1 - 0.01 * abs(math.log10(x / lr))


def tune(tmp_path: Path, score: Callable[[float], float | None], grid: dict = GRID, models: dict | None = None):
    models = models or {"sasrec": ["model=sasrec"]}
    grids = {m: grid for m in models}
    plan = make_plan("tiny", models, [0], tmp_path)
    trained: list[str] = []
    tuning = run_tuning(plan, models, grids, 0, fake_training(score, trained), MONITOR)
    return tuning, selection(tuning, models, grids, MONITOR), trained


def lrs(table: pd.DataFrame) -> list[float]:
    return [float(o.split("=", 1)[1]) for o in table["overrides"]]


def test_an_inner_winner_is_bracketed_and_the_grid_is_not_extended(tmp_path: Path) -> None:
    _, table, trained = tune(tmp_path, peaked_at(0.003))
    assert trained == ["tune-sasrec-0-seed0", "tune-sasrec-1-seed0", "tune-sasrec-2-seed0"]
    assert set(table["status"]) == {BRACKETED} and table["extension"].max() == 0


def test_a_winner_on_the_upper_edge_adds_one_point_beyond_it_at_the_same_log_ratio(tmp_path: Path) -> None:
    _, table, trained = tune(tmp_path, peaked_at(0.012))  # 0.01 wins; 0.0333333 is tried and loses
    assert len(trained) == 4 and lrs(table) == [0.001, 0.003, 0.01, 0.0333333]
    assert table.loc[table["selected"], "overrides"].item() == "optim.lr=0.01"
    assert table["extension"].tolist() == [0, 0, 0, 1] and set(table["status"]) == {BRACKETED}


def test_a_winner_on_the_lower_edge_extends_downwards(tmp_path: Path) -> None:
    _, table, _ = tune(tmp_path, peaked_at(0.0008))
    assert lrs(table)[3:] == [0.000333333] and set(table["status"]) == {BRACKETED}


def test_the_grid_grows_while_the_winner_stays_on_the_edge_then_stops_at_the_cap(tmp_path: Path) -> None:
    _, table, trained = tune(tmp_path, lambda lr: lr)  # always better higher: never bracketed
    assert len(trained) == 3 + MAX_EXTENSIONS
    assert lrs(table)[3:] == [0.0333333, 0.111111, 0.37037]
    assert set(table["status"]) == {CAPPED} and table.loc[table["selected"], "extension"].item() == MAX_EXTENSIONS


def test_tune_md_says_when_the_cap_stopped_the_grid(tmp_path: Path) -> None:
    tuning, _, _ = tune(tmp_path, lambda lr: lr)
    models, grids = {"sasrec": ["model=sasrec"]}, {"sasrec": GRID}
    write_tuning(tuning, models, grids, tmp_path / "out", MONITOR)
    text = (tmp_path / "out" / "tune.md").read_text()
    assert f"extension cap ({MAX_EXTENSIONS}) stopped the grid of sasrec" in text
    assert json.loads((tmp_path / "out" / "tuned.json").read_text()) == {"sasrec": ["optim.lr=0.37037"]}


def test_a_bracketed_study_says_nothing_about_the_cap(tmp_path: Path) -> None:
    tuning, _, _ = tune(tmp_path, peaked_at(0.003))
    write_tuning(tuning, {"sasrec": ["model=sasrec"]}, {"sasrec": GRID}, tmp_path / "out", MONITOR)
    assert "stopped the grid" not in (tmp_path / "out" / "tune.md").read_text()


def test_a_tie_with_another_point_is_not_an_edge_winner(tmp_path: Path) -> None:
    """A model the knob does not move (pop and the learning rate) is not searched further."""
    _, table, trained = tune(tmp_path, lambda lr: 0.05)
    assert len(trained) == 3 and set(table["status"]) == {TIED}


def test_a_failed_point_beyond_the_edge_ends_the_extension_and_says_so(tmp_path: Path) -> None:
    _, table, trained = tune(tmp_path, lambda lr: None if lr > 0.02 else lr)
    assert len(trained) == 4 and set(table["status"]) == {FAILED}
    assert table[MONITOR].isna().tolist() == [False, False, False, True]


def test_a_grid_of_two_knobs_is_not_extended(tmp_path: Path) -> None:
    grid = {"optim.lr": [0.001, 0.01], "model.net.dropout": [0.1, 0.3]}
    _, table, trained = tune(tmp_path, lambda lr: lr, grid=grid)
    assert len(trained) == 4 and set(table["status"]) == {FLAT}


def test_a_grid_of_words_is_not_extended(tmp_path: Path) -> None:
    grid = {"optim.lr": [0.001, 0.01], "solver": ["euler"]}
    assert set(tune(tmp_path, lambda lr: lr, grid=grid)[1]["status"]) == {FLAT}


def test_the_plan_of_a_resumed_study_is_the_one_its_finished_runs_call_for(tmp_path: Path) -> None:
    """The extensions follow from the runs on disk: verify and a later invocation see the same plan."""
    models, grids = {"sasrec": ["model=sasrec"]}, {"sasrec": GRID}
    tuning, _, _ = tune(tmp_path, peaked_at(0.012))
    again = tune_plan(make_plan("tiny", models, [0], tmp_path), models, grids, 0, MONITOR)
    assert again.runs == tuning.runs and not again.missing()


def test_an_extension_not_trained_yet_is_planned_but_not_in_the_table(tmp_path: Path) -> None:
    """A study tuned before bracketing (its winner on the edge) keeps its table: the pending point is named."""
    models, grids = {"sasrec": ["model=sasrec"]}, {"sasrec": GRID}
    plan = make_plan("tiny", models, [0], tmp_path)
    fake_training(lambda lr: lr, [])(tune_plan(plan, models, grids, 0, MONITOR, max_extensions=0))  # the grid only
    pending = tune_plan(plan, models, grids, 0, MONITOR)
    assert [r.model for r in pending.missing()] == ["tune-sasrec-3"]
    table = selection(pending, models, grids, MONITOR)
    assert len(table) == 3 and set(table["status"]) == {PENDING}


def test_every_model_gets_its_own_extensions(tmp_path: Path) -> None:
    models = {"sasrec": ["model=sasrec"], "gru4rec": ["model=gru4rec"]}
    scores = {"model=sasrec": peaked_at(0.003), "model=gru4rec": peaked_at(0.012)}
    grids = {m: GRID for m in models}
    plan = make_plan("tiny", models, [0], tmp_path)

    def train(runs: Plan) -> None:
        for spec in runs.missing():
            spec.directory.mkdir(parents=True, exist_ok=True)
            value = scores[spec.overrides[0]](lr_of(spec.overrides))
            (spec.directory / "metrics.json").write_text(json.dumps({"best_val": {MONITOR: value}}))

    run_tuning(plan, models, grids, 0, train, MONITOR)
    table = selection(tune_plan(plan, models, grids, 0, MONITOR), models, grids, MONITOR)
    assert table.groupby("model", sort=False)["grid_points"].first().to_dict() == {"sasrec": 3, "gru4rec": 4}


def test_prior_choices_count_in_the_configurations_a_model_had(tmp_path: Path) -> None:
    """DeepM3's flow, chosen among 4 on validation before the study, counts against its budget."""
    models = {"deepm3-euler": ["model=deepm3"], "sasrec": ["model=sasrec"]}
    grids = {m: GRID for m in models}
    plan = make_plan("tiny", models, [0], tmp_path)
    run_tuning(plan, models, grids, 0, fake_training(peaked_at(0.003), []), MONITOR)
    prior = {"deepm3-euler": {"model.net.field.kind": 4}}
    tuning = tune_plan(plan, models, grids, 0, MONITOR)
    write_tuning(tuning, models, grids, tmp_path / "out", MONITOR, prior)
    table = pd.read_csv(tmp_path / "out" / "tune.csv")
    per_model = table.groupby("model", sort=False)["configurations"].first().to_dict()
    assert per_model == {"deepm3-euler": 12, "sasrec": 3}
    assert "model.net.field.kind x4" in (tmp_path / "out" / "tune.md").read_text()


@pytest.mark.parametrize(
    "values, upper, expected",
    [([0.001, 0.003, 0.01], True, 0.0333333), ([0.001, 0.003, 0.01], False, 0.000333333), ([60, 600], True, 6000.0)],
)
def test_one_point_beyond_an_edge_keeps_the_edges_log_ratio(values: list, upper: bool, expected: float) -> None:
    assert beyond(values, upper) == expected


@pytest.mark.parametrize("prior", [{"gru4rec": {"model.net.field.kind": 4}}, {"sasrec": {"model.net.field.kind": 0}}])
def test_a_prior_for_an_unknown_model_or_of_no_values_is_a_one_line_config_error(tmp_path: Path, prior: dict) -> None:
    models, grids = {"sasrec": ["model=sasrec"]}, {"sasrec": GRID}
    tuning = tune_plan(make_plan("tiny", models, [0], tmp_path), models, grids, 0, MONITOR)
    with pytest.raises(ConfigError, match=r"preset\.tune_prior"):
        selection(tuning, models, grids, MONITOR, prior=prior)


@pytest.mark.parametrize("value", [-1, "three", 1.5])
def test_an_extension_cap_that_is_not_a_count_is_a_one_line_config_error(value: object) -> None:
    with pytest.raises(ConfigError, match=r"preset\.tune_extensions"):
        extension_cap(value)


def hold(directory: Path) -> None:
    """The lock another live runner takes on a run it trains (this process stands in for it)."""
    import os
    import socket

    directory.mkdir(parents=True, exist_ok=True)
    (directory / LOCK_FILE).write_text(f"{os.getpid()}@{socket.gethostname()}")


def finish(directory: Path, score: float) -> None:
    (directory / "metrics.json").write_text(json.dumps({"best_val": {MONITOR: score}}))
    (directory / LOCK_FILE).unlink()


def test_waiting_returns_at_once_when_no_other_runner_holds_a_run(tmp_path: Path) -> None:
    plan = make_plan("tiny", {"sasrec": ["model=sasrec"]}, [0], tmp_path)
    naps: list[float] = []
    wait_for_other_runners(plan.runs, sleep=naps.append)
    assert naps == []


def test_waiting_lasts_until_the_other_runner_finishes_its_run(tmp_path: Path) -> None:
    run = make_plan("tiny", {"sasrec": ["model=sasrec"]}, [0], tmp_path).runs[0]
    hold(run.directory)
    naps: list[float] = []

    def nap(seconds: float) -> None:
        naps.append(seconds)
        if len(naps) == 2:
            finish(run.directory, 0.1)

    wait_for_other_runners([run], seconds=1.0, sleep=nap)
    assert naps == [1.0, 1.0] and run.complete


def test_the_winner_is_chosen_only_after_the_points_another_runner_trains(tmp_path: Path) -> None:
    """Two runners share a tuning grid: this one skips the point the other holds (lr 3e-3, the best)."""
    models = {"sasrec": ["model=sasrec"]}
    grids = {"sasrec": GRID}
    plan = make_plan("tiny", models, [0], tmp_path)
    held = tune_plan(plan, models, grids, 0, MONITOR).runs[1]
    hold(held.directory)
    mine = fake_training(peaked_at(0.0008), [])

    def train_my_share(tuning: Plan) -> None:
        mine(replace(tuning, runs=tuple(r for r in tuning.runs if r.directory != held.directory)))

    def other_runner_done(seconds: float) -> None:
        finish(held.directory, 0.5)

    tuning = run_tuning(
        plan, models, grids, 0, train_my_share, MONITOR, wait=partial(wait_for_other_runners, sleep=other_runner_done)
    )
    table = selection(tuning, models, grids, MONITOR)
    assert table.loc[table["selected"], "overrides"].item() == "optim.lr=0.003"
    assert len(table) == 3  # its inner win brackets the grid: no extension from a half-seen grid
