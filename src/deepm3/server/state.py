"""Each user's stored state: what lets a known user's request skip recomputing their history.

A DeepM3 network (one that has ``initial_state``/``advance``/``readout``) keeps a state vector
per user, advanced once per posted event (flow over the gap since the user's previous event,
then the GRU update). A request then only flows that state to ``at`` and scores: work that
does not grow with the history. While the user's history fits the window (``max_len``
events) this equals the full recompute; beyond it the state also remembers the events the
window drops. Every other network (SASRec, GRU4Rec, ...) has no such state: the store keeps the
user's last ``max_len`` events and a request recomputes the window from them.

Records are immutable and replaced whole under one lock, so a reader never sees half an
update and concurrent requests get the answers sequential ones would. Snapshots are plain
tensors and lists saved atomically and read back with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepm3.errors import DataError
from deepm3.io import write_atomic

log = logging.getLogger(__name__)

SNAPSHOT_FORMAT = "deepm3-serve-state/1"


@dataclass(frozen=True)
class UserRecord:
    """One user's stored events (and DeepM3 state); replaced, never changed in place."""

    count: int  # events stored so far, all time
    last_time: int  # unix seconds of the last stored event
    items: np.ndarray  # item indices of the last max_len events, oldest first
    times: np.ndarray  # their timestamps
    seen: np.ndarray  # sorted unique item indices of every stored event (for exclude_seen)
    h: torch.Tensor | None  # [hidden] state after the last event (stateful networks only)


def is_stateful(net: torch.nn.Module) -> bool:
    """Whether ``net`` offers the event-at-a-time API (DeepM3) that per-user state needs."""
    return all(callable(getattr(net, name, None)) for name in ("initial_state", "advance", "readout"))


class StateStore:
    """Per-user records for one network, behind a lock."""

    def __init__(
        self, net: torch.nn.Module, max_len: int, device: torch.device, model_lock: threading.Lock | None = None
    ) -> None:
        self.net = net
        self.max_len = max_len
        self.device = device
        self.stateful = is_stateful(net)
        self._users: dict[str, UserRecord] = {}
        self._lock = threading.Lock()  # guards _users; writers hold it while they compute
        self._snapshot_lock = threading.Lock()  # one snapshot write at a time
        self._model_lock = model_lock or threading.Lock()  # shared with every other caller of the network

    def __len__(self) -> int:
        return len(self._users)

    def get(self, user: str) -> UserRecord | None:
        with self._lock:
            return self._users.get(user)

    def append(
        self, events: Sequence[tuple[str, np.ndarray, np.ndarray]], labels: Sequence[str]
    ) -> dict[str, UserRecord]:
        """Add ``(user, item indices, timestamps)`` batches (each oldest first); all or nothing.

        A batch may not start before the user's last stored event (nor the previous batch of
        the same user in this call); ``labels`` name each batch in that one-line error.
        Returns the new record of every user touched.
        """
        merged: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = {}
        order: dict[str, list[str]] = {}
        for (user, items, times), label in zip(events, labels, strict=True):
            parts = merged.setdefault(user, ([], []))
            parts[0].append(np.asarray(items, dtype=np.int64))
            parts[1].append(np.asarray(times, dtype=np.int64))
            order.setdefault(user, []).append(label)
        with self._lock, torch.inference_mode():
            new: dict[str, tuple[np.ndarray, np.ndarray]] = {}
            for user, (item_parts, time_parts) in merged.items():
                last = self._users[user].last_time if user in self._users else None
                for label, times in zip(order[user], time_parts):
                    if len(times) and last is not None and times[0] < last:
                        raise DataError(
                            f"{label}.timestamps[0]={int(times[0])} is earlier than the last stored "
                            f"event of user {user!r} ({last}); post events in time order"
                        )
                    last = int(times[-1]) if len(times) else last
                items, times = np.concatenate(item_parts), np.concatenate(time_parts)
                if len(items):
                    new[user] = (items, times)
            if self.stateful and new:
                with self._model_lock:  # taken after _lock, never before: no deadlock
                    states = self._advance(new)
            else:
                states = {}
            updated = {
                user: self._record(self._users.get(user), items, times, states.get(user))
                for user, (items, times) in new.items()
            }
            self._users.update(updated)
            return updated

    def _advance(self, new: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, torch.Tensor]:
        """States after each user's new events, all users stepped together (right-padded with item 0)."""
        users = list(new)
        length = max(len(items) for items, _ in new.values())
        items = np.zeros((len(users), length), dtype=np.int64)
        times = np.zeros((len(users), length), dtype=np.int64)
        for row, user in enumerate(users):
            items[row, : len(new[user][0])], times[row, : len(new[user][1])] = new[user]
        fresh = self.net.initial_state(1)[0]
        h = torch.stack([self._users[u].h if u in self._users else fresh for u in users]).to(self.device)
        previous = torch.tensor(
            [self._users[u].last_time if u in self._users else -1 for u in users], dtype=torch.long, device=self.device
        )  # -1: no event yet (first gap is 0)
        items_t, times_t = torch.from_numpy(items).to(self.device), torch.from_numpy(times).to(self.device)
        for j in range(length):
            item, stamp = items_t[:, j], times_t[:, j]
            gap = torch.where(previous >= 0, stamp - previous, torch.zeros_like(stamp))
            h = self.net.advance(h, item, gap)
            previous = torch.where(item > 0, stamp, previous)
        return {user: h[row].clone() for row, user in enumerate(users)}

    def _record(
        self, old: UserRecord | None, items: np.ndarray, times: np.ndarray, h: torch.Tensor | None
    ) -> UserRecord:
        if old is not None:
            all_items, all_times = np.concatenate([old.items, items]), np.concatenate([old.times, times])
            seen, count = np.union1d(old.seen, items), old.count + len(items)
        else:
            all_items, all_times, seen, count = items, times, np.unique(items), len(items)
        return UserRecord(
            count, int(times[-1]), all_items[-self.max_len :].copy(), all_times[-self.max_len :].copy(), seen, h
        )

    # --- snapshots --------------------------------------------------------------------------

    def save(self, path: Path, fingerprint: Mapping[str, Any]) -> tuple[int, int, float]:
        """Write every record to ``path`` atomically; ``(users, bytes, seconds)``."""
        start = time.perf_counter()
        with self._snapshot_lock:
            with self._lock:
                records = dict(self._users)  # records are immutable: a copy of the dict is a consistent view
            payload = _payload(records, fingerprint, self.stateful)
            write_atomic(path, lambda tmp: torch.save(payload, tmp))
        return len(records), path.stat().st_size, time.perf_counter() - start

    def load(self, path: Path, fingerprint: Mapping[str, Any]) -> str:
        """Replace the records with ``path``'s; a one-line account of what happened, never an error.

        A missing file starts empty. A corrupt one, or one taken with another model, starts
        empty too and is moved aside (``<name>.rejected-<time>``) so the next snapshot does not
        overwrite what an operator may want to inspect.
        """
        if not path.exists():
            return (
                f"no state snapshot at {path}: starting with no stored users (their events must be posted "
                "again; training data and the model are not affected)"
            )
        try:
            records = _records(
                torch.load(path, map_location="cpu", weights_only=True), fingerprint, self.stateful, self.device
            )
        except Exception as exc:  # any unreadable or foreign file: log it, never crash the server
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            aside = path.with_name(f"{path.name}.rejected-{time.strftime('%Y%m%d-%H%M%S')}")
            try:
                path.rename(aside)
                kept = f"moved to {aside.name}"
            except OSError:
                kept = "left in place"
            return (
                f"state snapshot {path} not loaded ({reason}); {kept}; starting with no stored users "
                "(training data and the model are not affected)"
            )
        with self._lock:
            self._users = records
        return f"loaded stored state of {len(records)} users from {path}"


