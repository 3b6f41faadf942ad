"""Amazon reviews 5-core: 2014 / 2018 JSON lines (gzip) and the 2023 benchmark CSV, streamed.

The raw files are large (Books: 8.9M reviews in 2014, 27M in 2018), so they are never held
in memory whole. Lines are parsed one at a time into compact integer codes -- each distinct
reviewer / product id string is stored once, in a dict -- and only then is a seeded sample
of ``max_users`` users drawn (before any filtering, as the reference pipeline does; the
k-core filter then runs to a fixpoint on the sample in the shared preprocessing). Only the
sampled users' rows become a table, in file order (ties keep that order: docs/protocol.md, "Data and split").
"""

from __future__ import annotations

import gzip
import json
import zlib
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from deepm3.data.download import ensure_file
from deepm3.data.preprocess import choose_users
from deepm3.data.schema import validate_interactions
from deepm3.data.sources.base import InteractionSource
from deepm3.data.sources.fields import check_filled, to_ratings, to_unix_seconds
from deepm3.errors import ConfigError, DataError

CSV_CHUNK_ROWS = 1_000_000


@dataclass(frozen=True)
class AmazonFormat:
    """Where one release lives and how its records name the four fields we read."""

    filename: str  # ``{category}`` is filled in
    url: str
    kind: str  # "json": one object per line, gzip | "csv": header + rows, gzip or plain
    user: str
    item: str
    rating: str
    timestamp: str
    time_unit: str  # "s" | "ms"


FORMATS = {
    "2014": AmazonFormat(
        "reviews_{category}_5.json.gz",
        "http://snap.stanford.edu/data/amazon/productGraph/categoryFiles/reviews_{category}_5.json.gz",
        "json",
        "reviewerID",
        "asin",
        "overall",
        "unixReviewTime",
        "s",
    ),
    "2018": AmazonFormat(
        "{category}_5.json.gz",
        "https://mcauleylab.ucsd.edu/public_datasets/data/amazon_v2/categoryFilesSmall/{category}_5.json.gz",
        "json",
        "reviewerID",
        "asin",
        "overall",
        "unixReviewTime",
        "s",
    ),
    "2023": AmazonFormat(
        "{category}.csv.gz",
        "https://mcauleylab.ucsd.edu/public_datasets/data/amazon_2023/benchmark/5core/rating_only/{category}.csv.gz",
        "csv",
        "user_id",
        "parent_asin",
        "rating",
        "timestamp",
        "ms",
    ),
}


class AmazonSource(InteractionSource):
    """One Amazon category's 5-core reviews, subsampled to ``max_users`` users with ``seed``.

    ``filename``/``url`` override the release's defaults (e.g. the uncompressed
    ``Books.csv`` from the Hugging Face copy of the 2023 benchmark). No checksum is
    published for these files, so none is checked unless ``checksum`` is given.
    """

    name = "amazon"

    def __init__(
        self,
        raw_dir: str | Path,
        format: str | int = "2014",
        category: str = "Books",
        max_users: int | None = 50_000,
        seed: int = 0,
        download: bool = True,
        filename: str | None = None,
        url: str | None = None,
        checksum: str | None = None,
    ) -> None:
        key = str(format)
        if key not in FORMATS:
            raise ConfigError(f"format={format!r}; expected one of {sorted(FORMATS)}")
        if max_users is not None and (isinstance(max_users, bool) or not isinstance(max_users, int) or max_users < 1):
            raise ConfigError(f"max_users={max_users!r}; expected a positive integer or null (keep every user)")
        self.format = FORMATS[key]
        self.release = key
        self.category = category
        self.raw_dir = Path(raw_dir).expanduser()
        self.max_users = max_users
        self.seed = seed
        self.download = download
        self.filename = filename or self.format.filename.format(category=category)
        self.url = url or self.format.url.format(category=category)
        self.checksum = checksum
        self.name = f"amazon_{category.lower()}_{key}"

    def files(self) -> list[Path]:
        path = self.raw_dir / self.filename
        if not path.exists() and not self.download:
            raise DataError(
                f"{path}: not found and download=false; "
                f"download {self.url} and put '{self.filename}' in {self.raw_dir}/"
            )
        return [ensure_file(path, self.url, self.checksum)]

    def read(self) -> pd.DataFrame:
        path = self.files()[0]
        codes = InteractionCodes()
        if self.format.kind == "json":
            scan_json_lines(path, self.format, codes)
        else:
            scan_csv(path, self.format, codes)
        return validate_interactions(codes.table(self.max_users, self.seed, str(path)), str(path))

    def params(self) -> dict[str, Any]:
        return {
            "format": self.release,
            "category": self.category,
            "max_users": self.max_users,
            "seed": self.seed,
            "filename": self.filename,
        }


