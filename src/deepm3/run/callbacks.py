"""Callbacks that make runs reproducible and resumable, stamp checkpoints with their data, and stop bad runs loudly."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from deepm3.data.processed import DATA_STAMP_KEY, item_map_digest
from deepm3.errors import DeepM3Error
from deepm3.run.checkpoint import Checkpoint
from deepm3.seeding import epoch_seed


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


def dataset_stamp(datamodule: object) -> dict | None:
    """What a checkpoint's item columns mean: dataset name, processed-data cache key, item count and
    the digest of the item map (``None`` for a datamodule without processed data)."""
    data = getattr(datamodule, "data", None)
    if data is None or not hasattr(data, "item_ids"):
        return None
    data_dir = getattr(datamodule, "data_dir", None)
    return {
        "dataset": str(getattr(datamodule, "name", "")),
        "cache_key": Path(data_dir).name if data_dir else None,
        "num_items": int(len(data.item_ids)),
        "item_map_sha256": item_map_digest(data.item_ids),
    }


class DatasetStamp(Callback):
    """Records in every checkpoint which data it was trained on, and vets a checkpoint to resume from.

    Each saved checkpoint gets ``checkpoint["deepm3_data"]`` (:func:`dataset_stamp`); serving
    refuses a checkpoint whose item map is not its run dir's. With ``resume`` (the path given to
    ``trainer.fit``), the checkpoint is read weights-only before Lightning touches it -- at
    construction when ``module`` and ``datamodule`` are given, else at ``setup`` -- and a
    truncated file, a file that is not a deepm3 training checkpoint, one of another network
    class (compared by name: nothing it names is imported), of another dataset or of other
    sizes is a one-line :class:`DeepM3Error` instead of a traceback mid-restore
    (:meth:`deepm3.run.checkpoint.Checkpoint.check_resumable`).
    """

    def __init__(
        self, resume: str | None = None, module: L.LightningModule | None = None, datamodule: object | None = None
    ) -> None:
        self.resume = resume
        self.stamp: dict | None = None
        self.vetted = False
        if resume and module is not None and datamodule is not None:  # now, before a Trainer prints anything
            Checkpoint.read_for_resume(resume).check_resumable(module, dataset_stamp(datamodule))
            self.vetted = True

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.stamp = dataset_stamp(trainer.datamodule)
        if stage == "fit" and self.resume and not self.vetted:
            Checkpoint.read_for_resume(self.resume).check_resumable(pl_module, self.stamp)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        if self.stamp is not None:
            checkpoint[DATA_STAMP_KEY] = dict(self.stamp)
