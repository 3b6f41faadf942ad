"""Bring your own data: any CSV / TSV / Parquet interactions file, or a RecBole atomic ``.inter`` file.

``columns`` maps the protocol's fields (``user``, ``item``, ``timestamp``, optional
``rating``) to the file's column names; ``timestamp_unit`` says how the file writes time
(``s``, ``ms`` or ``iso`` dates). RecBole atomic files are read directly: their typed
header (``user_id:token  item_id:token  rating:float  timestamp:float``) gives the column
names, and their float timestamps are read as exact integers (never through float32, which
reorders events: RecBole #2204).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from deepm3.data.preprocess import choose_users
from deepm3.data.schema import validate_interactions
from deepm3.data.sources.base import InteractionSource
from deepm3.data.sources.fields import check_filled, check_not_null, check_unit, to_ratings, to_unix_seconds
from deepm3.errors import ConfigError, DataError

FIELDS = ("user", "item", "timestamp", "rating")
DEFAULT_COLUMNS = {"user": "user_id", "item": "item_id", "timestamp": "timestamp", "rating": None}
SEPARATORS = {".csv": ",", ".tsv": "\t", ".tab": "\t", ".inter": "\t"}
RECBOLE_TYPES = ("token", "token_seq", "float", "float_seq")


class InteractionsFileSource(InteractionSource):
    """One interactions file; every option that changes the table is part of the cache key."""

    name = "interactions"

    def __init__(
        self,
        path: str | Path,
        columns: dict[str, str | None] | None = None,
        sep: str | None = None,
        timestamp_unit: str = "s",
        encoding: str = "utf-8",
        max_users: int | None = None,
        seed: int = 0,
        name: str | None = None,
    ) -> None:
        if path in (None, ""):
            raise ConfigError("dataset.source.path is not set; expected the interactions file to read")
        self.path = Path(path).expanduser()
        self.columns = _column_map(columns)
        self.kind = _file_kind(self.path)
        self.sep = sep if sep is not None else _default_sep(self.path, self.kind)
        self.timestamp_unit = check_unit(timestamp_unit)
        self.encoding = encoding
        if max_users is not None and (isinstance(max_users, bool) or not isinstance(max_users, int) or max_users < 1):
            raise ConfigError(f"max_users={max_users!r}; expected a positive integer or null (keep every user)")
        self.max_users = max_users
        self.seed = seed
        self.name = name or self.path.name.split(".")[0] or "interactions"

    def files(self) -> list[Path]:
        if not self.path.is_file():
            raise DataError(f"{self.path}: file not found; expected an interactions file (set dataset.source.path)")
        return [self.path]

    def read(self) -> pd.DataFrame:
        path = self.files()[0]
        wanted = {field: column for field, column in self.columns.items() if column is not None}
        if self.kind == "parquet":
            raw, first_line = _read_parquet(path, self.columns), None
            check_not_null(raw, list(wanted.values()), str(path))
            _check_no_empty_ids(raw, [wanted["user"], wanted["item"]], path)
        else:
            raw, first_line = self._read_text(path), 2  # line 1 is the header
            check_filled(raw, list(wanted.values()), str(path), first_line)
        table = pd.DataFrame({"user": raw[wanted["user"]], "item": raw[wanted["item"]]})
        table["timestamp"] = _timestamps(
            raw[wanted["timestamp"]], self.timestamp_unit, path, wanted["timestamp"], first_line
        )
        if "rating" in wanted:
            table["rating"] = to_ratings(raw[wanted["rating"]], str(path), wanted["rating"], first_line)
        if self.max_users is not None:
            uniques, inverse = np.unique(table["user"].astype(str).to_numpy(), return_inverse=True)
            table = table[choose_users(uniques, self.max_users, self.seed)[inverse]]
        return validate_interactions(table, str(path))

    def _read_text(self, path: Path) -> pd.DataFrame:
        header = _header(path, self.sep, self.encoding, recbole=self.kind == "inter")
        _check_columns(self.columns, header, path)
        try:
            table = pd.read_csv(
                path,
                sep=self.sep,
                header=None,
                names=header,
                skiprows=1,
                dtype=str,
                keep_default_na=False,
                encoding=self.encoding,
                on_bad_lines="error",
                engine="c" if len(self.sep) == 1 else "python",
                quoting=csv.QUOTE_NONE if self.kind == "inter" else csv.QUOTE_MINIMAL,
            )
        except pd.errors.ParserError as exc:
            message = str(exc).strip().splitlines()[-1].replace("Error tokenizing data. C error: ", "")
            raise DataError(
                f"{path}: {message}; expected the {len(header)} fields of the header {header} separated by {self.sep!r}"
            ) from None
        except (UnicodeDecodeError, OSError, EOFError) as exc:
            raise DataError(f"{path}: unreadable ({exc}); expected a {self.encoding} text file") from None
        return table

    def params(self) -> dict[str, Any]:
        return {
            "columns": self.columns,
            "sep": self.sep,
            "timestamp_unit": self.timestamp_unit,
            "encoding": self.encoding,
            "max_users": self.max_users,
            "seed": self.seed,
        }


def _column_map(columns: dict[str, str | None] | None) -> dict[str, str | None]:
    given = dict(columns or {})
    unknown = sorted(set(given) - set(FIELDS))
    if unknown:
        raise ConfigError(
            f"columns: unknown key(s) {unknown}; expected keys {list(FIELDS)} mapping to the file's column names"
        )
    mapping = {**DEFAULT_COLUMNS, **given}
    for field in ("user", "item", "timestamp"):
        if not mapping[field]:
            raise ConfigError(f"columns.{field} is empty; expected the name of the file's {field} column")
    return mapping


def _file_kind(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes if s.lower() not in (".gz", ".bz2", ".zip", ".xz", ".zst")]
    last = suffixes[-1] if suffixes else ""
    if last in (".parquet", ".pq"):
        return "parquet"
    return "inter" if last == ".inter" else "text"


def _default_sep(path: Path, kind: str) -> str | None:
    if kind == "parquet":
        return None
    for suffix in reversed([s.lower() for s in path.suffixes]):
        if suffix in SEPARATORS:
            return SEPARATORS[suffix]
    if not path.is_file():  # a typo in the path is the likelier problem than the separator
        raise DataError(f"{path}: file not found; expected an interactions file (set dataset.source.path)")
    raise ConfigError(
        f"{path}: cannot tell the separator from the file name; set dataset.source.sep (e.g. ',' or '\\t')"
    )


def _header(path: Path, sep: str, encoding: str, recbole: bool) -> list[str]:
    """Column names from the first line; a RecBole header's ``:type`` suffixes are checked and dropped."""
    try:
        names = list(
            pd.read_csv(
                path,
                sep=sep,
                nrows=0,
                encoding=encoding,
                engine="c" if len(sep) == 1 else "python",
                quoting=csv.QUOTE_NONE if recbole else csv.QUOTE_MINIMAL,
            ).columns
        )
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: empty file; expected a header line and one interaction per line") from None
    except (UnicodeDecodeError, OSError, EOFError) as exc:
        raise DataError(f"{path}: unreadable ({exc}); expected a {encoding} text file") from None
    if not recbole:
        return names
    plain = []
    for name in names:
        base, _, kind = name.rpartition(":")
        if not base or kind not in RECBOLE_TYPES:
            raise DataError(
                f"{path}: line 1: header field {name!r}; "
                f"expected RecBole 'name:type' with type in {list(RECBOLE_TYPES)}"
            )
        plain.append(base)
    return plain


