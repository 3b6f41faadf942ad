"""The sparse dataset of the study: ``dataset=amazon_toys`` reads the Toys & Games TSV through the
generic interactions loader, and ``python -m deepm3.data.amazon_export`` rebuilds that file from
the public 2014 5-core download. No test touches the real file (users do not have it)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from hydra.utils import instantiate

from deepm3.data.amazon_export import drop_last_events, export, main
from deepm3.data.sources.amazon import AmazonSource
from deepm3.errors import DataError, user_error
from tests.helpers.tiny_runs import compose_train

REPO = Path(__file__).resolve().parents[1]
DAY = 86_400
T0 = 1_400_000_000 // DAY * DAY

# user -> [(item, day)] in file order; ties on a day keep this order. u3 has the minimum 3 events,
# item "solo" occurs once (a 0 item-core keeps it), u1 has two events on its last day.
EVENTS = {
    "u1": [("a", 0), ("b", 1), ("c", 1), ("d", 3), ("e", 5), ("solo", 5)],
    "u2": [("b", 0), ("a", 2), ("c", 2), ("e", 4)],
    "u3": [("c", 1), ("d", 1), ("a", 7)],
}


def write_toys_tsv(path: Path) -> Path:
    """The exact format of the Toys file: tab-separated, header ``user_id item_id time``, unix
    seconds at day resolution, rows in time order."""
    rows = sorted(
        ((T0 + day * DAY, user, item) for user, events in EVENTS.items() for item, day in events),
        key=lambda row: row[0],
    )
    path.write_text("user_id\titem_id\ttime\n" + "".join(f"{u}\t{i}\t{t}\n" for t, u, i in rows))
    return path


def toys_datamodule(*overrides: str):
    cfg = compose_train(["dataset=amazon_toys", *overrides])
    datamodule = instantiate(cfg.dataset, seed=0, _convert_="all")
    datamodule.setup()
    return cfg, datamodule


def test_the_config_reads_the_file_named_by_the_environment_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEEPM3_AMAZON_TOYS", str(write_toys_tsv(tmp_path / "interactions.tsv")))
    cfg, datamodule = toys_datamodule()
    assert cfg.dataset.name == "amazon_toys" and (cfg.dataset.user_core, cfg.dataset.item_core) == (3, 0)
    stats = datamodule.data.stats
    assert (stats["users"], stats["items"], stats["interactions"]) == (3, 6, 13)  # nothing filtered away
    sequences = {
        user: [datamodule.data.item_ids[i - 1] for i in datamodule.data.items[s:e]]
        for user, s, e in zip(datamodule.data.user_ids, datamodule.data.offsets[:-1], datamodule.data.offsets[1:])
    }
    assert sequences == {user: [item for item, _ in events] for user, events in EVENTS.items()}  # ties: file order


def test_dataset_source_path_on_the_command_line_wins_over_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEEPM3_AMAZON_TOYS", str(tmp_path / "elsewhere.tsv"))
    path = write_toys_tsv(tmp_path / "toys.tsv")
    _, datamodule = toys_datamodule(f"dataset.source.path={path}")
    assert datamodule.data.stats["users"] == 3


def test_without_the_file_the_error_says_how_to_point_at_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DEEPM3_AMAZON_TOYS", raising=False)
    with pytest.raises(Exception) as info:
        toys_datamodule()
    error = user_error(info.value)
    assert isinstance(error, DataError)
    assert "DEEPM3_AMAZON_TOYS" in str(error) and "docs/datasets.md" in str(error) and "\n" not in str(error)


def test_no_packaged_file_points_at_the_development_machines_shared_folder() -> None:
    for root in (REPO / "src", REPO / "docs", REPO / "Makefile", REPO / "README.md"):
        files = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file() and p.suffix != ".pyc"]
        for path in files:
            text = path.read_text(errors="ignore")
            assert "../shared" not in text and "/work/shared" not in text, path


# -- rebuilding the file from the public download ------------------------------------------------


def write_reviews(path: Path, reviews: list[tuple[str, str, int]]) -> Path:
    """``reviews_<category>_5.json.gz`` as McAuley 2014 ships it (one JSON object per line)."""
    lines = [
        json.dumps(
            {
                "reviewerID": u,
                "asin": i,
                "reviewerName": "R",
                "helpful": [0, 0],
                "reviewText": "ok",
                "overall": 5.0,
                "summary": "s",
                "unixReviewTime": t,
                "reviewTime": "01 1, 2014",
            }
        )
        for u, i, t in reviews
    ]
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    return path


# u1: 6 reviews, the last two share a day with an earlier one; u2: 5 (keeps 3); u3: 4 (keeps 2: dropped)
REVIEWS = [
    ("u1", "a", T0),
    ("u2", "a", T0 + DAY),
    ("u1", "b", T0 + 2 * DAY),
    ("u1", "c", T0 + 2 * DAY),
    ("u3", "a", T0),
    ("u1", "d", T0 + 2 * DAY),
    ("u2", "b", T0 + 3 * DAY),
    ("u1", "e", T0 + 5 * DAY),
    ("u3", "b", T0 + DAY),
    ("u2", "c", T0 + 4 * DAY),
    ("u1", "f", T0 + 6 * DAY),
    ("u2", "d", T0 + 4 * DAY),
    ("u3", "c", T0 + 2 * DAY),
    ("u2", "e", T0 + 9 * DAY),
    ("u3", "d", T0 + 3 * DAY),
]


def test_export_drops_each_users_last_two_reviews_in_stable_time_order(tmp_path: Path) -> None:
    reviews = write_reviews(tmp_path / "reviews_Toys_and_Games_5.json.gz", REVIEWS)
    source = AmazonSource(tmp_path, category="Toys_and_Games", max_users=None, download=False)
    assert source.files() == [reviews]
    out = tmp_path / "interactions.tsv"
    export(source, out)
    lines = out.read_text().splitlines()
    assert lines[0] == "user_id\titem_id\ttime"
    rows = [line.split("\t") for line in lines[1:]]
    by_user: dict[str, list[str]] = {}
    for user, item, _ in rows:
        by_user.setdefault(user, []).append(item)
    assert by_user == {"u1": ["a", "b", "c", "d"], "u2": ["a", "b", "c"]}  # u3 kept only 2: dropped
    times = [int(t) for _, _, t in rows]
    assert times == sorted(times)


def test_the_exported_file_is_what_the_dataset_config_reads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_reviews(tmp_path / "reviews_Toys_and_Games_5.json.gz", REVIEWS)
    out = tmp_path / "toys" / "interactions.tsv"
    main(["--reviews", str(tmp_path / "reviews_Toys_and_Games_5.json.gz"), "--out", str(out)])
    monkeypatch.setenv("DEEPM3_AMAZON_TOYS", str(out))
    _, datamodule = toys_datamodule()
    assert (datamodule.data.stats["users"], datamodule.data.stats["interactions"]) == (2, 7)


def test_drop_last_keeps_file_order_among_tied_last_events() -> None:
    import pandas as pd

    table = pd.DataFrame({"user": ["x"] * 5, "item": ["p", "q", "r", "s", "t"], "timestamp": [5, 1, 5, 1, 3]})
    kept = drop_last_events(table, drop_last=2, min_events=1)
    assert kept["item"].tolist() == ["q", "s", "t"]  # time order; the two dropped are p, r (day 5, file order)
