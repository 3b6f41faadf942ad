"""Benchmark: stream an Amazon-2014-format file of N reviews through the dataset pipeline.

    python benchmarks/amazon_stream.py --reviews 2000000

Writes ``reviews_Books_5.json.gz`` (records shaped like the real 2014 5-core file: every
key, ~1 kB review texts, day-resolution times, rows grouped by product) into ``--workdir``
once, then processes it in a fresh child process -- stream parse, seeded sample of
``--max-users`` users, 5-core to a fixpoint, sequences, cache write -- and reports the
child's wall time per phase and its peak resident memory (the bar: < 3 GB and < 3 min on
2 cores for 2,000,000 reviews). Generation is not part of the measurement.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DAY = 86_400
WORDS = (
    "the book story read author characters great series loved plot really good first one would "
    "written well time end life new way little never ever much page writing world fun enjoyed"
).split()


def generate(path: Path, reviews: int, seed: int = 0) -> None:
    """A 5-core-like review file: ~15 reviews per user, Zipf-like product popularity."""
    rng = np.random.default_rng(seed)
    users = max(1, reviews // 15)
    per_user = 5 + rng.geometric(1 / 10, size=users)
    per_user = per_user[: np.searchsorted(np.cumsum(per_user), reviews) + 1]
    user_of = np.repeat(np.arange(len(per_user)), per_user)[:reviews]
    items = max(5, reviews // 24)
    popularity = 1.0 / np.arange(1, items + 1) ** 0.8
    item_of = rng.choice(items, size=len(user_of), p=popularity / popularity.sum())
    day_of = rng.integers(11_000, 16_200, size=len(user_of))  # 2000 .. 2014, day resolution
    order = np.argsort(item_of, kind="stable")  # the real files are grouped by product
    text = " ".join(rng.choice(WORDS, size=400_000))
    starts = rng.integers(0, len(text) - 2_000, size=len(user_of))
    lengths = rng.integers(200, 1_800, size=len(user_of))
    tmp = path.with_name(path.name + ".tmp")
    with gzip.open(tmp, "wt", compresslevel=1, encoding="utf-8") as out:
        for row in order:
            record = {
                "reviewerID": f"A{user_of[row]:013X}",
                "asin": f"{item_of[row]:010d}",
                "reviewerName": "A Reader",
                "helpful": [int(row % 7), int(row % 7) + 1],
                "reviewText": text[starts[row] : starts[row] + lengths[row]],
                "overall": float(1 + row % 5),
                "summary": "A good read",
                "unixReviewTime": int(day_of[row]) * DAY,
                "reviewTime": "01 1, 2014",
            }
            out.write(json.dumps(record) + "\n")
    os.replace(tmp, path)


def process(path: Path, max_users: int | None) -> dict:
    """Run in a fresh process: the pipeline phases, timed, and this process's peak RSS."""
    from deepm3.data.preprocess import PreprocessConfig, build_sequences
    from deepm3.data.sources.amazon import AmazonSource

    start = time.perf_counter()
    source = AmazonSource(path.parent, format="2014", max_users=max_users, seed=0, download=False)
    table = source.read()
    parsed = time.perf_counter()
    data = build_sequences(table, PreprocessConfig(user_core=5, item_core=5), source=source.name)
    built = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        data.save(Path(folder))
    saved = time.perf_counter()
    return {
        "sampled_interactions": int(len(table)),
        "users": data.num_users,
        "items": data.num_items,
        "interactions": int(len(data.items)),
        "k_core_passes": data.stats["k_core_passes"],
        "parse_and_sample_s": round(parsed - start, 1),
        "k_core_and_sequences_s": round(built - parsed, 1),
        "save_s": round(saved - built, 1),
        "total_s": round(saved - start, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reviews", type=int, default=2_000_000)
    parser.add_argument("--max-users", type=int, default=50_000, help="0 = keep every user")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "deepm3-amazon-bench")
    parser.add_argument("--process", type=Path, help=argparse.SUPPRESS)  # internal: the measured child
    args = parser.parse_args()
    max_users = args.max_users or None
    if args.process:
        print(json.dumps(process(args.process, max_users)))
        return
    path = args.workdir / f"{args.reviews}" / "reviews_Books_5.json.gz"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        generate(path, args.reviews)
        print(f"generated {path} ({path.stat().st_size / 2**20:.0f} MiB gzip) in {time.perf_counter() - start:.0f} s")
    child = subprocess.run(
        [sys.executable, __file__, "--process", str(path), "--max-users", str(args.max_users)],
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(child.stdout.strip().splitlines()[-1])
    print(json.dumps({"reviews": args.reviews, "max_users": max_users, "cpus": os.cpu_count(), **result}, indent=2))


if __name__ == "__main__":
    main()
