"""Leave-one-out samples (docs/protocol.md, "Data and split") as left-padded arrays.

Every sample has the same four ``[n, max_len]`` int64 arrays, so one model interface serves
training and evaluation:

- ``items``: input events, 0 = padding (padding sits on the left; the last column is the
  most recent event);
- ``times``: their unix timestamps (0 on padding);
- ``next_times``: the moment each position's prediction is asked for -- the next event's
  timestamp, and for the last input of an evaluation sample the target's timestamp (the
  query time). ``next_times - times`` is the gap a model may integrate over;
- ``targets``: the item to predict at each position (0 = no target).

Evaluation samples also carry the user index and the user's full history (every earlier
event, not just the last ``max_len``) for ``exclude_history``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from deepm3.data.processed import ProcessedData

SPLITS = ("train", "val", "test")


@dataclass
class SampleArrays:
    items: np.ndarray
    times: np.ndarray
    next_times: np.ndarray
    targets: np.ndarray
    users: np.ndarray
    history_offsets: np.ndarray | None = None  # CSR over history_items, one row per sample
    history_items: np.ndarray | None = None
    negatives: np.ndarray | None = None  # [n, k] sampled-evaluation candidates (eval.mode=sampled)
    positions: np.ndarray | None = None  # split by time: each target's index in its sequence
    dropped: dict | None = None  # split by time: targets left out, by reason (event_samples)
    gap_cv: np.ndarray | None = None  # split by time: CV of the gaps before each target (NaN when undefined)

    def history_sizes(self) -> np.ndarray:
        """Events before each sample's target (the per-user rows' ``history_length``)."""
        if self.positions is not None:  # split by time: a target's position = the events before it
            return self.positions
        assert self.history_offsets is not None
        return np.diff(self.history_offsets)

    def __len__(self) -> int:
        return len(self.items)


def _pad_left(rows: list[np.ndarray], max_len: int) -> np.ndarray:
    out = np.zeros((len(rows), max_len), dtype=np.int64)
    for r, row in enumerate(rows):
        if len(row):
            out[r, max_len - len(row) :] = row
    return out


TRAIN_WINDOWS = ("all", "last", "sliding")


def train_samples(data: ProcessedData, max_len: int, windows: str = "all", stride: int = 1) -> SampleArrays:
    """Next-item samples over each user's training prefix (all events but the last two; under a
    split by time, the events before the validation cut).

    ``windows="last"`` keeps the most recent ``max_len`` transitions (SASRec's reference
    code); ``"all"`` tiles the whole prefix with consecutive windows ending at its end, so
    long histories are not thrown away, but a target early in a tile sees only the tile's
    few earlier events. ``"sliding"`` moves the window end back ``stride`` events at a time
    and keeps targets only on its last ``stride`` positions: every transition is still
    trained exactly once, now with at least ``max_len - stride`` events of context (when the
    user has them). ``stride=1`` is RecBole's every-prefix augmentation; it costs
    ``max_len / stride`` times the windows of ``"all"``.
    """
    if windows not in TRAIN_WINDOWS:
        raise ValueError(f"train windows must be one of {list(TRAIN_WINDOWS)}, got {windows!r}")
    if windows == "sliding" and not 1 <= stride <= max_len:
        raise ValueError(f"train stride must be in [1, max_len={max_len}], got {stride!r}")
    step = stride if windows == "sliding" else max_len
    cols: dict[str, list[np.ndarray]] = {k: [] for k in ("items", "times", "next_times", "targets")}
    users: list[int] = []
    train_end, _ = data.split_bounds()
    for user in range(data.num_users):
        start, end = data.offsets[user], train_end[user]
        seq, ts = data.items[start:end], data.times[start:end]
        stop = len(seq) - 1  # transitions seq[i] -> seq[i + 1] for i < stop
        while stop > 0:
            first = max(0, stop - max_len)
            targets = seq[first + 1 : stop + 1].copy()
            targets[: max(0, stop - step - first)] = 0  # trained by a later (earlier-ending) window
            cols["items"].append(seq[first:stop])
            cols["times"].append(ts[first:stop])
            cols["next_times"].append(ts[first + 1 : stop + 1])
            cols["targets"].append(targets)
            users.append(user)
            if windows == "last":
                break
            stop -= step
    return SampleArrays(**{k: _pad_left(v, max_len) for k, v in cols.items()}, users=np.asarray(users, dtype=np.int64))


def eval_samples(data: ProcessedData, split: str, max_len: int) -> SampleArrays:
    """One sample per user: history -> validation target (second to last event) or test target (last).

    Under a split by time: one sample per target event instead (:func:`event_samples`).
    """
    if split not in ("val", "test"):
        raise ValueError(f"split must be 'val' or 'test', got {split!r}")
    if data.by_time:
        return event_samples(data, split, max_len)
    shift = 2 if split == "val" else 1
    targets, hist, hist_times, query_times = [], [], [], []
    for user in range(data.num_users):
        start, end = data.offsets[user], data.offsets[user + 1] - shift  # target at index `end`
        history = data.items[start:end]
        hist.append(history)
        hist_times.append(data.times[start:end])
        query_times.append(data.times[end])
        target_row = np.zeros(len(history[-max_len:]), dtype=np.int64)
        target_row[-1] = data.items[end]
        targets.append(target_row)
    items, times, next_times = query_windows(hist, hist_times, query_times, max_len)
    lengths = np.array([len(h) for h in hist], dtype=np.int64)
    return SampleArrays(
        items=items,
        times=times,
        next_times=next_times,
        targets=_pad_left(targets, max_len),
        users=np.arange(data.num_users, dtype=np.int64),
        history_offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        history_items=np.concatenate(hist).astype(np.int64),
    )


def event_samples(data: ProcessedData, split: str, max_len: int) -> SampleArrays:
    """One sample per target event of a split by time (docs/protocol.md, "Split by time").

    Every event of the part is a target, asked with everything its sequence did before it
    (earlier validation and test events included, as inputs). A sequence's first event has no
    history and an item never seen in training has no learned representation: both are left out
    as targets and counted in ``dropped``. ``history_items`` holds each sample's *distinct*
    earlier items (what history exclusion and the repeat flag need; a long sequence's full
    history repeated for each of its targets would not fit in memory), ``positions`` the target's
    index in its sequence (= the number of earlier events) and ``gap_cv`` the irregularity of the
    gaps before it (a test session has no training gaps to measure).
    """
    train_end, val_end = data.split_bounds()
    lo, hi = (train_end, val_end) if split == "val" else (val_end, data.offsets[1:])
    trained = training_item_counts(data) > 0
    users, positions, targets, hist, hist_times, query_times, distinct, cvs = [], [], [], [], [], [], [], []
    dropped = {"no_history": 0, "unseen_item": 0}
    for user in range(data.num_users):
        start = data.offsets[user]
        if lo[user] >= hi[user]:
            continue
        seen: set[int] = set(data.items[start : lo[user]].tolist())
        for index in range(lo[user], hi[user]):
            item = int(data.items[index])
            if index == start:
                dropped["no_history"] += 1
            elif not trained[item]:
                dropped["unseen_item"] += 1
            else:
                users.append(user)
                positions.append(index - start)
                targets.append(item)
                hist.append(data.items[max(start, index - max_len) : index])
                hist_times.append(data.times[max(start, index - max_len) : index])
                query_times.append(data.times[index])
                distinct.append(np.fromiter(sorted(seen), dtype=np.int64, count=len(seen)))
                cvs.append(gap_cv(data.times[start:index]))
            seen.add(item)
    items, times, next_times = query_windows(hist, hist_times, query_times, max_len)
    target_rows = np.zeros_like(items)
    target_rows[:, -1] = np.asarray(targets, dtype=np.int64)
    sizes = np.array([len(d) for d in distinct], dtype=np.int64)
    return SampleArrays(
        items=items,
        times=times,
        next_times=next_times,
        targets=target_rows,
        users=np.asarray(users, dtype=np.int64),
        history_offsets=np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64),
        history_items=np.concatenate(distinct).astype(np.int64) if distinct else np.zeros(0, dtype=np.int64),
        positions=np.asarray(positions, dtype=np.int64),
        dropped=dropped,
        gap_cv=np.asarray(cvs, dtype=np.float64),
    )


def query_windows(
    histories: Sequence[np.ndarray],
    history_times: Sequence[np.ndarray],
    query_times: Sequence[int],
    max_len: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Left-padded ``[n, max_len]`` items, times and next_times asking for the event after each history.

    Each window holds the most recent ``max_len`` events; ``next_times`` is the following
    event's time and, for the last position, the query time. Evaluation and serving both
    build their inputs here, so a served prediction sees exactly what an evaluated one saw.
    """
    items, times, next_times = [], [], []
    for history, stamps, query in zip(histories, history_times, query_times, strict=True):
        recent = np.asarray(stamps, dtype=np.int64)[-max_len:]
        items.append(np.asarray(history, dtype=np.int64)[-max_len:])
        times.append(recent)
        next_times.append(np.append(recent[1:], np.int64(query)) if len(recent) else recent)
    return _pad_left(items, max_len), _pad_left(times, max_len), _pad_left(next_times, max_len)


def training_item_counts(data: ProcessedData) -> np.ndarray:
    """``[N + 1]`` events per item in the training prefixes (index 0, padding, is 0).

    What a most-popular ranking may know without touching validation or test events.
    """
    train_end, _ = data.split_bounds()
    rows = [data.items[data.offsets[u] : train_end[u]] for u in range(data.num_users)]
    events = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
    return np.bincount(events, minlength=data.num_items + 1).astype(np.int64)


def gap_cv(times: np.ndarray) -> float:
    """Coefficient of variation (std/mean) of the gaps between ``times``; NaN when undefined:
    fewer than two gaps, or a zero mean gap (all ties)."""
    gaps = np.diff(times).astype(np.float64)
    if len(gaps) >= 2 and gaps.mean() > 0:
        return float(gaps.std() / gaps.mean())
    return float("nan")


def training_gap_cv(data: ProcessedData) -> np.ndarray:
    """Per-user coefficient of variation of training gaps (:func:`gap_cv`); NaN when undefined."""
    train_end, _ = data.split_bounds()
    return np.array([gap_cv(data.times[data.offsets[u] : train_end[u]]) for u in range(data.num_users)])
