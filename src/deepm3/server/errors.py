"""The project's errors as HTTP answers: service code raises :mod:`deepm3.errors`, the routes map
them to status codes here (:data:`STATUS`, :func:`as_http_error`), and a bug is a logged one-line 500.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import HTTPException

from deepm3.errors import ConflictError, DeepM3Error, LimitError, UnavailableError, UnreadableError

log = logging.getLogger("deepm3.server.app")  # the logger these lines were always written to

R = TypeVar("R")


def guarded(call: Callable[..., R], *args: Any) -> R:
    """Run ``call``, its errors as :func:`as_http_error` maps them."""
    try:
        return call(*args)
    except Exception as exc:
        raise as_http_error(exc) from None


# the project's errors as status codes, first match wins; any other DeepM3Error is bad input (422)
STATUS = ((UnreadableError, 400), (LimitError, 413), (ConflictError, 409), (UnavailableError, 503), (DeepM3Error, 422))


def as_http_error(exc: Exception) -> HTTPException:
    """The HTTP answer to ``exc``: a project error -> its status (:data:`STATUS`) with its line;
    a bug -> a logged one-line 500."""
    if isinstance(exc, HTTPException):
        return exc
    for kind, status in STATUS:
        if isinstance(exc, kind):
            return HTTPException(status, " ".join(str(exc).split("\n")))
    log.error("internal error while answering a request", exc_info=exc)
    return HTTPException(500, "internal error; see the server log")
