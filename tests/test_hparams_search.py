"""Hyper-parameter search (``hparams_search=optuna``): Optuna maximises validation NDCG@10, never test."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from deepm3.train import selection_score
from tests.helpers.config import CONF_DIR
from tests.helpers.tiny_runs import FAST_TRAINER, tiny_dataset

REPO = Path(__file__).resolve().parents[1]
MODELS = sorted(p.stem for p in (CONF_DIR / "model").glob("*.yaml"))
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("hydra_plugins.hydra_optuna_sweeper") is None, reason="hydra-optuna-sweeper not installed"
)


def search(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    """``python -m deepm3.train hparams_search=optuna`` on the tiny data, sweeping into ``tmp_path/sweep``."""
    command = [sys.executable, "-m", "deepm3.train", "hparams_search=optuna", *FAST_TRAINER]
    command += [*tiny_dataset(tmp_path / "data"), f"hydra.sweep.dir={tmp_path / 'sweep'}", *overrides]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_the_score_a_search_maximises_is_the_best_validation_score() -> None:
    metrics = {"best_val": {"val/ndcg@10": 0.25}, "test": {"ndcg@10": 0.5}}
    assert selection_score(metrics, "val/ndcg@10") == 0.25


def test_a_run_without_a_validation_score_scores_worst() -> None:
    assert selection_score({"best_val": {"val/ndcg@10": None}}, "val/ndcg@10") == float("-inf")


@pytest.mark.parametrize("model", MODELS)
def test_the_search_composes_for_every_model_and_names_existing_keys(model: str) -> None:
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
            cfg = compose("train", [f"model={model}", "hparams_search=optuna"], return_hydra_config=True)
    finally:
        GlobalHydra.instance().clear()
    assert cfg.hydra.sweeper.direction == "maximize" and cfg.hydra.sweeper.n_trials > 0
    for key in cfg.hydra.sweeper.params:
        assert OmegaConf.select(cfg, key) is not None, key


def test_a_two_trial_search_runs_and_keeps_the_best_validation_score(tmp_path: Path) -> None:
    done = search(tmp_path, "hydra.sweeper.n_trials=2", "model.net.dropout=interval(0.0,0.5)")
    assert done.returncode == 0, done.stderr[-3000:]
    sweep = tmp_path / "sweep"
    trials = [json.loads(p.read_text()) for p in sorted(sweep.glob("*/metrics.json"))]
    assert len(trials) == 2
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert best["best_value"] == pytest.approx(max(t["best_val"]["val/ndcg@10"] for t in trials))
    assert set(best["best_params"]) == {"optim.lr", "optim.weight_decay", "model.net.dropout"}


def test_a_failed_trial_does_not_stop_the_search(tmp_path: Path) -> None:
    done = search(tmp_path, "hydra.sweeper.n_trials=2", "optim.lr=choice(-1)")
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(list((tmp_path / "sweep").glob("*/error.json"))) == 2
