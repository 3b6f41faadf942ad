"""The optimizer is config: ``optim._target_`` picks the class, ``optim.lr``/``weight_decay`` still apply,
and checkpoints keep plain hyper-parameters (``weights_only=True`` loads them)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from deepm3.config import validate_config
from deepm3.errors import ConfigError
from deepm3.models.module import RecModule
from deepm3.train import build_module
from tests.helpers.config import compose
from tests.helpers.tiny_runs import tiny_run

SMALL = ["model=gru4rec", "model.net.hidden=8", "model.net.gru_hidden=8"]


def _optimizer(*overrides: str) -> torch.optim.Optimizer:
    cfg = compose("train", [*SMALL, *overrides])
    validate_config(cfg)
    return build_module(cfg, num_items=12).configure_optimizers()


def test_adamw_by_default_with_the_configured_lr_and_weight_decay() -> None:
    optimizer = _optimizer("optim.lr=0.01", "optim.weight_decay=0.1")
    assert type(optimizer) is torch.optim.AdamW
    assert optimizer.param_groups[0]["lr"] == 0.01 and optimizer.param_groups[0]["weight_decay"] == 0.1


def test_another_optimizer_class_and_its_own_arguments() -> None:
    optimizer = _optimizer("optim._target_=torch.optim.Adam", "+optim.betas=[0.8,0.9]", "optim.lr=0.002")
    assert type(optimizer) is torch.optim.Adam
    assert optimizer.param_groups[0]["betas"] == (0.8, 0.9) and optimizer.param_groups[0]["lr"] == 0.002


def test_a_config_saved_before_the_optimizer_was_config_trains_with_adamw() -> None:
    cfg = compose("train", [*SMALL, "~optim._target_", "~optim._partial_"])
    validate_config(cfg)
    assert type(build_module(cfg, num_items=12).configure_optimizers()) is torch.optim.AdamW
    module = RecModule({"_target_": "deepm3.models.components.gru4rec.GRU4RecNet", "hidden": 8}, num_items=12)
    assert type(module.configure_optimizers()) is torch.optim.AdamW  # as old checkpoints' hparams build it


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("torch.optim.NoSuchOptimizer", "optim._target_='torch.optim.NoSuchOptimizer' cannot be found"),
        ("", "optim._target_=''; expected an optimizer class"),
    ],
)
def test_an_unknown_optimizer_is_one_line_before_any_work(target: str, message: str) -> None:
    cfg = compose("train", SMALL)
    cfg.optim._target_ = target
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        validate_config(cfg)


def test_a_run_with_adam_writes_a_weights_only_checkpoint(tmp_path: Path) -> None:
    metrics = tiny_run(tmp_path / "run", tmp_path / "data", "model=gru4rec", "optim._target_=torch.optim.Adam")
    saved = torch.load(metrics["best_checkpoint"], map_location="cpu", weights_only=True)
    assert saved["hyper_parameters"]["optimizer"] == {"_target_": "torch.optim.Adam"}
    assert type(saved["hyper_parameters"]["optimizer"]) is dict
    assert saved["optimizer_states"][0]["param_groups"][0]["lr"] == 0.001
    module = RecModule.load_from_checkpoint(metrics["best_checkpoint"], map_location="cpu", weights_only=True)
    assert type(module.configure_optimizers()) is torch.optim.Adam
    assert OmegaConf.load(tmp_path / "run" / ".hydra" / "config.yaml").optim._target_ == "torch.optim.Adam"
