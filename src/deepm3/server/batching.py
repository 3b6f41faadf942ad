"""Micro-batching (``batching=true``): requests that queue while the network is busy are scored
together, in one call, by one worker thread.

The network runs one call at a time anyway (see :class:`~deepm3.server.service.Server`), and a
DeepM3 window costs about the same for 8 rows as for 1 (its cost is the per-event loop), so
under concurrent load this multiplies throughput. Nothing waits for a batch to fill: an idle
server scores a lone request at once. A merged batch that fails (one request's bad input) is
scored again request by request, so only the bad request gets the error.

Off by default: a batched score can differ from the same request scored alone in the last
float bits (another matrix shape), and by default concurrent requests get exactly the
answers sequential ones would.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

Score = Callable[[list[Any], list[str]], list[Any]]


@dataclass
class _Job:
    queries: list[Any]
    labels: list[str]
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop


class MicroBatcher:
    """Feeds ``score(queries, labels) -> results`` with every job queued, up to ``max_batch`` queries."""

    def __init__(self, score: Score, max_batch: int, observe: Callable[[int], None] | None = None) -> None:
        self._score = score
        self._max_batch = max_batch
        self._observe = observe or (lambda size: None)
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def start(self) -> None:
        with self._start_lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._work, name="deepm3-batcher", daemon=True)
                self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Finish what is queued, then end the worker."""
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout)

    async def submit(self, queries: Sequence[Any], labels: Sequence[str]) -> list[Any]:
        """The results of ``queries``, scored with whatever else is queued; their error if they fail."""
        self.start()
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.put(_Job(list(queries), list(labels), future, loop))
        return await future

    def _work(self) -> None:
        carry: _Job | None = None
        while True:
            job = carry or self._queue.get()
            carry = None
            if job is None:
                return
            jobs, size = [job], len(job.queries)
            while size < self._max_batch:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None or size + len(more.queries) > self._max_batch:
                    carry = more
                    break
                jobs.append(more)
                size += len(more.queries)
            self._run(jobs, size)

    def _run(self, jobs: list[_Job], size: int) -> None:
        if len(jobs) > 1:
            try:
                results = self._score([q for j in jobs for q in j.queries], [label for j in jobs for label in j.labels])
            except Exception:  # someone's bad input: score each alone below, so only that request fails
                pass
            else:
                self._observe(size)
                start = 0
                for job in jobs:
                    _resolve(job, results[start : start + len(job.queries)], None)
                    start += len(job.queries)
                return
        for job in jobs:
            try:
                result = self._score(job.queries, job.labels)
            except Exception as exc:
                _resolve(job, None, exc)
            else:
                self._observe(len(job.queries))
                _resolve(job, result, None)


def _resolve(job: _Job, result: Any, error: BaseException | None) -> None:
    def settle() -> None:
        if job.future.done():  # the client went away and the request was cancelled
            return
        if error is not None:
            job.future.set_exception(error)
        else:
            job.future.set_result(result)

    try:
        job.loop.call_soon_threadsafe(settle)
    except RuntimeError:  # the event loop is closed: nobody is waiting any more
        log.debug("dropped a result: event loop closed")
