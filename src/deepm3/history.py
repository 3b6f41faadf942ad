"""Raw-id histories checked and put in index space: the one input check behind the Python API
(:class:`deepm3.recommender.Recommender`), the batch CLI (:mod:`deepm3.recommend`) and the HTTP
server (:mod:`deepm3.server`), so each says the same thing about the same mistake.

Timestamps are unix seconds as training stores them: non-negative int64. Every failure is a
one-line :class:`~deepm3.errors.DataError` naming the history and the field.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from deepm3.errors import DataError

UNKNOWN_ITEM_POLICIES = ("error", "skip")


@dataclass
class History:
    """One validated history in index space (:func:`validate_history`)."""

    items: np.ndarray  # item indices 1..N of the known items, time order
    times: np.ndarray  # their int64 unix seconds
    at: int | None  # query time, >= the last event (None: no query, events being stored)
    skipped: list[str]  # unknown raw ids left out (unknown_items="skip")


def to_seconds(value: Any, what: str) -> int:
    """A timestamp as int unix seconds (numbers or numeric strings; fractions are floored).

    Like training data, a time must be non-negative and fit an int64 (below 2^63); anything
    else is a one-line :class:`DataError` quoting the value as given.
    """
    if isinstance(value, (bool, np.bool_)):
        raise DataError(f"{what}={value!r} is not a number of unix seconds")
    if isinstance(value, numbers.Integral):
        return _seconds_in_range(int(value), value, what)
    if isinstance(value, str):
        text = value.strip()
        try:
            return _seconds_in_range(int(text), value, what)
        except ValueError:
            value = text
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise DataError(f"{what}={value!r} is not a number of unix seconds") from None
    if not math.isfinite(number):
        raise DataError(f"{what}={value!r} is not a finite number of unix seconds")
    return _seconds_in_range(math.floor(number), value, what)


MAX_SECONDS = 2**63 - 1  # int64, as training stores times


def _seconds_in_range(seconds: int, given: Any, what: str) -> int:
    if not 0 <= seconds <= MAX_SECONDS:
        raise DataError(
            f"{what}={given!r} is out of range; expected a non-negative integer number of unix seconds "
            "below 2^63 (as in training data)"
        )
    return seconds


def validate_history(
    index: Mapping[str, int],
    items: Sequence[Any],
    timestamps: Sequence[Any],
    unknown_items: str = "error",
    label: str | None = None,
    now: int | None = None,
    at: Any = None,
    body: bool = False,
    num_items: int | None = None,
) -> History:
    """One history checked and put in index space (``index``: raw id -> item index 1..N of an
    item map of ``num_items`` items, by default ``len(index)``).

    ``items`` are raw ids and ``timestamps`` unix seconds, one per item, oldest first. Raw ids
    not in ``index`` are an error, or with ``unknown_items="skip"`` are left out and listed in
    ``skipped``. Given ``now``, the history is asked at ``at`` (``None``: ``now``), which may not
    precede its last event; without it (events to store) there is no query time. Errors are
    one-line :class:`DataError` messages naming the history by ``label`` (``u1: ...``);
    ``body=True`` names its fields the way an HTTP body does (``body.items[0]: ...``).
    """
    if unknown_items not in UNKNOWN_ITEM_POLICIES:
        raise DataError(f"unknown_items={unknown_items!r}; expected one of {list(UNKNOWN_ITEM_POLICIES)}")
    num_items = len(index) if num_items is None else num_items
    where = f"{label}: " if label else ""
    field = f"{label}." if body and label else where
    for name, values in (("items", items), ("timestamps", timestamps)):
        if isinstance(values, (str, bytes)) or not is_sequence(values):
            raise DataError(f"{where}{name}={values!r}; expected a list")
    if len(items) != len(timestamps):
        raise DataError(f"{where}{len(items)} items but {len(timestamps)} timestamps; expected one timestamp per item")
    times = _seconds_array(timestamps, where)
    backwards = np.flatnonzero(np.diff(times) < 0)
    if len(backwards):
        j = int(backwards[0]) + 1
        raise DataError(
            f"{field}timestamps must be in time order (oldest first): timestamps[{j}]={times[j]} "
            f"is earlier than timestamps[{j - 1}]={times[j - 1]}"
        )
    query = None
    if now is not None:
        query = now if at is None else to_seconds(at, f"{where}at")
        if len(times) and query < times[-1]:
            asked = f"at={query}" if at is not None else f"at=now ({query})"
            raise DataError(
                f"{where}{asked} is earlier than the last event (timestamps[{len(times) - 1}]={times[-1]}); "
                "a prediction is asked after the history"
            )
    raw = [str(item) for item in items]
    indices = np.array([index.get(r, 0) for r in raw], dtype=np.int64)
    unknown = np.flatnonzero(indices == 0)
    if len(unknown) and unknown_items == "error":
        j = int(unknown[0])
        if body:
            raise DataError(
                f"{field}items[{j}]: unknown item id {raw[j]!r}, not in the run's item map of "
                f'{num_items} items; pass "unknown_items": "skip" to leave it out'
            )
        raise DataError(
            f"{where}unknown item id {raw[j]!r} (items[{j}]): not in the run's item map of "
            f"{num_items} items; pass unknown_items='skip' to leave unknown items out"
        )
    known = indices > 0
    return History(indices[known], times[known], query, [raw[j] for j in unknown])


def _seconds_array(timestamps: Sequence[Any], where: str) -> np.ndarray:
    """``timestamps`` as int64 unix seconds, each as :func:`to_seconds` takes it (and names it
    when it fails); a list of in-range Python ints (an HTTP body's) is taken whole, at numpy speed."""
    if all(type(t) is int for t in timestamps):
        try:
            times = np.asarray(timestamps, dtype=np.int64)
        except OverflowError:
            times = None
        if times is not None and not (times < 0).any():
            return times
    return np.array([to_seconds(t, f"{where}timestamps[{j}]") for j, t in enumerate(timestamps)], dtype=np.int64)


def is_sequence(value: Any) -> bool:
    return isinstance(value, (Sequence, np.ndarray, pd.Series)) and not isinstance(value, (str, bytes))