class InteractionCodes:
    """Interactions as parallel compact arrays; every distinct id string is kept once."""

    def __init__(self) -> None:
        self.users: dict[str, int] = {}
        self.items: dict[str, int] = {}
        self.user_codes = array("i")
        self.item_codes = array("i")
        self.times = array("q")
        self.ratings = array("f")

    def add_chunk(self, users: pd.Series, items: pd.Series, times: np.ndarray, ratings: np.ndarray) -> None:
        """Append a chunk of rows (ids as strings); codes follow the order of first appearance."""
        for values, index, out in ((users, self.users, self.user_codes), (items, self.items, self.item_codes)):
            chunk_codes, uniques = pd.factorize(values)
            lookup = np.fromiter(
                (index.setdefault(v, len(index)) for v in uniques.tolist()), dtype=np.int32, count=len(uniques)
            )
            out.frombytes(lookup[chunk_codes].tobytes())
        self.times.frombytes(np.ascontiguousarray(times, dtype=np.int64).tobytes())
        self.ratings.frombytes(np.ascontiguousarray(ratings, dtype=np.float32).tobytes())

    def __len__(self) -> int:
        return len(self.user_codes)

    def table(self, max_users: int | None, seed: int, source: str) -> pd.DataFrame:
        """The sampled users' rows in file order as ``user, item, timestamp, rating``."""
        if not len(self):
            raise DataError(f"{source}: no reviews found; expected one review per line")
        user_names = np.array(list(self.users), dtype=object)
        item_names = np.array(list(self.items), dtype=object)
        user_codes = np.frombuffer(self.user_codes, dtype=np.int32)
        rows = choose_users(user_names, max_users, seed)[user_codes]
        return pd.DataFrame(
            {
                "user": user_names[user_codes[rows]],
                "item": item_names[np.frombuffer(self.item_codes, dtype=np.int32)[rows]],
                "timestamp": np.frombuffer(self.times, dtype=np.int64)[rows],
                "rating": np.frombuffer(self.ratings, dtype=np.float32)[rows],
            }
        )


def scan_json_lines(path: Path, fmt: AmazonFormat, codes: InteractionCodes) -> None:
    """Stream a gzip JSON-lines file into ``codes``; any bad line is a one-line DataError.

    The loop body is the whole cost for millions of lines, so well-formed reviews take a
    short path and only a suspect line goes through :func:`_checked_fields`.
    """
    users, items, user_out, item_out = codes.users, codes.items, codes.user_codes, codes.item_codes
    times, ratings, loads = codes.times, codes.ratings, json.loads
    keys = user_key, item_key, rating_key, time_key = fmt.user, fmt.item, fmt.rating, fmt.timestamp
    line_no = 0
    try:
        with gzip.open(path, "rb") as handle:
            for line_no, line in enumerate(handle, start=1):
                try:
                    record = loads(line)
                    user, item, rating, stamp = record[user_key], record[item_key], record[rating_key], record[time_key]
                except (ValueError, KeyError, TypeError):
                    if line.isspace():
                        continue
                    user, item, rating, stamp = _checked_fields(line, keys, path, line_no)
                if (
                    type(stamp) is not int
                    or stamp < 0
                    or type(user) is not str
                    or type(item) is not str
                    or rating != rating
                ):
                    user, item, rating, stamp = _checked_fields(line, keys, path, line_no)
                code = users.get(user)
                if code is None:
                    code = users[user] = len(users)
                user_out.append(code)
                code = items.get(item)
                if code is None:
                    code = items[item] = len(items)
                item_out.append(code)
                times.append(stamp)
                ratings.append(rating)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(
            f"{path}: truncated or corrupt gzip after line {line_no} ({exc}); delete it and download again"
        ) from None
    except TypeError:  # a rating that is not a number reaches ratings.append
        _checked_fields(line, keys, path, line_no)
        raise


