"""Interactions table -> filtered, stably time-sorted, re-indexed user sequences.

The rules are docs/protocol.md, "Data and split".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from deepm3.data.processed import ProcessedData
from deepm3.errors import DataError

MIN_EVENTS = 3  # leave-one-out needs a training event, a validation target and a test target


@dataclass(frozen=True)
class PreprocessConfig:
    """Every choice that changes the processed sequences (and therefore the cache key)."""

    user_core: int = 5
    item_core: int = 5
    min_rating: float | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def k_core(df: pd.DataFrame, user_core: int, item_core: int) -> tuple[pd.DataFrame, int]:
    """Drop users/items with too few interactions, repeated until nothing changes.

    Returns the filtered table (row order kept) and the number of passes it took.
    """
    passes = 0
    while True:
        passes += 1
        keep = np.ones(len(df), dtype=bool)
        if user_core > 1:
            keep &= df.groupby("user")["user"].transform("size").to_numpy() >= user_core
        if item_core > 1:
            keep &= df.groupby("item")["item"].transform("size").to_numpy() >= item_core
        if keep.all():
            return df, passes
        df = df[keep]


def choose_users(user_ids: np.ndarray, max_users: int | None, seed: int) -> np.ndarray:
    """Mask over distinct ``user_ids`` that keeps a seeded random sample of ``max_users``.

    Large datasets are subsampled by user *before* k-core filtering (the k-core then runs to
    a fixpoint on the sample). The draw depends only on the set of ids and the seed -- ids are
    ranked by value first -- so a reordered copy of a file yields the same users. ``None`` or
    a number >= the user count keeps everyone.
    """
    keep = np.ones(len(user_ids), dtype=bool)
    if max_users is None or max_users >= len(user_ids):
        return keep
    order = np.argsort(np.asarray(user_ids).astype(str), kind="stable")
    chosen = np.random.default_rng(seed).choice(len(user_ids), size=max_users, replace=False)
    keep[:] = False
    keep[order[chosen]] = True
    return keep


def build_sequences(df: pd.DataFrame, config: PreprocessConfig, source: str = "dataset") -> ProcessedData:
    """Turn a validated interactions table into per-user sequences (docs/protocol.md, "Data and split").

    Ties in time keep file order (a stable sort on the row position, never on item id).
    Items are numbered 1..N in order of raw id (0 is padding); users with fewer than
    ``MIN_EVENTS`` events after filtering are dropped and counted.
    """
    stats: dict = {"raw_interactions": int(len(df))}
    df = df.reset_index(drop=True)
    df = df.assign(_row=np.arange(len(df), dtype=np.int64))
    if config.min_rating is not None:
        if "rating" not in df.columns:
            raise DataError(f"{source}: min_rating={config.min_rating} set but the data has no 'rating' column")
        df = df[df["rating"] >= config.min_rating]
    df, passes = k_core(df, config.user_core, config.item_core)
    stats["k_core_passes"] = passes
    counts = df.groupby("user")["user"].transform("size").to_numpy()
    short_users = df.loc[counts < MIN_EVENTS, "user"].nunique()
    df = df[counts >= MIN_EVENTS]
    stats["users_dropped_short"] = int(short_users)
    if len(df) == 0:
        raise DataError(
            f"{source}: no user has >= {MIN_EVENTS} events after filtering"
            f" (user_core={config.user_core}, item_core={config.item_core}, min_rating={config.min_rating});"
            " lower the filters or use a larger dataset"
        )
    item_ids = np.sort(df["item"].unique())
    item_index = pd.Series(np.arange(1, len(item_ids) + 1, dtype=np.int64), index=item_ids)
    df = df.sort_values(["user", "timestamp", "_row"], kind="stable")
    user_ids, starts = np.unique(df["user"].to_numpy(), return_index=True)
    offsets = np.append(starts, len(df)).astype(np.int64)
    items = item_index.loc[df["item"].to_numpy()].to_numpy(dtype=np.int64)
    times = df["timestamp"].to_numpy(dtype=np.int64)
    stats.update(
        users=int(len(user_ids)),
        items=int(len(item_ids)),
        interactions=int(len(df)),
        density=float(len(df) / (len(user_ids) * len(item_ids))),
    )
    return ProcessedData(
        user_ids=user_ids.astype(str),
        item_ids=item_ids.astype(str),
        offsets=offsets,
        items=items,
        times=times,
        stats=stats,
    )
