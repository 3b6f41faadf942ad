"""Each user's stored state: what lets a known user's request skip recomputing their history.

A DeepM3 network (one that has ``initial_state``/``advance``/``readout``) keeps a state vector
per user, advanced once per posted event (flow over the gap since the user's previous event,
then the GRU update). A request then only flows that state to ``at`` and scores: work that
does not grow with the history. While the user's history fits the window (``max_len``
events) this equals the full recompute; beyond it the state also remembers the events the
window drops. Every other network (SASRec, GRU4Rec, ...) has no such state: the store keeps the
user's last ``max_len`` events and a request recomputes the window from them.

Records are immutable and replaced whole, so a reader never sees half an update and
concurrent requests get the answers sequential ones would. The store holds at most
``max_users`` users; past it the least recently seen (read or written) are dropped. Snapshots are plain
tensors and lists saved atomically and read back with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
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
    methods = all(callable(getattr(net, name, None)) for name in ("initial_state", "advance", "readout"))
    return methods and getattr(net, "streaming", True)


class StateStore:
    """Per-user records for one network: a bounded, least-recently-seen ordered map.

    Locking (issue 30): ``_lock`` guards the map only and is held for dictionary reads and
    writes, never while a state is computed; writers of the same user are serialised by one of
    ``SHARDS`` shard locks instead, so a large ``/events`` post of one user does not hold up
    another user's request. The network itself runs under the shared model lock, taken per
    ``ADVANCE_CHUNK`` events so other requests' network calls interleave with a long post.
    """

    SHARDS = 64
    ADVANCE_CHUNK = 256

    def __init__(
        self,
        net: torch.nn.Module,
        max_len: int,
        device: torch.device,
        model_lock: threading.Lock | None = None,
        max_users: int | None = None,
        on_evict: Callable[[int], None] | None = None,
    ) -> None:
        if max_users is not None and (isinstance(max_users, bool) or not isinstance(max_users, int) or max_users < 1):
            raise DataError(f"state.max_users={max_users!r}; expected a positive integer or null (no cap)")
        self.net = net
        self.max_len = max_len
        self.device = device
        self.stateful = is_stateful(net)
        self.max_users = max_users
        self._on_evict = on_evict or (lambda count: None)
        self._users: OrderedDict[str, UserRecord] = OrderedDict()  # least recently seen first
        self._lock = threading.Lock()  # guards _users; held only to read or replace entries
        self._shards = [threading.Lock() for _ in range(self.SHARDS)]  # one writer per user at a time
        self._snapshot_lock = threading.Lock()  # one snapshot write at a time
        self._model_lock = model_lock or threading.Lock()  # shared with every other caller of the network

    def __len__(self) -> int:
        return len(self._users)

    def get(self, user: str) -> UserRecord | None:
        """The user's record (which counts as seeing the user, for eviction)."""
        with self._lock:
            record = self._users.get(user)
            if record is not None:
                self._users.move_to_end(user)
            return record

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
        with ExitStack() as held, torch.inference_mode():
            for shard in sorted({self._shard(user) for user in merged}):  # always in one order: no deadlock
                held.enter_context(self._shards[shard])
            with self._lock:
                old = {user: self._users.get(user) for user in merged}
            new: dict[str, tuple[np.ndarray, np.ndarray]] = {}
            for user, (item_parts, time_parts) in merged.items():
                last = old[user].last_time if old[user] is not None else None
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
            states = self._advance(new, old) if self.stateful and new else {}
            updated = {
                user: self._record(old[user], items, times, states.get(user)) for user, (items, times) in new.items()
            }
            with self._lock:
                for user, record in updated.items():
                    self._users[user] = record
                    self._users.move_to_end(user)
                evicted = self._evict()
        if evicted:
            self._on_evict(evicted)
        return updated

    def _shard(self, user: str) -> int:
        return hash(user) % self.SHARDS

    def _evict(self) -> int:
        """Drop the least recently seen users beyond ``max_users`` (caller holds ``_lock``)."""
        count = 0
        while self.max_users is not None and len(self._users) > self.max_users:
            self._users.popitem(last=False)
            count += 1
        return count

    def _advance(
        self, new: Mapping[str, tuple[np.ndarray, np.ndarray]], old: Mapping[str, UserRecord | None]
    ) -> dict[str, torch.Tensor]:
        """States after each user's new events, all users stepped together (right-padded with item 0)."""
        users = list(new)
        length = max(len(items) for items, _ in new.values())
        items = np.zeros((len(users), length), dtype=np.int64)
        times = np.zeros((len(users), length), dtype=np.int64)
        for row, user in enumerate(users):
            items[row, : len(new[user][0])], times[row, : len(new[user][1])] = new[user]
        fresh = self.net.initial_state(1)[0]
        h = torch.stack([old[u].h if old[u] is not None else fresh for u in users]).to(self.device)
        previous = torch.tensor(
            [old[u].last_time if old[u] is not None else -1 for u in users], dtype=torch.long, device=self.device
        )  # -1: no event yet (first gap is 0)
        items_t, times_t = torch.from_numpy(items).to(self.device), torch.from_numpy(times).to(self.device)
        for start in range(0, length, self.ADVANCE_CHUNK):
            with self._model_lock:  # per chunk: other requests' network calls run in between
                for j in range(start, min(start + self.ADVANCE_CHUNK, length)):
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
            self._users = OrderedDict(records)  # saved least recently seen first
            evicted = self._evict()
        if evicted:
            self._on_evict(evicted)
            return (
                f"loaded stored state of {len(self._users)} users from {path}; {evicted} least recently seen "
                f"users beyond state.max_users={self.max_users} left out"
            )
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
