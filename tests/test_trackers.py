"""Experiment trackers (``logger=``): each shows a run's config, its metric curves and ``metrics.json``.

Every tracker is read back from the files it wrote in the run folder; none touches the network
(W&B runs offline, MLflow stores into the run folder). A tracker not installed here is skipped.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pandas as pd
import pytest
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from deepm3.errors import ConfigError
from deepm3.trackers import build_loggers
from tests.helpers.tiny_runs import compose_train, tiny_run
from tests.helpers.trackers import mlflow_run, tensorboard_run, wandb_run


def needs(package: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(importlib.util.find_spec(package) is None, reason=f"{package} not installed")


@pytest.fixture
def offline_wandb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """W&B's own folders in tmp, and no key: an attempt to reach the server would fail."""
    for name in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(name, str(tmp_path / name.lower()))
    for name in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_BASE_URL"):
        monkeypatch.delenv(name, raising=False)


def test_csv_is_the_default_and_writes_logs_metrics_csv_as_before(tmp_path: Path) -> None:
    assert list(compose_train([]).logger) == ["csv"]
    tiny_run(tmp_path / "run", tmp_path / "data")
    assert "val/ndcg@10" in pd.read_csv(tmp_path / "run" / "logs" / "metrics.csv").columns


def test_logger_many_selects_every_tracker() -> None:
    assert set(compose_train(["logger=many"]).logger) == {"csv", "tensorboard", "mlflow", "wandb"}


@needs("tensorboard")
def test_a_list_selects_several_trackers(tmp_path: Path) -> None:
    cfg = compose_train(["logger=[csv,tensorboard]", f"paths.output_dir={tmp_path}"])
    assert [type(logger) for logger in build_loggers(cfg, tmp_path)] == [CSVLogger, TensorBoardLogger]


def test_a_tracker_not_installed_stops_with_one_line_naming_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    cfg = compose_train(["logger=mlflow", f"paths.output_dir={tmp_path}"])
    with pytest.raises(ConfigError, match=r"logger=mlflow needs the mlflow package.*\.\[trackers\]") as error:
        build_loggers(cfg, tmp_path)
    assert "\n" not in str(error.value)


@needs("tensorboard")
def test_tensorboard_holds_the_config_the_curves_and_metrics_json(tmp_path: Path) -> None:
    metrics = tiny_run(tmp_path / "run", tmp_path / "data", "logger=tensorboard")
    board = tensorboard_run(tmp_path / "run" / "tensorboard")
    assert board["hparams"]["model/name"] == "deepm3" and board["hparams"]["optim/lr"] == 0.001
    assert board["scalars"]["val/ndcg@10"] == [pytest.approx(metrics["best_val"]["val/ndcg@10"])]
    assert board["scalars"]["final/test/ndcg@10"] == [pytest.approx(metrics["test"]["ndcg@10"])]
    assert json.loads(board["texts"]["metrics.json/text_summary"].strip("`json\n"))["test"] == metrics["test"]


@needs("mlflow")
def test_mlflow_holds_the_config_the_curves_and_metrics_json(tmp_path: Path) -> None:
    metrics = tiny_run(tmp_path / "run", tmp_path / "data", "logger=mlflow")
    stored = mlflow_run(tmp_path / "run")
    assert stored["status"] == "FINISHED"
    assert stored["params"]["model/name"] == "deepm3" and float(stored["params"]["optim/lr"]) == 0.001
    assert stored["val_history"] == [pytest.approx(metrics["best_val"]["val/ndcg@10"])]  # '@' is not allowed
    assert stored["metrics"]["final/test/ndcg10"] == pytest.approx(metrics["test"]["ndcg@10"])
    artifact = stored["artifacts"]["metrics.json"]
    assert artifact.is_relative_to(tmp_path / "run")
    assert json.loads(artifact.read_text()) == json.loads((tmp_path / "run" / "metrics.json").read_text())


@needs("wandb")
def test_wandb_offline_holds_the_config_the_curves_and_metrics_json(tmp_path: Path, offline_wandb: None) -> None:
    metrics = tiny_run(tmp_path / "run", tmp_path / "data", "logger=wandb")
    stored = wandb_run(tmp_path / "run")
    assert stored["config"]["model"]["name"] == "deepm3" and stored["config"]["optim"]["lr"] == 0.001
    assert "val/ndcg@10" in stored["history"]
    assert stored["summary"]["final/test/ndcg@10"] == pytest.approx(metrics["test"]["ndcg@10"])
    assert "metrics.json" in stored["files"]


@needs("tensorboard")
@needs("mlflow")
@needs("wandb")
def test_several_trackers_each_get_the_run(tmp_path: Path, offline_wandb: None) -> None:
    metrics = tiny_run(tmp_path / "run", tmp_path / "data", "logger=many")
    run = tmp_path / "run"
    ndcg = pytest.approx(metrics["test"]["ndcg@10"])
    assert pd.read_csv(run / "logs" / "metrics.csv")["test/ndcg@10"].dropna().tolist() == [ndcg]
    assert tensorboard_run(run / "tensorboard")["scalars"]["final/test/ndcg@10"] == [ndcg]
    assert mlflow_run(run)["metrics"]["final/test/ndcg10"] == ndcg
    assert wandb_run(run)["summary"]["final/test/ndcg@10"] == ndcg
