"""Interactions table -> filtered, stably time-sorted, re-indexed user sequences.

The rules are docs/protocol.md, "Data and split" and "Split by time".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from deepm3.data.processed import ProcessedData
from deepm3.errors import ConfigError, DataError

MIN_EVENTS = 3  # leave-one-out needs a training event, a validation target and a test target
MIN_EVENTS_BY_TIME = 2  # a split by time needs one input and one target
# loo: each user's last event is its test target, the one before its validation target.
# time: one cut in time for test and one for validation, over every event of the dataset.
# given: the source marks its test events (a session dataset's test file); validation is cut by time from the rest.
SPLITS = ("loo", "time", "given")
TRAIN, VAL, TEST = 0, 1, 2  # per-event split codes (ProcessedData.split_codes)


@dataclass(frozen=True)
class PreprocessConfig:
    """Every choice that changes the processed sequences (and therefore the cache key)."""

    user_core: int = 5
    item_core: int = 5
    min_rating: float | None = None
    split: str = "loo"
    val_share: float = 0.15  # split=time|given: share of events (by time) after the validation cut...
    test_share: float = 0.15  # ...and after the test cut (split=time only; `given` has its own test events)

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise ConfigError(f"dataset.split={self.split!r}; expected one of {list(SPLITS)}")
        for key in ("val_share", "test_share"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
                raise ConfigError(f"dataset.{key}={value!r}; expected a number strictly between 0 and 1")
        if self.split == "time" and self.val_share + self.test_share >= 1:
            raise ConfigError(
                f"dataset.val_share + dataset.test_share = {self.val_share + self.test_share:g};"
                " expected < 1 (something must be left to train on)"
            )

    @classmethod
    def from_dataset(cls, dataset: Any) -> "PreprocessConfig":
        """The preprocessing a ``dataset`` config (a mapping) asks for; keys it lacks keep their defaults."""
        keys = ("user_core", "item_core", "min_rating", "split", "val_share", "test_share")
        return cls(**{k: dataset[k] for k in keys if k in dataset})

    def as_dict(self) -> dict:
        """The cache key's view: leave-one-out configs keep the keys they had before splits by time existed."""
        out = asdict(self)
        if self.split == "loo":
            for key in ("split", "val_share", "test_share"):
                out.pop(key)
        elif self.split == "given":
            out.pop("test_share")
        return out

    @property
    def min_events(self) -> int:
        return MIN_EVENTS if self.split == "loo" else MIN_EVENTS_BY_TIME


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
    ``config.min_events`` events after filtering are dropped and counted. Under a split by
    time every event also gets its split code (:func:`split_codes`).
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
    min_events = config.min_events
    counts = df.groupby("user")["user"].transform("size").to_numpy()
    short_users = df.loc[counts < min_events, "user"].nunique()
    df = df[counts >= min_events]
    stats["users_dropped_short"] = int(short_users)
    if len(df) == 0:
        raise DataError(
            f"{source}: no user has >= {min_events} events after filtering"
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
    codes = None
    if config.split != "loo":
        test = df["test"].to_numpy(dtype=bool) if "test" in df.columns else None
        codes = split_codes(times, config, test, source)
        steps = np.diff(codes.astype(np.int64))
        steps[offsets[1:-1] - 1] = 0  # from one user's last event to the next user's first
        if (steps < 0).any():
            user = user_ids[np.searchsorted(offsets, int(np.flatnonzero(steps < 0)[0]) + 1, side="right") - 1]
            raise DataError(
                f"{source}: user {user!r} has a training event after one of its test events;"
                " expected the given test events to come last in every sequence"
            )
        stats.update(split_stats(codes, times))
    return ProcessedData(
        user_ids=user_ids.astype(str),
        item_ids=item_ids.astype(str),
        offsets=offsets,
        items=items,
        times=times,
        stats=stats,
        split_codes=codes,
    )


def split_codes(times: np.ndarray, config: PreprocessConfig, test: np.ndarray | None, source: str) -> np.ndarray:
    """Per-event TRAIN / VAL / TEST code of a split by time (docs/protocol.md, "Split by time").

    ``time``: the test cut is the time of the first of the last ``test_share`` of all events, the
    validation cut that of the first of the last ``test_share + val_share``; an event at or after
    a cut belongs to the later part (ties at a cut never straddle it). ``given``: the source's
    ``test`` events are TEST and the validation cut is taken over the other events. Codes never
    decrease along a sequence, so each user's events are a training prefix, then validation,
    then test.
    """
    codes = np.full(len(times), TRAIN, dtype=np.int8)
    if config.split == "time":
        test_cut = _cut(times, config.test_share)
        val_cut = _cut(times, config.test_share + config.val_share)
        codes[times >= val_cut] = VAL
        codes[times >= test_cut] = TEST
        return codes
    if test is None:
        raise DataError(f"{source}: dataset.split=given, but the source marks no test events; use split=time or loo")
    rest = times[~test]
    if not len(rest):
        raise DataError(f"{source}: dataset.split=given, but every event is a test event; expected training events")
    val_cut = _cut(rest, config.val_share)
    codes[times >= val_cut] = VAL
    codes[test] = TEST
    return codes


def _cut(times: np.ndarray, share: float) -> int:
    """The time of the first of the last ``round(share * n)`` events (at least one) in time order."""
    ordered = np.sort(times, kind="stable")
    return int(ordered[len(ordered) - max(1, round(share * len(ordered)))])


def split_stats(codes: np.ndarray, times: np.ndarray) -> dict:
    """Events per part and the cut times, for the dataset table and the run's record."""
    out = {
        f"{name}_events": int((codes == code).sum()) for name, code in (("train", TRAIN), ("val", VAL), ("test", TEST))
    }
    for name, code in (("val", VAL), ("test", TEST)):
        part = times[codes == code]
        out[f"{name}_from"] = int(part.min()) if len(part) else None
    return out
