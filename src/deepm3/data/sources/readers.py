"""Line-checked readers for delimited raw files: a malformed line is named, never skipped."""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd

from deepm3.errors import DataError


def read_delimited(
    path: Path,
    sep: str,
    names: list[str],
    skip_header: bool = False,
    numeric: list[str] | None = None,
    encoding: str = "utf-8",
) -> pd.DataFrame:
    """Read a headerless (or header-skipped) delimited file with exactly ``len(names)`` fields.

    A line with another field count, or a non-numeric value in a ``numeric`` column, raises a
    :class:`DataError` naming the file, the line number and the field.
    """
    try:
        table = pd.read_csv(
            path,
            sep=sep,
            header=None,
            names=names,
            skiprows=1 if skip_header else 0,
            dtype=str,
            engine="c" if len(sep) == 1 else "python",
            encoding=encoding,
            quoting=csv.QUOTE_NONE,
            keep_default_na=False,
            on_bad_lines="error",
        )
    except pd.errors.ParserError as exc:
        raise DataError(
            f"{path}: {_parser_message(exc)}; expected {len(names)} fields {names} separated by {sep!r}"
        ) from None
    except (UnicodeDecodeError, OSError, EOFError) as exc:
        raise DataError(f"{path}: unreadable ({exc})") from None
    first_line = 2 if skip_header else 1
    short = table[names[-1]].isna() | (table[names[-1]] == "")
    if short.any():
        row = int(short.to_numpy().nonzero()[0][0])
        raise DataError(
            f"{path}: line {row + first_line}: fewer than {len(names)} fields; expected {names} separated by {sep!r}"
        )
    for column in numeric or []:
        values = pd.to_numeric(table[column], errors="coerce")
        bad = values.isna()
        if bad.any():
            row = int(bad.to_numpy().nonzero()[0][0])
            raise DataError(
                f"{path}: line {row + first_line}: field '{column}' = {table[column].iloc[row]!r}; expected a number"
            )
        table[column] = values
    return table


def _parser_message(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
    return text.replace("Error tokenizing data. C error: ", "")
