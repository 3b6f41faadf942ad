"""Where the tests' tiny training runs train: the CPU, unless ``DEEPM3_TEST_ACCELERATOR`` asks for more.

``benchmarks/gpu_check.sh`` sets ``DEEPM3_TEST_ACCELERATOR=gpu`` for its training stage, so the
runs that the tests start through the real config (``tests/helpers/tiny_runs.py``,
``tests/test_train_e2e.py``, ``tests/helpers/serve_fixtures.py``) train on CUDA instead of
silently on the CPU; :func:`check_checkpoint_device` then proves where the weights were.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

ENV = "DEEPM3_TEST_ACCELERATOR"
CHOICES = ("cpu", "gpu", "cuda")


def accelerator() -> str:
    """``cpu`` (default), ``gpu`` or ``cuda``: the Lightning accelerator the tests' runs use."""
    value = os.environ.get(ENV, "cpu").strip().lower() or "cpu"
    if value not in CHOICES:
        raise ValueError(f"{ENV}={value!r}; expected one of {list(CHOICES)}")
    return value


def trainer_override() -> str:
    """The ``trainer.accelerator=...`` override for a tiny run."""
    return f"trainer.accelerator={accelerator()}"


def check_checkpoint_device(checkpoint: str | Path) -> None:
    """Fail unless the checkpoint's weights live where :func:`accelerator` asked them to train.

    A checkpoint keeps each tensor's device, so CUDA weights prove the run trained on the GPU.
    """
    state = torch.load(checkpoint, map_location=None if torch.cuda.is_available() else "cpu", weights_only=True)
    devices = {tensor.device.type for tensor in state["state_dict"].values() if isinstance(tensor, torch.Tensor)}
    expected = "cpu" if accelerator() == "cpu" else "cuda"
    if devices != {expected}:
        raise AssertionError(f"{ENV}={accelerator()}: {checkpoint} holds weights on {sorted(devices)}, not {expected}")
