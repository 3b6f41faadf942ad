"""Raw text columns -> checked values: int64 unix seconds, ratings, non-empty fields.

Sources differ in how they write time (ML-1M and Amazon 2014/2018: seconds; Amazon 2023:
milliseconds; user files: anything, ISO 8601 dates included), while the protocol keeps
int64 seconds end to end. Every bad value is reported with its file, line and field, never
coerced or skipped silently.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from deepm3.errors import ConfigError, DataError

UNITS = {"s": 1, "ms": 1000, "iso": None}
EPOCH = pd.Timestamp(0, tz="UTC")


def check_unit(unit: str, key: str = "timestamp_unit") -> str:
    """Return ``unit`` when it is one of :data:`UNITS`, else raise a one-line ConfigError."""
    if unit not in UNITS:
        raise ConfigError(f"{key}={unit!r}; expected one of {sorted(UNITS)} (seconds, milliseconds, ISO 8601 dates)")
    return unit


def location(first_line: int | None, row: int) -> str:
    """Where row ``row`` of a chunk sits: a file line for text files, a row number otherwise."""
    return f"line {first_line + row}" if first_line is not None else f"row {row}"


def to_unix_seconds(values: pd.Series, unit: str, source: str, field: str, first_line: int | None) -> np.ndarray:
    """Convert a raw column to int64 unix seconds.

    ``first_line`` is the file line of ``values.iloc[0]`` (None for binary files such as
    Parquet, whose errors name the row instead).
    Numbers must be non-negative integers in ``unit`` (milliseconds are floored to seconds);
    ISO dates without a zone are read as UTC and must not precede 1970-01-01.
    """
    check_unit(unit)
    if unit == "iso":
        return _iso_seconds(values, source, field, first_line)
    if pd.api.types.is_bool_dtype(values.dtype):
        raise DataError(f"{source}: field '{field}' holds booleans; expected integer unix times")
    numbers = pd.to_numeric(values, errors="coerce")
    array = numbers.to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(array) | (array < 0) | (array != np.floor(array)) | _beyond_int64(numbers, array)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        name = "seconds" if unit == "s" else "milliseconds"
        raise DataError(  # the file's own text, not a converted (or wrapped) number
            f"{source}: {location(first_line, row)}: field '{field}' = {values.iloc[row]!r};"
            f" expected a non-negative integer number of unix {name} below 2^63"
        )
    whole = numbers.to_numpy(dtype=np.int64) if pd.api.types.is_integer_dtype(numbers.dtype) else array.astype(np.int64)
    return whole // UNITS[unit]


def _beyond_int64(numbers: pd.Series, array: np.ndarray) -> np.ndarray:
    """Values an int64 cannot hold (they would wrap around to negative numbers)."""
    if pd.api.types.is_unsigned_integer_dtype(numbers.dtype):
        return numbers.to_numpy() > np.iinfo(np.int64).max
    if pd.api.types.is_integer_dtype(numbers.dtype):
        return np.zeros(len(array), dtype=bool)
    with np.errstate(invalid="ignore"):
        return array >= 2.0**63


def _iso_seconds(values: pd.Series, source: str, field: str, first_line: int | None) -> np.ndarray:
    parsed = pd.to_datetime(values, utc=True, format="ISO8601", errors="coerce")
    seconds = ((parsed - EPOCH) // pd.Timedelta(seconds=1)).to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(seconds) | (seconds < 0)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{source}: {location(first_line, row)}: field '{field}' = {values.iloc[row]!r};"
            " expected an ISO 8601 date-time not before 1970-01-01 (e.g. 2014-03-01T12:00:00Z)"
        )
    return seconds.astype(np.int64)


def to_ratings(values: pd.Series, source: str, field: str, first_line: int | None) -> np.ndarray:
    """A rating column as float64; a missing or non-numeric value is an error naming its line."""
    numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(numbers)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{source}: {location(first_line, row)}: field '{field}' = {values.iloc[row]!r}; expected a number"
        )
    return numbers


def check_not_null(table: pd.DataFrame, columns: list[str], source: str) -> None:
    """Raise when a typed column (Parquet) has a null: the same rule as an empty CSV field."""
    for column in columns:
        missing = table[column].isna().to_numpy()
        if missing.any():
            row = int(np.flatnonzero(missing)[0])
            raise DataError(f"{source}: row {row}: field '{column}' is empty (null); expected a value in {columns}")


def check_filled(table: pd.DataFrame, columns: list[str], source: str, first_line: int) -> None:
    """Raise when a field read as text is empty -- what a line with too few fields leaves behind."""
    for column in columns:
        empty = (table[column] == "").to_numpy()
        if empty.any():
            row = int(np.flatnonzero(empty)[0])
            raise DataError(
                f"{source}: {location(first_line, row)}: field '{column}' is empty (too few fields?); "
                f"expected a value in {columns}"
            )


def floor_seconds(values: pd.Series, source: str, field: str, first_line: int | None) -> np.ndarray:
    """int64 seconds from times written as (possibly fractional) seconds, floored.

    Event logs in seconds with a millisecond part (YOOCHOOSE's ``1396437466.94``) or written as
    floats (JODIE's ``36.0``) keep their second; the pipeline's int64 seconds cannot hold more.
    """
    numbers = pd.to_numeric(values, errors="coerce")
    array = numbers.to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(array) | (array < 0) | (array >= 2.0**63)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{source}: {location(first_line, row)}: field '{field}' = {values.iloc[row]!r};"
            " expected a non-negative number of seconds"
        )
    return np.floor(array).astype(np.int64)
