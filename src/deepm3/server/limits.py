"""What one request may send, and reading its body within that (:class:`Limits`, :func:`read_body`).

The body is read by hand, so the size limit holds before anything is parsed, and a body trickled
slower than ``limits.body_timeout_s`` is refused with a 408.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass

from fastapi import HTTPException, Request

from deepm3.errors import DataError


@dataclass(frozen=True)
class Limits:
    """What one request may ask for; larger requests get a 413 before any work is done."""

    max_body_bytes: int = 1_000_000  # request body
    max_batch: int = 256  # queries (or users' event lists) in one request
    max_events: int = 10_000  # events in one history, or in one /events request
    body_timeout_s: int = 30  # seconds to send the whole body: a trickled body gets a 408

    def __post_init__(self) -> None:
        for key, value in asdict(self).items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise DataError(f"limits.{key}={value!r}; expected a positive integer")


async def read_body(request: Request, limit: int, timeout: float | None = None) -> bytes:
    """The request body, refused with a 413 as soon as it is known to exceed ``limit`` bytes,
    and with a 408 when it takes longer than ``timeout`` seconds (a slow client holds a socket)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"body: {declared} bytes; at most {limit} (limits.max_body_bytes)")
    chunks: list[bytes] = []

    async def receive() -> None:
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise HTTPException(413, f"body: more than {limit} bytes (limits.max_body_bytes)")
            chunks.append(chunk)

    try:  # wait_for, not asyncio.timeout: the package supports Python 3.10
        await asyncio.wait_for(receive(), timeout)
    except asyncio.TimeoutError:
        raise HTTPException(
            408, f"body: not received within {timeout:g} s (limits.body_timeout_s)", headers={"Connection": "close"}
        ) from None
    return b"".join(chunks)
