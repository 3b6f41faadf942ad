"""Processed sequences in CSR form, saved with the raw-id mappings so ids can be served back."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from deepm3.io import write_atomic, write_json

ARRAYS_FILE = "sequences.npz"
ITEM_MAP_FILE = "item_map.csv"
USER_MAP_FILE = "user_map.csv"
STATS_FILE = "stats.json"
DATA_STAMP_KEY = (
    "deepm3_data"  # a checkpoint's record of the data it was trained on (deepm3.run.callbacks.DatasetStamp)
)


def item_map_digest(item_ids: Iterable[object]) -> str:
    """sha256 of the raw item ids in index order: what a checkpoint's item columns mean."""
    digest = hashlib.sha256()
    for raw in item_ids:
        digest.update(str(raw).encode("utf-8") + b"\n")
    return digest.hexdigest()


@dataclass
class ProcessedData:
    """All users' time-sorted sequences.

    User ``u``'s events are ``items[offsets[u]:offsets[u+1]]`` (item indices 1..N) with
    timestamps ``times[...]`` (int64 unix seconds). ``item_ids[i - 1]`` is item ``i``'s raw id.
    ``split_codes`` (a split by time) gives each event's part, 0 train / 1 validation / 2 test;
    ``None`` is leave-one-out.
    """

    user_ids: np.ndarray
    item_ids: np.ndarray
    offsets: np.ndarray
    items: np.ndarray
    times: np.ndarray
    stats: dict = field(default_factory=dict)
    split_codes: np.ndarray | None = None

    @property
    def by_time(self) -> bool:
        """Whether the data is split by time (several targets per sequence) rather than leave-one-out."""
        return self.split_codes is not None

    def split_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Absolute event indices ``(train_end, val_end)`` per user: ``items[offsets[u]:train_end[u]]`` is
        trained on, ``[train_end[u]:val_end[u]]`` are validation targets, the rest test targets.

        Leave-one-out: the last event is the test target and the one before it the validation target.
        """
        ends = self.offsets[1:]
        if self.split_codes is None:
            return ends - 2, ends - 1
        per_user = np.repeat(np.arange(self.num_users), self.lengths())
        train = np.bincount(per_user, weights=self.split_codes == 0, minlength=self.num_users).astype(np.int64)
        val = np.bincount(per_user, weights=self.split_codes == 1, minlength=self.num_users).astype(np.int64)
        return self.offsets[:-1] + train, self.offsets[:-1] + train + val

    @property
    def num_users(self) -> int:
        return len(self.user_ids)

    @property
    def num_items(self) -> int:
        return len(self.item_ids)

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def save(self, folder: Path) -> None:
        """Write every file atomically; ``stats.json`` last, so its presence marks completeness."""
        folder.mkdir(parents=True, exist_ok=True)

        def save_arrays(tmp: Path) -> None:
            extra = {} if self.split_codes is None else {"split_codes": self.split_codes}
            with open(tmp, "wb") as handle:
                np.savez(handle, offsets=self.offsets, items=self.items, times=self.times, **extra)

        write_atomic(folder / ARRAYS_FILE, save_arrays)
        item_map = pd.DataFrame({"index": np.arange(1, self.num_items + 1), "raw_id": self.item_ids})
        write_atomic(folder / ITEM_MAP_FILE, lambda tmp: item_map.to_csv(tmp, index=False))
        user_map = pd.DataFrame({"index": np.arange(self.num_users), "raw_id": self.user_ids})
        write_atomic(folder / USER_MAP_FILE, lambda tmp: user_map.to_csv(tmp, index=False))
        write_json(folder / STATS_FILE, self.stats)

    @classmethod
    def load(cls, folder: Path) -> "ProcessedData":
        with np.load(folder / ARRAYS_FILE, allow_pickle=False) as arrays:
            offsets, items, times = arrays["offsets"], arrays["items"], arrays["times"]
            codes = arrays["split_codes"] if "split_codes" in arrays.files else None
        item_map = pd.read_csv(folder / ITEM_MAP_FILE, dtype={"raw_id": str}, keep_default_na=False)
        user_map = pd.read_csv(folder / USER_MAP_FILE, dtype={"raw_id": str}, keep_default_na=False)
        stats = json.loads((folder / STATS_FILE).read_text())
        return cls(
            user_ids=user_map["raw_id"].to_numpy(dtype=str),
            item_ids=item_map["raw_id"].to_numpy(dtype=str),
            offsets=offsets,
            items=items,
            times=times,
            stats=stats,
            split_codes=codes,
        )

    @staticmethod
    def is_complete(folder: Path) -> bool:
        return all((folder / name).is_file() for name in (ARRAYS_FILE, ITEM_MAP_FILE, USER_MAP_FILE, STATS_FILE))
