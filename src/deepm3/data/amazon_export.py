"""Write an Amazon 5-core category as the interactions TSV ``dataset=amazon_toys`` reads.

    python -m deepm3.data.amazon_export --category Toys_and_Games --drop-last 2 --out interactions.tsv
    python -m deepm3.data.amazon_export --reviews ~/Downloads/reviews_Toys_and_Games_5.json.gz --out interactions.tsv

The sparse dataset of the study is the McAuley 2014 Toys & Games 5-core with each user's last
two reviews removed (the training part of a public leave-two-out split). Users rebuild it from
the public per-category download with this command, so the study is reproducible without the
copy it was first run on (``docs/datasets.md``). The reviews are read by the same streaming
parser as ``dataset=amazon_books`` (:class:`~deepm3.data.sources.amazon.AmazonSource`); each
user's reviews are put in time order with a **stable** sort (file order for tied days, the
protocol's rule), the last ``drop_last`` are removed, users left with fewer than
``min_events`` are dropped, and the rows are written in time order (stable again) as
``user_id <tab> item_id <tab> time`` with the raw Amazon ids and unix seconds.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from deepm3.data.sources.amazon import AmazonSource
from deepm3.errors import ConfigError, DeepM3Error
from deepm3.io import write_atomic

log = logging.getLogger(__name__)

HEADER = ("user_id", "item_id", "time")


def drop_last_events(table: pd.DataFrame, drop_last: int, min_events: int) -> pd.DataFrame:
    """``table`` (``user, item, timestamp`` in file order) without each user's last ``drop_last``
    events in stable time order, keeping users with at least ``min_events`` left; rows come
    back in stable time order (ties keep file order, within a user and across users)."""
    if drop_last < 0 or min_events < 0:
        raise ConfigError(f"drop_last={drop_last}, min_events={min_events}; expected non-negative integers")
    ordered = table.reset_index(drop=True)
    ordered = ordered.assign(_row=np.arange(len(ordered))).sort_values(["user", "timestamp", "_row"], kind="stable")
    position = ordered.groupby("user", sort=False).cumcount(ascending=False)  # 0 = the user's last event
    kept = ordered[position.to_numpy() >= drop_last]
    counts = kept.groupby("user")["user"].transform("size").to_numpy()
    kept = kept[counts >= min_events]
    return kept.sort_values(["timestamp", "_row"], kind="stable").drop(columns="_row").reset_index(drop=True)


def export(source: AmazonSource, out: Path, drop_last: int = 2, min_events: int = 3) -> pd.DataFrame:
    """Read ``source``, drop the last events, write ``out`` (atomically); return the written rows."""
    table = drop_last_events(source.read(), drop_last, min_events)
    frame = pd.DataFrame({HEADER[0]: table["user"], HEADER[1]: table["item"], HEADER[2]: table["timestamp"]})
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, lambda tmp: frame.to_csv(tmp, sep="\t", index=False))
    log.info("%s: %d rows, %d users, %d items", out, len(frame), frame[HEADER[0]].nunique(), frame[HEADER[1]].nunique())
    return frame


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m deepm3.data.amazon_export", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--category",
        default="Toys_and_Games",
        help="the 2014 category file reviews_<category>_5.json.gz (default Toys_and_Games)",
    )
    parser.add_argument(
        "--reviews",
        type=Path,
        default=None,
        help="a reviews_<category>_5.json.gz already on disk (default: the data cache, downloaded there on first use)",
    )
    parser.add_argument("--drop-last", type=int, default=2, help="events removed from the end of each user (2)")
    parser.add_argument("--min-events", type=int, default=3, help="users with fewer events left are dropped (3)")
    parser.add_argument("--no-download", action="store_true", help="never touch the network")
    parser.add_argument("--out", type=Path, required=True, help="the TSV to write (e.g. interactions.tsv)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    data_dir = Path(os.environ.get("DEEPM3_DATA_DIR", "~/.cache/deepm3")).expanduser()
    raw_dir = args.reviews.expanduser().parent if args.reviews else data_dir / "raw" / "amazon"
    source = AmazonSource(
        raw_dir,
        format="2014",
        category=args.category,
        max_users=None,
        download=not args.no_download and args.reviews is None,
        filename=args.reviews.name if args.reviews else None,
    )
    try:
        frame = export(source, args.out, args.drop_last, args.min_events)
    except DeepM3Error as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    print(
        f"{args.out}: {len(frame):,} interactions, {frame[HEADER[0]].nunique():,} users, "
        f"{frame[HEADER[1]].nunique():,} items"
    )


if __name__ == "__main__":
    main()
