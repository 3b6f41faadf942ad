"""The one interactions table every source yields (docs/protocol.md, "Data and split"), validated once."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from deepm3.errors import DataError

REQUIRED_COLUMNS = ("user", "item", "timestamp")
SECONDS_PER_YEAR = 31_556_952  # mean Gregorian year
PLAUSIBLE_UNTIL = 10_000_000_000  # unix seconds: year 2286; later times are taken for a unit mistake
FINER_UNITS = ((1_000, "milliseconds"), (1_000_000, "microseconds"), (1_000_000_000, "nanoseconds"))  # likeliest first

log = logging.getLogger(__name__)


def validate_interactions(df: pd.DataFrame, source: str) -> pd.DataFrame:
    """Return ``df`` with ``user``/``item`` as str and ``timestamp`` as int64 seconds.

    Raises a one-line :class:`DataError` naming ``source`` when a column is missing, a
    timestamp is not a finite non-negative integer, or the table is empty. Row order is kept:
    it is the tie-breaking order for equal timestamps.
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(
            f"{source}: missing column(s) {missing}; expected columns {list(REQUIRED_COLUMNS)}"
            f" (+ optional 'rating'), got {list(df.columns)}"
        )
    if len(df) == 0:
        raise DataError(f"{source}: no interactions found; expected at least one row")
    for column in ("user", "item"):  # an id that is missing would become the string 'nan' or 'None'
        missing = df[column].isna().to_numpy()
        if missing.any():
            raise DataError(
                f"{source}: row {int(np.flatnonzero(missing)[0])}: field '{column}' is empty; expected an id"
            )
    out = pd.DataFrame(
        {
            "user": df["user"].astype(str).to_numpy(),
            "item": df["item"].astype(str).to_numpy(),
            "timestamp": _as_int_seconds(df["timestamp"], source),
        }
    )
    if "rating" in df.columns:
        rating = pd.to_numeric(df["rating"], errors="coerce")
        bad = rating.isna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataError(f"{source}: row {row}: field 'rating' = {df['rating'].iloc[row]!r}; expected a number")
        out["rating"] = rating.to_numpy(dtype=np.float32)
    if "test" in df.columns:  # a session dataset's given split: True on the events of its test file
        out["test"] = df["test"].to_numpy(dtype=bool)
    warn_if_implausible(out["timestamp"].to_numpy(), source)
    return out


def warn_if_implausible(seconds: np.ndarray, source: str) -> None:
    """Warn when times read as seconds land far in the future: a file in ms (or finer) read as s."""
    if not len(seconds):
        return
    latest = int(seconds.max())
    if latest <= PLAUSIBLE_UNTIL:
        return
    unit = next((u for f, u in FINER_UNITS if latest / f <= PLAUSIBLE_UNTIL), FINER_UNITS[-1][1])
    advice = (
        "set dataset.source.timestamp_unit=ms (interactions files)"
        if unit == "milliseconds"
        else "convert them to seconds or milliseconds"
    )
    log.warning(
        "%s: timestamps reach %d, the year ~%s if read as unix seconds; they look like %s -- if so, %s",
        source,
        latest,
        f"{1970 + int(latest // SECONDS_PER_YEAR):,}",
        unit,
        advice,
    )


def _as_int_seconds(column: pd.Series, source: str) -> np.ndarray:
    values = pd.to_numeric(column, errors="coerce")
    array = values.to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(array) | (array < 0) | (array != np.floor(array))
    if pd.api.types.is_unsigned_integer_dtype(values.dtype):
        bad |= values.to_numpy() > np.iinfo(np.int64).max
    elif not pd.api.types.is_integer_dtype(values.dtype):
        bad |= array >= 2.0**63
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{source}: row {row}: field 'timestamp' = {column.iloc[row]!r}; expected a"
            " non-negative integer number of unix seconds below 2^63"
        )
    if pd.api.types.is_integer_dtype(column.dtype):
        return column.to_numpy(dtype=np.int64)
    return array.astype(np.int64)
