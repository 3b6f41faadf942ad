"""One LightningDataModule for every dataset: a source + the protocol, cached on disk."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from deepm3.data.cache import load_or_build
from deepm3.data.negatives import load_or_sample_negatives
from deepm3.data.preprocess import PreprocessConfig
from deepm3.data.processed import ProcessedData
from deepm3.data.samples import TRAIN_WINDOWS, SampleArrays, eval_samples, train_samples, training_gap_cv
from deepm3.data.sources.base import InteractionSource
from deepm3.errors import ConfigError
from deepm3.metrics import EVAL_MODES
from deepm3.seeding import epoch_seed

log = logging.getLogger(__name__)


class _IndexDataset(Dataset):
    """Yields sample indices; the collate function slices the arrays for a whole batch at once."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> int:
        return index


class EpochShuffleSampler(Sampler[int]):
    """A permutation drawn from (seed, epoch), so epoch ``e`` sees the same data order whether
    or not the run was resumed.

    Under a Trainer the epoch is derived from the global step when the iterator is created
    (``epoch_fn``): on a restart Lightning builds the first iterator before it calls
    ``set_epoch``, while the restored global step is already right.
    """

    def __init__(self, size: int, seed: int, epoch_fn: Callable[[], int | None] | None = None) -> None:
        self.size = size
        self.seed = seed
        self.epoch = 0
        self.epoch_fn = epoch_fn

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[int]:
        epoch = self.epoch_fn() if self.epoch_fn is not None else None
        epoch = self.epoch if epoch is None else epoch
        generator = torch.Generator().manual_seed(epoch_seed(self.seed, epoch))
        return iter(torch.randperm(self.size, generator=generator).tolist())


class BatchCollator:
    """Turns a list of sample indices into a dict of tensors (vectorised, no per-sample work)."""

    def __init__(self, arrays: SampleArrays) -> None:
        self.arrays = arrays

    def __call__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        idx = np.asarray(indices, dtype=np.int64)
        a = self.arrays
        batch = {
            "items": torch.from_numpy(a.items[idx]),
            "times": torch.from_numpy(a.times[idx]),
            "next_times": torch.from_numpy(a.next_times[idx]),
            "targets": torch.from_numpy(a.targets[idx]),
            "users": torch.from_numpy(a.users[idx]),
            "samples": torch.from_numpy(idx),  # the row in this split's arrays (several per user under a split by time)
        }
        if a.history_offsets is not None:
            starts, ends = a.history_offsets[idx], a.history_offsets[idx + 1]
            lengths = ends - starts
            rows = np.repeat(np.arange(len(idx)), lengths)
            cols = (
                a.history_items[np.concatenate([np.arange(s, e) for s, e in zip(starts, ends)])]
                if len(idx)
                else np.zeros(0, np.int64)
            )
            batch["history_rows"] = torch.from_numpy(rows.astype(np.int64))
            batch["history_items"] = torch.from_numpy(np.asarray(cols, dtype=np.int64))
        if a.negatives is not None:
            batch["negatives"] = torch.from_numpy(a.negatives[idx])
        return batch


