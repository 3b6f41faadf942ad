"""Raw dataset files written in their exact published formats, for the source tests.

Every writer takes interaction rows ``(user, item, rating, unix_seconds)`` in *file order*
and writes them the way the real file does (separators, encodings, headers, JSON keys,
compression, time units), so a parser that passes here reads the real download.
``expected_sequences`` is the slow obvious reference for the stable time sort (docs/protocol.md, "Data and split").
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import random
import zipfile
from pathlib import Path

Row = tuple[str, str, float, int]
DAY = 86_400


def interaction_rows(
    users: int = 40,
    items: int = 30,
    events: tuple[int, int] = (6, 12),
    seed: int = 0,
    day_resolution: bool = False,
    user_prefix: str = "u",
    item_prefix: str = "i",
) -> list[Row]:
    """Rows with tied timestamps, grouped by item as Amazon files are, in an item order that is
    neither time order nor id order (so tie-breaking by item id would be caught).

    ``day_resolution`` rounds times to whole days like Amazon's ``unixReviewTime``.
    """
    rng = random.Random(seed)
    rows: list[Row] = []
    for u in range(users):
        t = 1_000_000_000 + rng.randrange(0, 300 * DAY)
        for item in rng.sample(range(1, items + 1), min(items, rng.randint(*events))):
            rows.append(
                (
                    f"{user_prefix}{u + 1}",
                    f"{item_prefix}{item}",
                    float(rng.randint(1, 5)),
                    (t // DAY) * DAY if day_resolution else t,
                )
            )
            t += rng.choice([0, 0, 60, 3_600, DAY, 9 * DAY])
    shuffled = rng.sample(sorted({row[1] for row in rows}), len({row[1] for row in rows}))
    position = {item: k for k, item in enumerate(shuffled)}
    rows.sort(key=lambda row: position[row[1]])  # stable: each user's events of one item keep their order
    return rows


def expected_sequences(rows: list[Row], ms: bool = False) -> dict[str, list[tuple[str, int]]]:
    """``{user: [(item, seconds), ...]}``: file order, then a stable sort on time (never on item)."""
    out: dict[str, list[tuple[str, int]]] = {}
    for user, item, _, t in rows:
        out.setdefault(user, []).append((item, t // 1000 if ms else t))
    return {u: sorted(events, key=lambda e: e[1]) for u, events in out.items()}


# --- MovieLens-1M: ml-1m/ratings.dat, "UserID::MovieID::Rating::Timestamp", latin-1 -------------

ML1M_MOVIES = "1::Toy Story (1995)::Animation|Children's|Comedy\n3045::Misérables, Les (1995)::Drama|Musical\n"


def ml1m_ratings_text(rows: list[Row]) -> str:
    return "".join(f"{u}::{i}::{int(r)}::{t}\n" for u, i, r, t in rows)


def write_ml1m(folder: Path, rows: list[Row]) -> Path:
    """The extracted GroupLens layout: ``folder/ml-1m/{ratings,movies}.dat`` (latin-1)."""
    root = Path(folder) / "ml-1m"
    root.mkdir(parents=True, exist_ok=True)
    (root / "ratings.dat").write_bytes(ml1m_ratings_text(rows).encode("latin-1"))
    (root / "movies.dat").write_bytes(ML1M_MOVIES.encode("latin-1"))
    return root / "ratings.dat"


def ml1m_zip_bytes(rows: list[Row]) -> bytes:
    """``ml-1m.zip`` as GroupLens ships it: a top-level ``ml-1m/`` folder."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("ml-1m/ratings.dat", ml1m_ratings_text(rows).encode("latin-1"))
        zf.writestr("ml-1m/movies.dat", ML1M_MOVIES.encode("latin-1"))
        zf.writestr("ml-1m/README", "SUMMARY\n")
    return buffer.getvalue()


# --- Amazon 2014 / 2018: one JSON object per line, gzip ------------------------------------------

TRICKY_TEXT = 'He wrote "asin": "0000000000", "overall": 1.0 -- and \u00e9l\u00e8ve \u2603\nnewline inside'


def amazon_record(row: Row, fmt: str) -> dict:
    """A review with every key the published file has, in the published key order."""
    user, item, rating, t = row
    day = _review_time(t)
    if fmt == "2014":
        return {
            "reviewerID": user,
            "asin": item,
            "reviewerName": "J. Reader",
            "helpful": [2, 3],
            "reviewText": TRICKY_TEXT,
            "overall": rating,
            "summary": "Good {read}",
            "unixReviewTime": t,
            "reviewTime": day,
        }
    return {
        "overall": rating,
        "verified": True,
        "reviewTime": day,
        "reviewerID": user,
        "asin": item,
        "style": {"Format:": " Paperback"},
        "reviewerName": "J. Reader",
        "reviewText": TRICKY_TEXT,
        "summary": "Good {read}",
        "unixReviewTime": t,
        "vote": "3",
    }


def amazon_json_lines(rows: list[Row], fmt: str) -> list[str]:
    return [json.dumps(amazon_record(row, fmt)) for row in rows]


def write_amazon_json(path: Path, rows: list[Row], fmt: str = "2014", lines: list[str] | None = None) -> Path:
    """``reviews_Books_5.json.gz`` (2014) / ``Books_5.json.gz`` (2018); ``lines`` overrides the content."""
    text = "\n".join(lines if lines is not None else amazon_json_lines(rows, fmt)) + "\n"
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_bytes(gzip.compress(text.encode("utf-8")))
    return Path(path)


def _review_time(t: int) -> str:
    import datetime as dt

    d = dt.datetime.fromtimestamp(t, dt.timezone.utc)
    return f"{d.month:02d} {d.day}, {d.year}"


# --- Amazon 2023: 5-core CSV "user_id,parent_asin,rating,timestamp" with milliseconds ------------


def write_amazon_2023(path: Path, rows: list[Row], extra_ms: int = 123, compress: bool = True) -> Path:
    """``Books.csv.gz`` from the 2023 benchmark: timestamps in **milliseconds**."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["user_id", "parent_asin", "rating", "timestamp"])
    for user, item, rating, t in rows:
        writer.writerow([user, item, rating, t * 1000 + extra_ms])
    data = buffer.getvalue().encode()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_bytes(gzip.compress(data) if compress else data)
    return Path(path)


# --- User files: RecBole atomic .inter and plain CSV/TSV -------------------------------------------


def write_recbole_inter(path: Path, rows: list[Row]) -> Path:
    """RecBole atomic file: tab-separated, typed header ``name:type``, float timestamps."""
    lines = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    lines += [f"{u}\t{i}\t{r}\t{float(t)}" for u, i, r, t in rows]
    Path(path).write_text("\n".join(lines) + "\n")
    return Path(path)


def write_csv(
    path: Path,
    rows: list[Row],
    sep: str = ",",
    columns: tuple[str, str, str, str] = ("user_id", "item_id", "rating", "timestamp"),
    iso: bool = False,
) -> Path:
    """A plain delimited file with a header; ``iso`` writes ISO 8601 UTC dates instead of seconds."""
    import datetime as dt

    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=sep, lineterminator="\n")
    writer.writerow(columns)
    for u, i, r, t in rows:
        when = dt.datetime.fromtimestamp(t, dt.timezone.utc).isoformat().replace("+00:00", "Z") if iso else t
        writer.writerow([u, i, r, when])
    Path(path).write_text(buffer.getvalue())
    return Path(path)
