"""The one interactions table every source yields (protocol §1.1), validated once."""

from __future__ import annotations

import numpy as np
import pandas as pd

from deepm3.errors import DataError

REQUIRED_COLUMNS = ("user", "item", "timestamp")


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
            raise DataError(
                f"{source}: row {row}: field 'rating' = {df['rating'].iloc[row]!r}; expected a number"
            )
        out["rating"] = rating.to_numpy(dtype=np.float32)
    return out


def _as_int_seconds(column: pd.Series, source: str) -> np.ndarray:
    values = pd.to_numeric(column, errors="coerce")
    array = values.to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(array) | (array < 0) | (array != np.floor(array))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{source}: row {row}: field 'timestamp' = {column.iloc[row]!r}; expected a"
            " non-negative integer number of unix seconds"
        )
    if pd.api.types.is_integer_dtype(column.dtype):
        return column.to_numpy(dtype=np.int64)
    return array.astype(np.int64)