def _checked_fields(
    line: bytes, keys: tuple[str, str, str, str], path: Path, line_no: int
) -> tuple[str, str, float, int]:
    """Parse one line strictly: return its fields (integral float times made int) or raise naming the problem."""
    user_key, item_key, rating_key, time_key = keys
    try:
        record = json.loads(line)
        user, item, rating, stamp = record[user_key], record[item_key], record[rating_key], record[time_key]
    except ValueError as exc:
        raise DataError(
            f"{path}: line {line_no}: not valid JSON ({exc}); expected one review object per line"
        ) from None
    except KeyError as exc:
        raise DataError(f"{path}: line {line_no}: field {exc.args[0]!r} missing; expected keys {list(keys)}") from None
    except TypeError:
        raise DataError(f"{path}: line {line_no}: not a JSON object; expected one review object per line") from None
    if type(stamp) is not int:  # noqa: E721 (bool is an int subclass and is not a time)
        if not (isinstance(stamp, float) and stamp.is_integer()):
            raise DataError(
                f"{path}: line {line_no}: field '{time_key}' = {stamp!r}; "
                "expected a non-negative integer number of unix seconds"
            )
        stamp = int(stamp)
    if stamp < 0:
        raise DataError(
            f"{path}: line {line_no}: field '{time_key}' = {stamp!r}; "
            "expected a non-negative integer number of unix seconds"
        )
    if isinstance(rating, bool) or not isinstance(rating, (int, float)) or rating != rating:
        raise DataError(f"{path}: line {line_no}: field '{rating_key}' = {rating!r}; expected a number")
    if not isinstance(user, str) or not isinstance(item, str):
        raise DataError(
            f"{path}: line {line_no}: fields '{user_key}'/'{item_key}' = {user!r}/{item!r}; expected strings"
        )
    return user, item, float(rating), stamp


def scan_csv(path: Path, fmt: AmazonFormat, codes: InteractionCodes) -> None:
    """Stream the 2023 benchmark CSV (gzip or plain) into ``codes`` in chunks of rows."""
    columns = [fmt.user, fmt.item, fmt.rating, fmt.timestamp]
    line = 2  # file line of the current chunk's first row (line 1 is the header)
    try:
        chunks = pd.read_csv(path, dtype=str, keep_default_na=False, chunksize=CSV_CHUNK_ROWS, on_bad_lines="error")
        for chunk in chunks:
            missing = [c for c in columns if c not in chunk.columns]
            if missing:
                raise DataError(f"{path}: header {list(chunk.columns)} lacks {missing}; expected columns {columns}")
            check_filled(chunk, columns, str(path), line)
            stamps = to_unix_seconds(chunk[fmt.timestamp], fmt.time_unit, str(path), fmt.timestamp, line)
            ratings = to_ratings(chunk[fmt.rating], str(path), fmt.rating, line)
            codes.add_chunk(chunk[fmt.user], chunk[fmt.item], stamps, ratings)
            line += len(chunk)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: empty file; expected a header {columns} and one review per line") from None
    except pd.errors.ParserError as exc:
        raise DataError(
            f"{path}: {str(exc).strip().splitlines()[-1]}; expected the {len(columns)} fields {columns}"
        ) from None
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as exc:
        raise DataError(
            f"{path}: truncated or unreadable after line {line} ({exc}); delete it and download again"
        ) from None
