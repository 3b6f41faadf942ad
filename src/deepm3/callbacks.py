"""Callbacks that make runs reproducible and resumable, and stop bad ones loudly."""

from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from deepm3.errors import DeepM3Error


class NonFiniteLossError(DeepM3Error, FloatingPointError):
    """Training produced a NaN/Inf loss."""


class StepSeeder(Callback):
    """Reseeds torch's RNG from (seed, global step) before every training batch.

    Dropout, sampled negatives and masks of step ``k`` then depend only on ``seed`` and ``k``,
    so a run resumed from a checkpoint continues exactly as the uninterrupted run would have
    (together with ``EpochShuffleSampler`` for the data order). Hooked per batch rather than per
    epoch because Lightning skips ``on_train_epoch_start`` when it restarts on an epoch end.
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        torch.manual_seed(epoch_seed(self.seed, trainer.global_step))


class FiniteLossGuard(Callback):
    """Stops training at the first non-finite loss, naming the epoch and step.

    The checkpoint callbacks have not saved anything from the bad epoch, so the last good
    checkpoint on disk is the one a restart would resume from.
    """

    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule, loss: torch.Tensor) -> None:
        # before backward, so the bad step never reaches the weights or the optimizer state
        if not torch.isfinite(loss).all():
            raise NonFiniteLossError(
                f"non-finite training loss ({loss.item()}) at epoch {trainer.current_epoch},"
                f" step {trainer.global_step}; the last good checkpoint is"
                f" {_last_checkpoint(trainer) or 'none yet'}; lower optim.lr or enable gradient clipping"
            )


def _last_checkpoint(trainer: L.Trainer) -> str | None:
    callback = trainer.checkpoint_callback
    return getattr(callback, "last_model_path", None) or getattr(callback, "best_model_path", None) or None


def epoch_seed(seed: int, epoch: int) -> int:
    """A distinct, reproducible seed for each (run seed, epoch)."""
    return (int(seed) * 1_000_003 + int(epoch)) % (2**63 - 1)
