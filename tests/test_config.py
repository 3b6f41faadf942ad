"""Training-config checks (deepm3.config.validate_config): bad options are one line before any work."""

from __future__ import annotations

import pytest
import torch


def train_config(*overrides: str):
    from tests.helpers.tiny_runs import compose_train

    return compose_train(list(overrides))


@pytest.mark.parametrize(
    "override, expected",
    [
        ("callbacks.early_stopping.patience=-1", "callbacks.early_stopping.patience=-1; expected a non-negative"),
        ("model.net.solver=warp", "model.net.solver='warp'; expected the solver group's mapping"),
    ],
)
def test_bad_training_options_are_one_line_before_any_work(override: str, expected: str) -> None:
    from deepm3.config import validate_config
    from deepm3.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        validate_config(train_config("model=deepm3", override))
    assert str(info.value).startswith(expected) and "\n" not in str(info.value)


def test_a_gpu_accelerator_without_a_gpu_is_one_line(monkeypatch) -> None:
    from deepm3.config import validate_config
    from deepm3.errors import ConfigError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    for value in ("gpu", "cuda"):
        with pytest.raises(ConfigError) as info:
            validate_config(train_config(f"trainer.accelerator={value}"))
        assert str(info.value).startswith(f"trainer.accelerator={value}, but torch sees no GPU")
        assert "\n" not in str(info.value)
    validate_config(train_config("trainer.accelerator=cpu", "callbacks.early_stopping.patience=0"))