def _payload(records: Mapping[str, UserRecord], fingerprint: Mapping[str, Any], stateful: bool) -> dict[str, Any]:
    """Records as a few flat tensors (ragged arrays as values + offsets): plain data for weights_only."""
    values = list(records.values())

    def ragged(name: str) -> tuple[torch.Tensor, torch.Tensor]:
        arrays = [getattr(r, name) for r in values]
        offsets = np.concatenate([[0], np.cumsum([len(a) for a in arrays])]).astype(np.int64)
        flat = np.concatenate(arrays).astype(np.int64) if arrays else np.zeros(0, dtype=np.int64)
        return torch.from_numpy(flat), torch.from_numpy(offsets)

    (items, window_offsets), (times, _), (seen, seen_offsets) = ragged("items"), ragged("times"), ragged("seen")
    return {
        "format": SNAPSHOT_FORMAT,
        "fingerprint": dict(fingerprint),
        "users": list(records),
        "count": torch.tensor([r.count for r in values], dtype=torch.long),
        "last_time": torch.tensor([r.last_time for r in values], dtype=torch.long),
        "items": items,
        "times": times,
        "window_offsets": window_offsets,
        "seen": seen,
        "seen_offsets": seen_offsets,
        "h": torch.stack([r.h.cpu() for r in values]) if stateful and values else None,
    }


def _records(saved: Any, fingerprint: Mapping[str, Any], stateful: bool, device: torch.device) -> dict[str, UserRecord]:
    """Records from a loaded payload, after checking it belongs to this model and is consistent."""
    if not isinstance(saved, Mapping) or saved.get("format") != SNAPSHOT_FORMAT:
        raise ValueError(f"not a {SNAPSHOT_FORMAT} file")
    if saved.get("fingerprint") != dict(fingerprint):
        theirs = saved.get("fingerprint") or {}
        differ = sorted(k for k in set(theirs) | set(fingerprint) if theirs.get(k) != fingerprint.get(k))
        raise ValueError(f"taken with another model (differs in {', '.join(differ)})")
    users, h = saved["users"], saved["h"]
    n = len(users)
    window, seen_offsets = saved["window_offsets"].tolist(), saved["seen_offsets"].tolist()
    items, times, seen = saved["items"].numpy(), saved["times"].numpy(), saved["seen"].numpy()
    counts, lasts = saved["count"].tolist(), saved["last_time"].tolist()
    lengths_ok = (
        len(set(users)) == n
        and len(window) == len(seen_offsets) == n + 1
        and len(counts) == len(lasts) == n
        and window[-1] == len(items) == len(times)
        and seen_offsets[-1] == len(seen)
    )
    if not lengths_ok or (stateful and n and (h is None or h.dim() != 2 or len(h) != n)):
        raise ValueError("inconsistent lengths")
    return {
        str(user): UserRecord(
            counts[i],
            lasts[i],
            items[window[i] : window[i + 1]].copy(),
            times[window[i] : window[i + 1]].copy(),
            seen[seen_offsets[i] : seen_offsets[i + 1]].copy(),
            h[i].to(device) if stateful else None,
        )
        for i, user in enumerate(users)
    }
