"""Sampled-evaluation negatives (docs/protocol.md, "Sampled mode"): drawn once, stored with the processed data.

Each user gets ``count`` distinct items drawn uniformly from the items they never
interacted with (in any split). The draw depends only on the processed data and
``seed``, and is saved as ``negatives-<count>-seed<seed>.npy`` in the processed-data
folder, so every model and every run ranks against the same candidates.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from deepm3.data.processed import ProcessedData
from deepm3.errors import ConfigError
from deepm3.io import write_atomic

log = logging.getLogger(__name__)


def negatives_path(folder: Path, count: int, seed: int) -> Path:
    return Path(folder) / f"negatives-{count}-seed{seed}.npy"


def sample_negatives(data: ProcessedData, count: int, seed: int, dataset: str = "dataset") -> np.ndarray:
    """``[num_users, count]`` int64 item indices, none in the user's interactions.

    Rejection sampling in draw order gives a uniform draw without replacement from each
    user's unseen items without building the complement (cheap at 100k+ items).
    """
    if count < 1:
        raise ConfigError(f"eval.negatives={count}; expected a positive number of negatives")
    histories = [np.unique(data.items[data.offsets[u] : data.offsets[u + 1]]) for u in range(data.num_users)]
    unseen = np.array([data.num_items - len(h) for h in histories], dtype=np.int64)
    if len(unseen) and unseen.min() < count:
        user = int(unseen.argmin())
        raise ConfigError(
            f"eval.negatives={count}: dataset {dataset} has {data.num_items} items and user"
            f" {data.user_ids[user]!r} interacted with {len(histories[user])} of them, leaving {unseen[user]}"
            f" to sample from; lower eval.negatives or use eval.mode=full"
        )
    rng = np.random.default_rng(seed)
    out = np.empty((data.num_users, count), dtype=np.int64)
    for user, seen in enumerate(histories):
        chosen = np.empty(0, dtype=np.int64)
        while len(chosen) < count:
            missing = count - len(chosen)
            acceptance = (unseen[user] - len(chosen)) / data.num_items
            draws = rng.integers(1, data.num_items + 1, size=int(missing / acceptance * 1.2) + 8)
            draws = draws[~np.isin(draws, seen) & ~np.isin(draws, chosen)]
            _, first = np.unique(draws, return_index=True)
            chosen = np.concatenate([chosen, draws[np.sort(first)][:missing]])
        out[user] = chosen
    return out


def load_or_sample_negatives(
    data: ProcessedData, folder: Path, count: int, seed: int, dataset: str = "dataset"
) -> np.ndarray:
    """The stored negatives for (processed data, count, seed), drawing and saving them on a miss."""
    path = negatives_path(folder, count, seed)
    if path.is_file():
        stored = np.load(path, allow_pickle=False)
        if stored.shape == (data.num_users, count):
            return stored
        log.warning("%s has shape %s, expected %s; drawing again", path, stored.shape, (data.num_users, count))
    negatives = sample_negatives(data, count, seed, dataset)

    def save(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            np.save(handle, negatives)

    write_atomic(path, save)
    log.info("sampled %d negatives per user (seed %d) -> %s", count, seed, path)
    return negatives
