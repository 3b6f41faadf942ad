"""A stage's runs sent out through a Hydra launcher (joblib, submitit's local executor) give the
same per-run files as the sequential runner; the run lock stays the single source of truth."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from deepm3.errors import ConfigError
from deepm3.phase2.launch import Launcher
from deepm3.phase2.pipeline import run_phase2
from deepm3.phase2.train_all import compose_run, train_one
from deepm3.run.lock import training_lock
from deepm3.run_dir import read_metrics
from tests.helpers.tiny_study import phase2_config

REPO = Path(__file__).resolve().parents[1]
MODELS = {
    "gru4rec": ["model=gru4rec", "model.net.hidden=16", "model.net.gru_hidden=16"],
    "pop": ["model=pop"],
    "broken": ["model=pop", "model.net._target_=deepm3.no_such_module.Net"],
}


def test_an_unknown_launcher_is_a_one_line_config_error():
    with pytest.raises(ConfigError, match="launch='slurmish' is unknown"):
        Launcher("slurmish")


def test_a_launcher_whose_plugin_is_missing_names_the_package(monkeypatch):
    monkeypatch.setattr("deepm3.phase2.launch.importlib.util.find_spec", lambda name: None)
    with pytest.raises(ConfigError, match="needs the hydra-joblib-launcher plugin"):
        Launcher("joblib")


def test_a_job_skips_a_run_another_runner_holds(tmp_path):
    folder = tmp_path / "gru4rec-seed0"
    with training_lock(folder) as mine:
        assert mine
        assert train_one(folder, ["model=pop"]) == "skipped"
    assert not (folder / "metrics.json").exists()


def study(results: Path, data: Path, *overrides: str) -> dict:
    cfg = phase2_config(results, data, "studies=[train]", "seeds=[0]", *overrides, models=MODELS)
    return run_phase2(cfg, "python -m deepm3.phase2", "python -m deepm3.phase2")


def metrics_of(folder: Path) -> dict:
    return read_metrics(folder)["test"]


@pytest.mark.slow
@pytest.mark.parametrize(
    "launcher", [["launch=joblib", 'launch_overrides=["hydra.launcher.n_jobs=2"]'], ["launch=submitit_local"]]
)
def test_a_launched_stage_gives_the_sequential_runners_files(tmp_path, monkeypatch, launcher):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.chdir(REPO)  # the jobs import tests.helpers (the tiny dataset) from here
    study(tmp_path / "sequential", tmp_path / "data")
    study(tmp_path / "launched", tmp_path / "data", *launcher)
    for name in ("gru4rec-seed0", "pop-seed0"):
        one = metrics_of(tmp_path / "sequential" / "tiny" / "runs" / name)
        other = metrics_of(tmp_path / "launched" / "tiny" / "runs" / name)
        assert other == pytest.approx(one, abs=1e-6)
    failed = tmp_path / "launched" / "tiny" / "runs" / "broken-seed0"
    assert "no_such_module" in json.loads((failed / "error.json").read_text())["error"]
    launches = list((tmp_path / "launched" / "tiny" / "runs" / "_launch").iterdir())
    assert len(launches) == 1 and (launches[0] / "jobs.json").is_file()
    # resumed: only the failed run goes out again
    study(tmp_path / "launched", tmp_path / "data", *launcher)
    newest = max((tmp_path / "launched" / "tiny" / "runs" / "_launch").iterdir(), key=lambda p: p.name)
    assert [job["name"] for job in json.loads((newest / "jobs.json").read_text())] == ["broken-seed0"]


def test_the_job_config_composes(tmp_path):
    assert compose_run(["model=pop"]).model.name == "pop"