class SequenceDataModule(L.LightningDataModule):
    """Owns a dataset: preprocessing (cached), the split (leave-one-out, or by time: ``split``) and the loaders."""

    def __init__(
        self,
        source: InteractionSource,
        cache_dir: str | Path,
        max_len: int = 50,
        user_core: int = 5,
        item_core: int = 5,
        min_rating: float | None = None,
        split: str = "loo",
        val_share: float = 0.15,
        test_share: float = 0.15,
        train_windows: str = "all",
        train_stride: int = 1,
        batch_size: int = 128,
        eval_batch_size: int = 256,
        num_workers: int = 0,
        name: str | None = None,
        seed: int = 0,
        eval_mode: str = "full",
        negatives: int = 100,
        negatives_seed: int = 0,
        facts: Mapping[str, Any] | None = None,  # the claims page's facts about the data (unused here)
    ) -> None:
        super().__init__()
        self.source = source
        self.cache_dir = Path(cache_dir).expanduser()
        self.max_len = max_len
        self.preprocess = PreprocessConfig(
            user_core=user_core,
            item_core=item_core,
            min_rating=min_rating,
            split=split,
            val_share=val_share,
            test_share=test_share,
        )
        if train_windows not in TRAIN_WINDOWS:
            raise ConfigError(f"dataset.train_windows={train_windows!r}; expected one of {list(TRAIN_WINDOWS)}")
        if train_windows == "sliding" and not (isinstance(train_stride, int) and 1 <= train_stride <= max_len):
            raise ConfigError(f"dataset.train_stride={train_stride!r}; expected an integer in [1, max_len={max_len}]")
        self.train_windows = train_windows
        self.train_stride = train_stride
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.num_workers = num_workers
        self.name = name or source.name
        self.seed = seed
        if eval_mode not in EVAL_MODES:
            raise ConfigError(f"eval.mode={eval_mode!r}; expected one of {list(EVAL_MODES)}")
        self.eval_mode = eval_mode  # sampled: val/test also carry `negatives` (docs/protocol.md, "Sampled mode")
        self.negatives = negatives
        self.negatives_seed = negatives_seed
        self.data: ProcessedData | None = None
        self.data_dir: Path | None = None
        self.splits: dict[str, SampleArrays] = {}

    def prepare_data(self) -> None:
        load_or_build(self.source, self.preprocess, self.cache_dir)

    def setup(self, stage: str | None = None) -> None:
        if self.data is None:
            self.data, self.data_dir = load_or_build(self.source, self.preprocess, self.cache_dir)
            self.splits = {
                "train": train_samples(self.data, self.max_len, self.train_windows, self.train_stride),
                "val": eval_samples(self.data, "val", self.max_len),
                "test": eval_samples(self.data, "test", self.max_len),
            }
            log.info("dataset %s: %s", self.name, self.data.stats)
            for split in ("val", "test"):
                if self.splits[split].dropped:
                    log.info("%s targets left out: %s", split, self.splits[split].dropped)
            if self.eval_mode == "sampled":
                self._attach_negatives()

    def _attach_negatives(self) -> None:
        """Give val/test samples their user's stored negatives (one draw per dataset and seed)."""
        assert self.data is not None and self.data_dir is not None
        negatives = load_or_sample_negatives(self.data, self.data_dir, self.negatives, self.negatives_seed, self.name)
        for split in ("val", "test"):
            self.splits[split].negatives = negatives[self.splits[split].users]

    @property
    def num_items(self) -> int:
        self.setup()
        assert self.data is not None
        return self.data.num_items

    def gap_cv(self) -> np.ndarray:
        self.setup()
        assert self.data is not None
        return training_gap_cv(self.data)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        self.setup()
        arrays = self.splits[split]
        return DataLoader(
            _IndexDataset(len(arrays)),
            batch_size=self.batch_size if split == "train" else self.eval_batch_size,
            sampler=EpochShuffleSampler(len(arrays), self.seed, self._trainer_epoch) if shuffle else None,
            collate_fn=BatchCollator(arrays),
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def _trainer_epoch(self) -> int | None:
        """The training epoch implied by the trainer's global step (None without a trainer)."""
        trainer = self.trainer
        if trainer is None:
            return None
        batches = math.ceil(len(self.splits["train"]) / self.batch_size)
        limit = trainer.limit_train_batches
        if limit is not None:
            batches = min(batches, int(limit)) if isinstance(limit, int) else max(1, int(batches * float(limit)))
        steps = max(1, math.ceil(batches / trainer.accumulate_grad_batches))
        return trainer.global_step // steps

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def describe(self) -> dict[str, Any]:
        self.setup()
        assert self.data is not None
        out = {
            "name": self.name,
            "data_dir": str(self.data_dir),
            **self.data.stats,
            "train_samples": len(self.splits["train"]),
        }
        if self.data.by_time:
            out["split"] = self.preprocess.split
            for split in ("val", "test"):
                out[f"{split}_targets"] = len(self.splits[split])
                out[f"{split}_targets_left_out"] = self.splits[split].dropped
        return out