def _check_columns(columns: dict[str, str | None], available: list[str], path: Path) -> None:
    for field, column in columns.items():
        if column is not None and column not in available:
            raise ConfigError(f"{path}: columns.{field}={column!r} is not a column of the file; available: {available}")


def _read_parquet(path: Path, columns: dict[str, str | None]) -> pd.DataFrame:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ConfigError(f"{path}: reading Parquet needs pyarrow; pip install 'deepm3[parquet]'") from None
    try:
        available = pq.ParquetFile(path).schema_arrow.names
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise DataError(f"{path}: not a readable Parquet file ({exc})") from None
    _check_columns(columns, available, path)
    schema = pq.ParquetFile(path).schema_arrow
    for field, column in columns.items():
        if column is not None:
            _check_parquet_type(field, column, schema.field(column).type, path)
    wanted = sorted({c for c in columns.values() if c is not None})
    return pd.read_parquet(path, columns=wanted)


def _check_no_empty_ids(table: pd.DataFrame, columns: list[str], path: Path) -> None:
    """An empty-string id in Parquet is refused as an empty CSV field is: one rule for both."""
    for column in columns:
        empty = (table[column].astype(str) == "").to_numpy()
        if empty.any():
            row = int(np.flatnonzero(empty)[0])
            raise DataError(f"{path}: row {row}: field '{column}' is empty (\"\"); expected a value in {columns}")


def _check_parquet_type(field: str, column: str, kind: Any, path: Path) -> None:
    """Refuse a column whose type would be turned into something else silently.

    Ids must be strings or integers (dictionary-encoded too); they are read as their text.
    Timestamps: integers, floats (whole numbers only, checked per row), strings, or dates
    (with ``timestamp_unit=iso``). Ratings: numbers. A float id (``1.0``), a boolean time
    or a list is an error naming the column, never converted.
    """
    import pyarrow.types as pt

    value = kind.value_type if pt.is_dictionary(kind) else kind
    text = pt.is_string(value) or pt.is_large_string(value) or getattr(pt, "is_string_view", lambda _: False)(value)
    if field in ("user", "item"):
        ok, expected = text or pt.is_integer(value), "string or integer ids"
    elif field == "timestamp":
        ok = text or pt.is_integer(value) or pt.is_floating(value) or pt.is_timestamp(value) or pt.is_date(value)
        expected = "integer unix times (or ISO 8601 strings / dates with timestamp_unit=iso)"
    else:
        ok, expected = pt.is_integer(value) or pt.is_floating(value) or pt.is_decimal(value), "numbers"
    if not ok:
        raise DataError(
            f"{path}: column '{column}' holds {kind} values; expected {expected} "
            f"for the {field} field (cast the column when writing the file)"
        )


def _timestamps(values: pd.Series, unit: str, path: Path, column: str, first_line: int | None) -> np.ndarray:
    if pd.api.types.is_datetime64_any_dtype(values.dtype) and unit != "iso":
        raise ConfigError(f"{path}: column '{column}' holds dates; set timestamp_unit=iso")
    return to_unix_seconds(values, unit, str(path), column, first_line)
