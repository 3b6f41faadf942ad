"""Connection guards: slow or idle clients cannot hold the server's sockets and shut others out.

uvicorn by itself waits forever for a request's headers, and counts every open socket against
``limit_concurrency``: a few hundred idle sockets (or headers sent a byte a minute) made every
request, ``/health`` included, a 503 (issue 30). :class:`GuardedProtocol` is uvicorn's
httptools protocol with three additions:

- a **header timeout**: a connection that has not sent a complete request head within
  ``header_timeout`` seconds of connecting (or of starting a request) is closed;
- **idle shedding**: past ``max_connections + health_headroom`` open sockets, the connection
  that has waited longest without a request in progress (idle keep-alive or still sending
  headers) is closed to make room, so a new client is served instead of a slow one;
- **headroom for health checks**: requests other than ``/health`` get a 503 once
  ``max_connections`` requests run at once; ``/health`` may use ``health_headroom`` more.

The body timeout and the keep-alive timeout are handled by the app (``read_body``) and by
uvicorn (``timeout_keep_alive``). :func:`guarded_protocol` binds the settings to a class,
since uvicorn builds protocol instances itself.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger(__name__)

HEALTH_PATHS = frozenset({b"/health"})


@dataclass(frozen=True)
class ConnectionLimits:
    """How long a client may take, and how many sockets the server keeps open."""

    header_timeout: float = 10.0  # seconds to send a request's headers
    max_connections: int = 256  # requests (and sockets) before others are shed or refused
    health_headroom: int = 16  # extra room for GET /health beyond max_connections


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a header timeout, idle shedding and health headroom."""

    limits = ConnectionLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None
        self._waiting_since: float | None = None  # set while no request of this connection is in progress

    # -- connections -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._wait_for_headers()
        if len(self.connections) > self.limits.max_connections + self.limits.health_headroom:
            self._shed_one()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        self._waiting_since = None
        super().connection_lost(exc)

    def _shed_one(self) -> None:
        """Close the connection that has waited longest without a request in progress."""
        idle = [c for c in self.connections if isinstance(c, GuardedProtocol) and c._waiting_since is not None]
        if not idle:
            return
        oldest = min(idle, key=lambda c: c._waiting_since or 0.0)
        log.info("too many open connections (%d): closing an idle one", len(self.connections))
        oldest._close()

    def _close(self) -> None:
        self._cancel_header_timer()
        self._waiting_since = None
        if not self.transport.is_closing():
            self.transport.close()

    # -- the header timeout ----------------------------------------------------------------

    def _wait_for_headers(self) -> None:
        self._waiting_since = time.monotonic()
        self._cancel_header_timer()
        self._header_timer = self.loop.call_later(self.limits.header_timeout, self._headers_too_slow)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self.cycle is not None and not self.cycle.response_complete:
            return  # a request is being answered: not this timer's business
        self._close()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._header_timer is None:  # a later request on a kept-alive connection
            self._wait_for_headers()

    def on_headers_complete(self) -> None:
        self._cancel_header_timer()
        self._waiting_since = None
        try:
            path = httptools.parse_url(self.url).path
        except httptools.HttpParserInvalidURLError:
            path = b""
        room = self.limits.max_connections + (self.limits.health_headroom if path in HEALTH_PATHS else 0)
        self.limit_concurrency = None  # uvicorn's own check counts idle sockets too; this one counts requests
        if len(self.tasks) < room:
            super().on_headers_complete()
            return
        log.warning("%d requests in progress (limits.max_connections): answering 503", len(self.tasks))
        app, self.app = self.app, _busy
        try:
            super().on_headers_complete()
        finally:
            self.app = app

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._waiting_since = time.monotonic()  # idle keep-alive: uvicorn's timeout_keep_alive runs


async def _busy(scope: dict, receive: Any, send: Any) -> None:
    """The 503 of a full server, as JSON like every other error (uvicorn's is plain text)."""
    body = json.dumps({"detail": "server busy: too many requests in progress (limits.max_connections); retry"})
    headers = [(b"content-type", b"application/json"), (b"retry-after", b"1"), (b"connection", b"close")]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": body.encode()})


def guarded_protocol(limits: ConnectionLimits) -> type[GuardedProtocol]:
    """A :class:`GuardedProtocol` subclass bound to ``limits`` (uvicorn's ``http=`` option)."""
    return type("BoundGuardedProtocol", (GuardedProtocol,), {"limits": limits})
