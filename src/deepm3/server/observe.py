"""Prometheus metrics of the server, and the ASGI middleware that times every request.

Each app has its own registry (two apps in one process, as in tests, never share counters).
Endpoint labels are the app's route paths only, everything else is ``other``: a client cannot
grow the label set by asking for random paths.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Collection
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# Latency buckets from 0.25 ms to 10 s: a stored-state request is sub-millisecond, a long window on a CPU is not.
BUCKETS = (
    0.00025,
    0.0005,
    0.001,
    0.002,
    0.003,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.02,
    0.03,
    0.05,
    0.075,
    0.1,
    0.2,
    0.5,
    1.0,
    2.5,
    10.0,
)


class Metrics:
    """The server's counters, labelled by model so several servers can share one dashboard."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.registry = CollectorRegistry()
        labels = ["endpoint", "model"]
        self.latency = Histogram(
            "deepm3_request_seconds",
            "Request latency, body read to response sent",
            labels,
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.requests = Counter(
            "deepm3_requests", "Requests answered, by status code", [*labels, "status"], registry=self.registry
        )
        self.errors = Counter(
            "deepm3_request_errors",
            "Requests answered with a 4xx or 5xx status",
            [*labels, "status"],
            registry=self.registry,
        )
        self.state_hits = Counter(
            "deepm3_state_hits", "User queries answered from stored state or events", ["model"], registry=self.registry
        )
        self.state_misses = Counter(
            "deepm3_state_misses", "User queries for a user with no stored events", ["model"], registry=self.registry
        )
        self.events = Counter("deepm3_events", "Events accepted by /events", ["model"], registry=self.registry)
        self.users = Gauge("deepm3_stored_users", "Users with stored state", ["model"], registry=self.registry)
        self.evictions = Counter(
            "deepm3_evicted_users",
            "Least recently seen users dropped beyond state.max_users",
            ["model"],
            registry=self.registry,
        )
        self.batches = Histogram(
            "deepm3_batch_queries",
            "Queries per network call (batching=true)",
            ["model"],
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=self.registry,
        )
        # labelled children looked up once (``labels()`` costs more than the increment it guards)
        self._hits, self._misses = self.state_hits.labels(model), self.state_misses.labels(model)
        self.accepted, self.stored_users = self.events.labels(model), self.users.labels(model)
        self.evicted = self.evictions.labels(model)
        self.batch_queries = self.batches.labels(model)
        self._latency: dict[str, Any] = {}
        self._counts: dict[tuple[str, int], tuple[Any, Any]] = {}

    def observe(self, endpoint: str, status: int, seconds: float) -> None:
        latency = self._latency.get(endpoint)
        if latency is None:
            latency = self._latency[endpoint] = self.latency.labels(endpoint, self.model)
        latency.observe(seconds)
        counts = self._counts.get((endpoint, status))
        if counts is None:
            error = self.errors.labels(endpoint, self.model, str(status)) if status >= 400 else None
            counts = self._counts[(endpoint, status)] = (self.requests.labels(endpoint, self.model, str(status)), error)
        counts[0].inc()
        if counts[1] is not None:
            counts[1].inc()

    def hits(self, hits: int, misses: int) -> None:
        if hits:
            self._hits.inc(hits)
        if misses:
            self._misses.inc(misses)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class TimingMiddleware:
    """Pure ASGI (cheaper than ``BaseHTTPMiddleware``): time each HTTP request, count its status."""

    def __init__(self, app: Callable[..., Awaitable[None]], metrics: Metrics, endpoints: Collection[str]) -> None:
        self.app = app
        self.metrics = metrics
        self.endpoints = frozenset(endpoints)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        endpoint = scope["path"] if scope["path"] in self.endpoints else "other"
        status = 500  # what the client gets if the app fails before it starts a response

        async def send_status(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        start = time.perf_counter()
        try:
            await self.app(scope, receive, send_status)
        finally:
            self.metrics.observe(endpoint, status, time.perf_counter() - start)
