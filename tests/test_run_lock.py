"""Runner processes sharing one results folder: a run is trained by one process at a time, and a
run another process finished after this one planned is not trained again."""

import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from deepm3.phase2.plan import make_plan
from deepm3.phase2.train_all import train_all
from deepm3.run.lock import lock_holder, training_lock
from deepm3.run_dir import LOCK_FILE, write_metrics
from tests.helpers.run_folders import fake_training


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_the_lock_is_held_for_the_block_and_released_after(tmp_path: Path) -> None:
    with training_lock(tmp_path / "run") as mine:
        assert mine
        assert lock_holder(tmp_path / "run") == f"{os.getpid()}@{socket.gethostname()}"
    assert not (tmp_path / "run" / LOCK_FILE).exists()


def test_a_held_lock_is_not_taken_twice(tmp_path: Path) -> None:
    with training_lock(tmp_path) as first, training_lock(tmp_path) as second:
        assert first and not second
    assert not (tmp_path / LOCK_FILE).exists()  # released by its holder


def test_a_lock_whose_process_died_is_taken_over(tmp_path: Path) -> None:
    (tmp_path / LOCK_FILE).write_text(f"{dead_pid()}@{socket.gethostname()}")
    assert lock_holder(tmp_path) is None
    with training_lock(tmp_path) as mine:
        assert mine


def test_a_lock_held_on_another_host_is_respected(tmp_path: Path) -> None:
    (tmp_path / LOCK_FILE).write_text(f"{dead_pid()}@another-host.example")
    with training_lock(tmp_path) as mine:
        assert not mine
    assert (tmp_path / LOCK_FILE).exists()


def test_a_run_another_live_process_is_training_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    plan = make_plan("d", {"a": ["model=pop"]}, [0, 1], tmp_path)
    busy = plan.runs[0].directory
    busy.mkdir(parents=True)
    (busy / LOCK_FILE).write_text(f"{os.getppid()}@{socket.gethostname()}")  # a live process
    trained = fake_training(monkeypatch)
    with caplog.at_level(logging.INFO, logger="deepm3.phase2.train_all"):
        summary = train_all(plan, [], "cpu", bar=False)
    assert trained == ["a-seed1"]
    assert summary.skipped == ["a-seed0"]
    assert any("a-seed0 is being trained by process" in r.message for r in caplog.records)


def test_a_run_finished_by_another_process_after_planning_is_not_trained_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = make_plan("d", {"a": ["model=pop"]}, [0, 1], tmp_path)
    other = plan.runs[1].directory

    def another_runner_finishes_seed1(_: Path) -> None:  # while this one trains seed 0
        other.mkdir(parents=True, exist_ok=True)
        write_metrics(other, {"train_seconds": 2.0})

    trained = fake_training(monkeypatch, during=another_runner_finishes_seed1)
    summary = train_all(plan, [], "cpu", bar=False)
    assert trained == ["a-seed0"]
    assert summary.skipped == ["a-seed1"]
    assert not (plan.runs[0].directory / LOCK_FILE).exists()


def test_the_train_stage_returns_only_when_the_other_runners_runs_are_done(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two runners share the main runs: the one that finishes its share first waits before any table."""
    from types import SimpleNamespace

    from deepm3.phase2 import stages

    plan = make_plan("tiny", {"a": ["model=pop"], "b": ["model=repeat"]}, [0], tmp_path)
    mine, theirs = plan.runs
    (theirs.directory).mkdir(parents=True)
    (theirs.directory / LOCK_FILE).write_text(f"{os.getpid()}@{socket.gethostname()}")  # a live runner
    naps: list[float] = []

    def nap(seconds: float) -> None:  # the other runner finishes while this one waits
        naps.append(seconds)
        write_metrics(theirs.directory, {"test": {}})
        (theirs.directory / LOCK_FILE).unlink()

    monkeypatch.setattr("deepm3.phase2.plan.time.sleep", nap)
    trained: list[str] = []
    ctx = SimpleNamespace(tuning=None, plan=plan, train=lambda runs, *rest: trained.append(mine.name))
    stages.train(ctx)
    assert trained == [mine.name] and len(naps) == 1 and theirs.complete


def test_a_run_held_on_another_host_is_not_waited_for(tmp_path: Path) -> None:
    from deepm3.phase2.plan import wait_for_other_runners

    run = make_plan("tiny", {"a": ["model=pop"]}, [0], tmp_path).runs[0]
    run.directory.mkdir(parents=True)
    (run.directory / LOCK_FILE).write_text("12345@another-host.example")  # may be long dead: no endless wait

    def nap(seconds: float) -> None:
        raise AssertionError("waited for a lock held on another host")

    wait_for_other_runners([run], sleep=nap)
