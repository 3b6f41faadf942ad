"""docs/protocol.md, "Data and split": filtering, stable time order, item re-indexing, saved mappings."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from deepm3.data.preprocess import PreprocessConfig, build_sequences, k_core
from deepm3.data.processed import ProcessedData
from deepm3.errors import DataError
from tests.helpers.spine_fixtures import table

NO_CORE = PreprocessConfig(user_core=0, item_core=0)


def sequences_by_raw_id(data: ProcessedData) -> dict[str, list[tuple[str, int]]]:
    """``{user: [(raw item id, timestamp), ...]}`` read back through the saved mappings."""
    out = {}
    for u, user in enumerate(data.user_ids):
        start, end = data.offsets[u], data.offsets[u + 1]
        out[str(user)] = [
            (str(data.item_ids[i - 1]), int(t)) for i, t in zip(data.items[start:end], data.times[start:end])
        ]
    return out


def test_k_core_repeats_until_nothing_changes():
    # One 2-core pass only removes the row (C, z). That leaves user C with one event; dropping it
    # leaves item "w" with one user, then user D with one event, then item "v", then user E:
    # a chain of removals, each visible only after the previous one.
    rows = [
        ("A", "x", 1),
        ("A", "y", 2),
        ("B", "x", 1),
        ("B", "y", 2),
        ("C", "z", 1),
        ("C", "w", 2),
        ("D", "w", 1),
        ("D", "v", 2),
        ("E", "v", 1),
        ("E", "x", 2),
    ]
    filtered, passes = k_core(table(rows), user_core=2, item_core=2)
    assert set(map(tuple, filtered[["user", "item"]].to_numpy())) == {("A", "x"), ("A", "y"), ("B", "x"), ("B", "y")}
    assert passes >= 4


def test_k_core_result_is_a_fixpoint_of_the_filter():
    rng = np.random.default_rng(3)
    rows = [(f"u{rng.integers(40)}", f"i{rng.zipf(1.6) % 60}", t) for t in range(600)]
    filtered, _ = k_core(table(rows), user_core=5, item_core=5)
    assert len(filtered) > 0
    assert filtered.groupby("user").size().min() >= 5
    assert filtered.groupby("item").size().min() >= 5


def test_k_core_keeps_file_order_of_the_surviving_rows():
    rows = [("A", "x", 5), ("B", "x", 1), ("A", "y", 9), ("B", "y", 2), ("C", "q", 0)]
    filtered, _ = k_core(table(rows), user_core=2, item_core=2)
    assert filtered["timestamp"].tolist() == [5, 1, 9, 2]


def test_equal_timestamps_keep_file_order_not_item_id_order():
    # User "a": the tie at t=10 is listed b-then-a in the file (item-id order would be a, b).
    # User "b": the tie is listed in ascending id order, so a descending-id tie-break fails too.
    # Rows of the two users are interleaved and the earliest event comes last in the file.
    rows = [
        ("a", "b", 10),
        ("b", "x", 7),
        ("a", "a", 10),
        ("b", "y", 7),
        ("a", "c", 5),
        ("b", "w", 3),
        ("a", "d", 10),
    ]
    data = build_sequences(table(rows), NO_CORE)
    assert sequences_by_raw_id(data) == {
        "a": [("c", 5), ("b", 10), ("a", 10), ("d", 10)],
        "b": [("w", 3), ("x", 7), ("y", 7)],
    }


def test_items_are_indexed_one_to_n_and_zero_is_never_used():
    rows = [("u", f"item{k}", k) for k in (5, 3, 9, 1)] + [("v", "item3", 2), ("v", "item9", 4), ("v", "item7", 6)]
    data = build_sequences(table(rows), NO_CORE)
    assert data.num_items == 5
    assert sorted(set(data.items.tolist())) == [1, 2, 3, 4, 5]
    assert 0 not in data.items


def test_mapping_serves_back_every_raw_event():
    rows = [("u1", "007", 3), ("u1", "7", 1), ("u1", "NA", 2), ("u2", "null", 8), ("u2", "7", 9), ("u2", "007", 9)]
    data = build_sequences(table(rows), NO_CORE)
    assert sequences_by_raw_id(data) == {
        "u1": [("7", 1), ("NA", 2), ("007", 3)],
        "u2": [("null", 8), ("7", 9), ("007", 9)],
    }


def test_processed_data_round_trips_through_save_and_load(tmp_path):
    rows = [("u1", "007", 3), ("u1", "7", 1), ("u1", "NA", 2), ("u2", "null", 8), ("u2", "7", 9), ("u2", "", 10)]
    data = build_sequences(table(rows), NO_CORE)
    data.save(tmp_path / "p")
    loaded = ProcessedData.load(tmp_path / "p")
    for name in ("offsets", "items", "times"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(data, name))
        assert getattr(loaded, name).dtype == np.int64
    assert loaded.item_ids.tolist() == data.item_ids.tolist()
    assert loaded.user_ids.tolist() == data.user_ids.tolist()
    assert loaded.stats == data.stats
    assert sequences_by_raw_id(loaded) == sequences_by_raw_id(data)


def test_saved_item_map_lists_index_and_raw_id(tmp_path):
    data = build_sequences(table([("u", "b", 1), ("u", "a", 2), ("u", "c", 3)]), NO_CORE)
    data.save(tmp_path)
    item_map = pd.read_csv(tmp_path / "item_map.csv", dtype={"raw_id": str})
    assert item_map["index"].tolist() == [1, 2, 3]
    assert [data.item_ids[i - 1] for i in item_map["index"]] == item_map["raw_id"].tolist()


def test_users_with_fewer_than_three_events_are_dropped_and_counted():
    rows = [("keep", "a", 1), ("keep", "b", 2), ("keep", "c", 3), ("two", "a", 1), ("two", "b", 2), ("one", "c", 5)]
    data = build_sequences(table(rows), NO_CORE)
    assert data.user_ids.tolist() == ["keep"]
    assert data.stats["users_dropped_short"] == 2
    assert data.stats["users"] == 1
    assert data.stats["interactions"] == 3
    assert data.stats["raw_interactions"] == 6


def test_min_rating_keeps_ratings_at_or_above_the_threshold():
    rows = [("u", "a", 1, 5.0), ("u", "b", 2, 3.0), ("u", "c", 3, 4.0), ("u", "d", 4, 3.5), ("u", "e", 5, 4.5)]
    data = build_sequences(
        table(rows, ("user", "item", "timestamp", "rating")), PreprocessConfig(user_core=0, item_core=0, min_rating=4.0)
    )
    assert [raw for raw, _ in sequences_by_raw_id(data)["u"]] == ["a", "c", "e"]


def test_without_min_rating_every_rating_counts():
    rows = [("u", "a", 1, 1.0), ("u", "b", 2, 0.0), ("u", "c", 3, 5.0)]
    data = build_sequences(table(rows, ("user", "item", "timestamp", "rating")), NO_CORE)
    assert data.stats["interactions"] == 3


def test_min_rating_without_a_rating_column_is_a_data_error():
    with pytest.raises(DataError, match="rating"):
        build_sequences(
            table([("u", "a", 1), ("u", "b", 2), ("u", "c", 3)]),
            PreprocessConfig(user_core=0, item_core=0, min_rating=3),
        )


def test_nothing_left_after_filtering_is_one_line_data_error():
    rows = [("u", "a", 1), ("u", "b", 2), ("v", "a", 3)]
    with pytest.raises(DataError) as info:
        build_sequences(table(rows), PreprocessConfig(user_core=5, item_core=5), source="my-dataset")
    message = str(info.value)
    assert "\n" not in message
    assert "my-dataset" in message
    assert "user_core=5" in message
