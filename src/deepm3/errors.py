"""Errors that reach users as one line: what was wrong, where, and what was expected."""

import logging
import sys


class DeepM3Error(Exception):
    """Base class; the CLI prints these as a single line instead of a traceback."""


class DataError(DeepM3Error, ValueError):
    """A data file or table is missing, malformed or empty after filtering."""


class ConfigError(DeepM3Error, ValueError):
    """A configuration value is unknown, of the wrong type, or inconsistent with another."""


class UnreadableError(DataError):
    """Input that cannot be read at all: not valid JSON, say (the HTTP server answers 400)."""


class LimitError(DataError):
    """Input larger than a configured limit allows: too many entries or events (HTTP: 413)."""


class ConflictError(DeepM3Error):
    """Asked for what the current state refuses: a feature switched off, or the same work already
    under way (HTTP: 409)."""


class UnavailableError(DeepM3Error):
    """A resource the work needs failed (a disk write, say); asking again later may succeed (HTTP: 503)."""


def user_error(exc: BaseException) -> DeepM3Error | None:
    """The :class:`DeepM3Error` behind ``exc``, if any.

    ``hydra.utils.instantiate`` wraps whatever a constructor raises in an
    ``InstantiationException``; command-line entry points unwrap it with this so a bad
    config value still reaches the user as one line instead of a traceback.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, DeepM3Error):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def exit_on_user_error(exc: BaseException, log: logging.Logger) -> None:
    """Command-line entry points: a user error becomes one line on stderr and exit status 1.

    Returns (so the caller can ``raise``) when ``exc`` is a bug rather than bad input, which
    keeps its traceback.
    """
    error = user_error(exc)
    if error is None:
        return
    log.error("%s", error)
    print(f"error: {error}", file=sys.stderr)
    sys.exit(1)
