"""The service behind the routes (:class:`Server`): the recommender, its users' stored state,
snapshots and metrics. It raises the project's errors (:mod:`deepm3.errors`), never HTTP ones;
the routes (:mod:`deepm3.server.app`) map them to status codes (:mod:`deepm3.server.errors`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

import torch
from pydantic import BaseModel, TypeAdapter, ValidationError

from deepm3.errors import ConflictError, DataError, LimitError, UnavailableError, UnreadableError
from deepm3.recommender import Recommendations, Recommender
from deepm3.server.batching import MicroBatcher
from deepm3.server.limits import Limits
from deepm3.server.observe import Metrics
from deepm3.server.schemas import (
    EventsResponse,
    Query,
    Recommendation,
    SnapshotResponse,
    UserEvents,
    UserSummary,
    one_line,
)
from deepm3.server.state import StateStore

log = logging.getLogger("deepm3.server.app")  # the logger these lines were always written to

T = TypeVar("T", bound=BaseModel)


class Server:
    """The recommender, its users' stored state and metrics: everything the endpoints share."""

    def __init__(
        self,
        rec: Recommender,
        limits: Limits,
        k: int,
        snapshot: Path | None,
        info: dict[str, Any],
        fingerprint: dict[str, Any],
        batching: bool = False,
        max_users: int | None = None,
    ) -> None:
        self.rec, self.limits, self.k, self.snapshot = rec, limits, k, snapshot
        self.info, self.fingerprint = info, fingerprint
        # One network call at a time: the fused solver=none path swaps weights into a shared GRU
        # template (torch.func.functional_call) while it runs, which two threads must not do at once.
        # (The ODE used to keep the gap on the module; it now binds it per call, tests/test_ode.py.)
        self.model_lock = threading.Lock()
        self.metrics = Metrics(rec.name)
        self.store = StateStore(
            rec.net, rec.max_len, rec.device, self.model_lock, max_users=max_users, on_evict=self.metrics.evicted.inc
        )
        # Snapshots run one at a time on their own thread, never in the request pool: 100 concurrent
        # POST /snapshot calls once delayed an unrelated /recommend by 65 s (issue 30).
        self.snapshot_gate = threading.Lock()
        self.snapshot_pool = ThreadPoolExecutor(1, thread_name_prefix="deepm3-snapshot")
        self.batcher = (
            MicroBatcher(self.recommend, limits.max_batch, self.metrics.batch_queries.observe) if batching else None
        )

    # --- parsing ----------------------------------------------------------------------------

    def parse(self, body: bytes, model: type[T]) -> tuple[list[T], bool]:
        """``(items, was_a_list)`` from a JSON object or array of objects of ``model``."""
        try:
            value = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise UnreadableError(f"body: not valid JSON ({str(exc).splitlines()[0]})") from None
        except RecursionError:
            raise UnreadableError("body: JSON nested too deeply") from None
        many = isinstance(value, list)
        if many and len(value) > self.limits.max_batch:
            raise LimitError(
                f"body: {len(value)} entries; at most {self.limits.max_batch} per request (limits.max_batch)"
            )
        if many and not value:
            raise DataError("body: an empty list; expected at least one entry")
        try:
            parsed = _list_of(model).validate_python(value) if many else [model.model_validate(value)]
        except ValidationError as exc:
            raise DataError(one_line(exc)) from None
        return parsed, many

    # --- /recommend ---------------------------------------------------------------------------

    def recommend(self, queries: list[Query], labels: list[str]) -> list[Recommendation]:
        now = int(time.time())
        for query, label in zip(queries, labels):
            if query.items is not None and len(query.items) > self.limits.max_events:
                raise LimitError(
                    f"{label}.items: {len(query.items)} events; at most "
                    f"{self.limits.max_events} per history (limits.max_events)"
                )
        results: list[Recommendation | None] = [None] * len(queries)
        with torch.inference_mode():
            self._histories(queries, labels, now, results)
            self._users(queries, labels, now, results)
        return results  # type: ignore[return-value]

    def _histories(self, queries: list[Query], labels: list[str], now: int, results: list[Any]) -> None:
        """History queries, one ``recommend_batch`` per distinct (k, exclude_seen, unknown_items)."""
        groups: dict[tuple[int, bool, str], list[int]] = defaultdict(list)
        for i, query in enumerate(queries):
            if query.user is None:
                assert query.items is not None and query.timestamps is not None
                if query.at is None and query.timestamps and query.timestamps[-1] > now:
                    raise DataError(
                        f"{labels[i]}.at: not given, so now ({now}), which is earlier than the last "
                        f"event (timestamps[{len(query.timestamps) - 1}]={query.timestamps[-1]})"
                    )
                groups[(query.k or self.k, query.exclude_seen, query.unknown_items)].append(i)
        for (k, exclude_seen, unknown), rows in groups.items():
            ats = [queries[i].at if queries[i].at is not None else now for i in rows]
            with self.model_lock:
                ranked = self.rec.recommend_batch(
                    [queries[i].items for i in rows],  # type: ignore[misc]
                    [queries[i].timestamps for i in rows],  # type: ignore[misc]
                    at=ats,
                    k=k,
                    exclude_seen=exclude_seen,
                    unknown_items=unknown,
                    names=[labels[i] for i in rows],
                )
            for i, at, result in zip(rows, ats, ranked):
                results[i] = _response(result, at, result.source, None)

    def _users(self, queries: list[Query], labels: list[str], now: int, results: list[Any]) -> None:
        """Known-user queries: stored state (DeepM3) or the stored window, scored together."""
        hits: list[tuple[int, Any, int]] = []
        misses = 0
        for i, query in enumerate(queries):
            if query.user is None:
                continue
            record = self.store.get(query.user)
            at = query.at if query.at is not None else now
            if record is None:
                if not self.rec.has_popularity:
                    raise DataError(
                        f"{labels[i]}.user: {query.user!r} has no stored events, and the run has no "
                        "popularity counts for a user without history; POST /events first"
                    )
                misses += 1
                results[i] = _response(
                    self.rec.recommend_popular(query.k or self.k), at, "popularity", "miss", query.user
                )
                continue
            if at < record.last_time:
                raise DataError(
                    f"{labels[i]}.at={at}{'' if query.at is not None else ' (now)'} is earlier than the "
                    f"last stored event of user {query.user!r} ({record.last_time}); a prediction is "
                    "asked after the history"
                )
            hits.append((i, record, at))
        self.metrics.hits(len(hits), misses)
        if not hits:
            return
        records = [record for _, record, _ in hits]
        with self.model_lock:
            if self.store.stateful:
                scores = self.rec.score_states([r.h for r in records], [at - r.last_time for _, r, at in hits])
            else:
                scores = self.rec.score_windows(
                    [r.items for r in records], [r.times for r in records], [at for _, _, at in hits]
                )
        groups: dict[tuple[int, bool], list[int]] = defaultdict(list)
        for row, (i, _, _) in enumerate(hits):
            groups[(queries[i].k or self.k, queries[i].exclude_seen)].append(row)
        state = "stored" if self.store.stateful else "recomputed"
        for (k, exclude_seen), rows in groups.items():
            ranked = self.rec.recommend_scores(scores[rows], [records[r].seen for r in rows], k, exclude_seen)
            for row, result in zip(rows, ranked):
                i, _, at = hits[row]
                results[i] = _response(result, at, "model", state, queries[i].user)

    # --- /events ------------------------------------------------------------------------------

    def events(self, batches: list[UserEvents], labels: list[str]) -> EventsResponse:
        total = sum(len(b.items) for b in batches)
        if total > self.limits.max_events:
            raise LimitError(f"body: {total} events; at most {self.limits.max_events} per request (limits.max_events)")
        prepared, skipped = [], []
        for batch, label in zip(batches, labels):
            history = self.rec.validate_history(batch.items, batch.timestamps, batch.unknown_items, label, body=True)
            skipped += history.skipped
            prepared.append((batch.user, history.items, history.times))
        records = self.store.append(prepared, labels)
        accepted = sum(len(items) for _, items, _ in prepared)
        self.metrics.accepted.inc(accepted)
        self.metrics.stored_users.set(len(self.store))
        users = []
        for user in dict.fromkeys(b.user for b in batches):
            record = records.get(user) or self.store.get(user)
            users.append(
                UserSummary(
                    user=user, events=record.count if record else 0, last_time=record.last_time if record else None
                )
            )
        return EventsResponse(accepted=accepted, skipped_items=skipped, users=users, durability=self.durability)

    @property
    def durability(self) -> str:
        """The promise of a 200 from /events, said plainly in every answer (docs/serving.md)."""
        if self.snapshot is None:
            return "memory only: lost when the server stops (state.snapshot=null)"
        return "in memory until the next snapshot (POST /snapshot or a clean shutdown); a crash before it loses them"

    # --- snapshots ----------------------------------------------------------------------------

    def save_snapshot(self) -> SnapshotResponse:
        if self.snapshot is None:
            raise ConflictError("snapshots are off (state.snapshot=null); start the server with a snapshot path")
        try:
            users, size, seconds = self.store.save(self.snapshot, self.fingerprint)
        except OSError as exc:
            log.error("cannot write the state snapshot %s: %s", self.snapshot, exc)
            raise UnavailableError(
                f"cannot write the state snapshot ({exc.strerror or exc}); see the server log"
            ) from None
        log.info("saved stored state of %d users to %s (%d bytes, %.3f s)", users, self.snapshot, size, seconds)
        return SnapshotResponse(users=users, file=self.snapshot.name, bytes=size, seconds=round(seconds, 6))

    async def snapshot_once(self) -> SnapshotResponse:
        """``save_snapshot`` on the snapshot thread; refused while another one is being written."""
        if not self.snapshot_gate.acquire(blocking=False):
            raise ConflictError("snapshot: one is being written now; retry when it has finished")
        try:
            return await asyncio.get_running_loop().run_in_executor(self.snapshot_pool, self.save_snapshot)
        finally:
            self.snapshot_gate.release()

    def load_snapshot(self) -> None:
        if self.snapshot is None:
            log.info("state.snapshot=null: stored state lives in memory only and is lost on shutdown")
            return
        for leftover in self.snapshot.parent.glob(f".{self.snapshot.name}.*.tmp"):  # a snapshot write killed midway
            try:
                leftover.unlink()
                log.warning("removed %s, left by a snapshot write that did not finish", leftover)
            except OSError as exc:
                log.warning("cannot remove %s, left by an unfinished snapshot write: %s", leftover, exc)
        message = self.store.load(self.snapshot, self.fingerprint)
        (log.info if message.startswith("loaded") else log.warning)("%s", message)
        self.metrics.stored_users.set(len(self.store))


@lru_cache(maxsize=None)
def _list_of(model: type[BaseModel]) -> TypeAdapter:
    """A validator for ``list[model]``, built once (building one costs more than using it)."""
    return TypeAdapter(list[model])  # type: ignore[valid-type]


def _response(
    result: Recommendations, at: int, source: str, state: str | None, user: str | None = None
) -> Recommendation:
    return Recommendation(
        user=user,
        at=at,
        items=[item for item, _ in result],
        scores=[score for _, score in result],
        source=source,
        state=state,
        skipped_items=result.skipped,
        reason=result.reason,
    )  # type: ignore[arg-type]
