"""Checks on the errors a user sees."""

from __future__ import annotations

from deepm3.errors import user_error


def one_line(exc: BaseException) -> str:
    error = user_error(exc)
    assert error is not None, f"not a user error: {type(exc).__name__}: {exc}"
    message = str(error)
    assert "\n" not in message
    return message
