"""Small, deterministic data sources and tables for the spine's tests.

``CsvSource`` reads an interactions CSV (so cache tests can touch a real raw file);
``TinySource`` writes a synthetic one on first use and is what the end-to-end tests select
with ``dataset.source._target_=tests.helpers.spine_fixtures.TinySource``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from deepm3.data.processed import ProcessedData
from deepm3.data.schema import validate_interactions
from deepm3.data.sources.base import InteractionSource


class CsvSource(InteractionSource):
    """``user,item,timestamp[,rating]`` with a header; counts its reads so tests can see cache hits."""

    name = "csv"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.reads = 0

    def files(self) -> list[Path]:
        return [self.path]

    def read(self) -> pd.DataFrame:
        self.reads += 1
        table = pd.read_csv(self.files()[0], dtype={"user": str, "item": str})
        return validate_interactions(table, str(self.path))


class TinySource(CsvSource):
    """A synthetic dataset small enough to train on in a second.

    Every user has ``min_events..max_events`` events over ``items`` items, with tied
    timestamps (zero gaps) and gaps of up to several years, so time handling is exercised.
    It survives the default 5-core filter at the default sizes.
    """

    name = "tiny"

    def __init__(
        self,
        raw_dir: str | Path,
        users: int = 30,
        items: int = 20,
        min_events: int = 8,
        max_events: int = 14,
        seed: int = 0,
        repeats: bool = False,
    ) -> None:
        name = f"tiny-{users}-{items}-{min_events}-{max_events}-{seed}{'-repeats' if repeats else ''}.csv"
        super().__init__(Path(raw_dir).expanduser() / name)
        self.options = {
            "users": users,
            "items": items,
            "min_events": min_events,
            "max_events": max_events,
            "seed": seed,
            "repeats": repeats,
        }

    def files(self) -> list[Path]:
        if not self.path.is_file():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            synthetic_table(**self.options).to_csv(self.path, index=False)
        return [self.path]

    def params(self) -> dict[str, Any]:
        return dict(self.options)


def synthetic_table(
    users: int, items: int, min_events: int, max_events: int, seed: int, repeats: bool = False
) -> pd.DataFrame:
    """Interactions with a mix of zero, minute-scale and year-scale gaps; rows in time order per user.

    ``repeats``: a user's items are drawn with replacement, so targets can repeat history items.
    """
    rng = np.random.default_rng(seed)
    gap_choices = np.array([0, 60, 3_600, 86_400, 30 * 86_400, 3 * 365 * 86_400])
    rows = []
    for u in range(users):
        n = int(rng.integers(min_events, max_events + 1))
        t = 1_000_000_000 + int(rng.integers(0, 10_000_000))
        for item in rng.choice(items, size=n, replace=repeats or n > items):
            rows.append((f"u{u}", f"i{item}", t, float(rng.integers(1, 6))))
            t += int(rng.choice(gap_choices))
    return pd.DataFrame(rows, columns=["user", "item", "timestamp", "rating"])


def table(rows: list[tuple], columns: tuple[str, ...] = ("user", "item", "timestamp")) -> pd.DataFrame:
    """A validated interactions table from literal rows (file order = list order)."""
    return validate_interactions(pd.DataFrame(rows, columns=list(columns)), "test table")


def processed(sequences: dict[str, list[tuple[int, int]]]) -> ProcessedData:
    """ProcessedData from ``{user: [(item_index, timestamp), ...]}`` already in time order."""
    user_ids = np.array(sorted(sequences), dtype=str)
    events = [sequences[u] for u in user_ids]
    lengths = [len(e) for e in events]
    flat = [pair for e in events for pair in e]
    num_items = max(item for item, _ in flat)
    return ProcessedData(
        user_ids=user_ids,
        item_ids=np.array([f"raw{i}" for i in range(1, num_items + 1)], dtype=str),
        offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        items=np.array([item for item, _ in flat], dtype=np.int64),
        times=np.array([t for _, t in flat], dtype=np.int64),
    )
