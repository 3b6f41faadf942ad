"""Tiny end-to-end runs of any ``model=`` preset through the real Hydra config.

The synthetic ``TinySource`` (30 users, ``items`` items, 8-14 events each) replaces ML-100k;
one epoch of two batches of 16 keeps a run to a few seconds on one CPU thread. Runs train on the
CPU unless ``DEEPM3_TEST_ACCELERATOR`` says otherwise (``tests/helpers/accelerator.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from deepm3.train import run
from tests.helpers.accelerator import check_checkpoint_device, trainer_override
from tests.helpers.config import compose

FAST_TRAINER = [
    "trainer.max_epochs=1",
    "++trainer.limit_train_batches=2",
    trainer_override(),
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
]


def tiny_dataset(data_dir: Path, items: int = 20, max_len: int = 8) -> list[str]:
    """Overrides selecting ``TinySource`` with ``items`` items and windows of ``max_len``."""
    return [
        "dataset.source._target_=tests.helpers.spine_fixtures.TinySource",
        "~dataset.source.download",
        "~dataset.source.use_recbole",
        f"dataset.source.raw_dir={data_dir / 'raw' / 'tiny'}",
        f"+dataset.source.items={items}",
        "dataset.name=tiny",
        "dataset.batch_size=16",
        f"dataset.max_len={max_len}",
        f"paths.data_dir={data_dir}",
    ]


def compose_train(overrides: list[str]) -> DictConfig:
    """The ``train`` config with ``overrides``, as ``python -m deepm3.train`` composes it."""
    return compose("train", overrides)


def tiny_config(out: Path, data_dir: Path, *overrides: str, items: int = 20) -> DictConfig:
    return compose_train([*FAST_TRAINER, *tiny_dataset(data_dir, items), f"paths.output_dir={out}", *overrides])


def tiny_run(out: Path, data_dir: Path, *overrides: str, items: int = 20) -> dict[str, Any]:
    """Fit one epoch, test the best checkpoint, return ``metrics.json``'s content."""
    metrics = run(tiny_config(out, data_dir, *overrides, items=items), output_dir=out)
    check_checkpoint_device(metrics["best_checkpoint"])  # it trained where it was asked to
    return metrics
