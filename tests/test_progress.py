"""A study that runs for hours shows where it is: the plan before training, one line per run."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest

import deepm3.phase2.train_all as train_all_module
from deepm3.phase2.plan import make_plan
from deepm3.phase2.progress import StudyProgress, estimate_label, format_duration, preset_hint
from deepm3.phase2.train_all import train_all
from tests.helpers.run_folders import fake_training


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def complete(directory: Path, seconds: float, **extra: object) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "metrics.json").write_text(json.dumps({"train_seconds": seconds, "test": {}, **extra}))


@pytest.mark.parametrize("seconds, text", [(None, "unknown"), (45.4, "45s"), (750, "12m 30s"), (7500, "2h 05m")])
def test_durations_read_like_a_person_would_say_them(seconds: float | None, text: str) -> None:
    assert format_duration(seconds) == text


def test_a_run_costs_like_its_model_in_any_mode_and_its_tuning_runs() -> None:
    assert estimate_label("deepm3-euler@last") == estimate_label("tune-deepm3-euler-3") == "deepm3-euler"
    assert estimate_label("sens-hidden-80") == "sens-hidden-80"


def test_the_preset_hint_is_a_number_or_one_per_dataset() -> None:
    assert preset_hint({"estimate_seconds": 60}, "ml100k") == 60.0
    assert preset_hint({"estimate_seconds": {"ml100k": 60, "default": 600}}, "amazon_toys") == 600.0
    assert preset_hint({}, "ml100k") is None


def test_the_plan_line_and_each_run_line_say_k_of_n_elapsed_time_left_and_failures(tmp_path: Path) -> None:
    plan = make_plan("d", {"a": [], "b": []}, [0, 1], tmp_path)
    complete(plan.runs[0].directory, 100.0)  # a-seed0 took 100 s
    clock = Clock()
    todo = list(plan.runs[1:])
    progress = StudyProgress("train", todo, total=3, measured={"a": [100.0]}, hint=40.0, bar=False, clock=clock)
    assert progress.plan_line(4, 1, 0) == (
        "phase2 train: 4 runs planned: 1 already complete, 0 copied from finished "
        "runs, 3 to train; rough estimate 3m 00s (from the train_seconds of 1 "
        "complete run)"
    )  # a: 100 s (measured), b: 2 x 40 s (hint)
    clock.now = 120.0
    assert progress.finished(todo[0], "trained", 120.0) == (
        "phase2 train: 1 of 3 (a-seed1: trained in 2m 00s); elapsed 2m 00s, about 1m 20s left; 0 failed so far"
    )
    clock.now = 130.0
    assert progress.finished(todo[1], "failed", 10.0) == (
        "phase2 train: 2 of 3 (b-seed0: failed in 10s); elapsed 2m 10s, about 40s left; 1 failed so far"
    )


def test_without_measurements_or_hint_the_estimate_is_unknown(tmp_path: Path) -> None:
    plan = make_plan("d", {"a": []}, [0], tmp_path)
    progress = StudyProgress("tune", list(plan.runs), total=1, measured={}, bar=False)
    assert "no time estimate (nothing to estimate from yet" in progress.plan_line(1, 0, 0)


def test_train_all_logs_the_plan_then_one_line_per_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    plan = make_plan("d", {"a": ["model=pop"], "b": ["model=pop", "optim.lr=0.01"]}, [0, 1], tmp_path)
    complete(plan.runs[0].directory, 30.0)
    source = tmp_path / "tune-a-0-seed1"
    complete(source, 7.0)
    reusable = {train_all_module.same_run_key(train_all_module.run_overrides(plan, plan.runs[1], [], "cpu")): source}
    fake_training(monkeypatch, fail={"b-seed1"})
    with caplog.at_level(logging.INFO, logger="deepm3.phase2.train_all"):
        summary = train_all(plan, [], "cpu", reusable, bar=False)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("phase2 train:")]
    assert lines[0] == (
        "phase2 train: 4 runs planned: 1 already complete, 1 copied from finished runs, 2 to train; "
        "rough estimate 1m 00s (from the train_seconds of 1 complete run)"
    )
    assert [line.split(";")[0].split(" in ")[0] for line in lines[1:]] == [
        "phase2 train: 1 of 3 (a-seed1: copied)",
        "phase2 train: 2 of 3 (b-seed0: trained",
        "phase2 train: 3 of 3 (b-seed1: failed",
    ]
    assert [line.split("; ")[-1] for line in lines[1:]] == ["0 failed so far", "0 failed so far", "1 failed so far"]
    assert all("elapsed " in line and " left" in line for line in lines[1:])
    assert summary.trained == ["b-seed0"] and list(summary.failed) == ["b-seed1"]


def test_a_bar_is_drawn_only_on_a_terminal(tmp_path: Path) -> None:
    plan = make_plan("d", {"a": []}, [0, 1], tmp_path)
    plain, terminal = io.StringIO(), Terminal()
    for stream in (plain, terminal):
        with StudyProgress("train", list(plan.runs), total=2, measured={}, hint=10.0, stream=stream) as progress:
            progress.finished(plan.runs[0], "trained", 10.0)
    assert plain.getvalue() == ""
    assert "phase2 train" in terminal.getvalue() and "1/2" in terminal.getvalue()
