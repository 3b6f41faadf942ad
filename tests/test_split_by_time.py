"""docs/protocol.md, "Split by time": cuts in time, a target per later event, none trained after the cut."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from deepm3.data.preprocess import TEST, TRAIN, VAL, PreprocessConfig, build_sequences
from deepm3.data.processed import ProcessedData
from deepm3.data.samples import eval_samples, train_samples, training_gap_cv, training_item_counts
from deepm3.errors import ConfigError, DataError

BY_TIME = PreprocessConfig(user_core=0, item_core=0, split="time", val_share=0.25, test_share=0.25)


def interactions(rows: list[tuple[str, str, int]], test: list[bool] | None = None) -> pd.DataFrame:
    table = pd.DataFrame(rows, columns=["user", "item", "timestamp"])
    return table if test is None else table.assign(test=test)


# times 1..12 over two users: the validation cut falls at t=7, the test cut at t=10 (3 of 12 events each)
ROWS = [
    ("a", "x", 1),
    ("a", "y", 3),
    ("a", "x", 5),
    ("a", "x", 8),
    ("a", "z", 10),
    ("a", "y", 12),
    ("b", "y", 2),
    ("b", "x", 4),
    ("b", "x", 6),
    ("b", "y", 7),
    ("b", "w", 9),
    ("b", "x", 11),
]


@pytest.fixture
def data() -> ProcessedData:
    return build_sequences(interactions(ROWS), BY_TIME)


def raw(data: ProcessedData, index: int) -> str:
    return str(data.item_ids[index - 1])


def test_events_at_or_after_a_cut_belong_to_the_later_part(data):
    assert data.stats["val_from"] == 7 and data.stats["test_from"] == 10
    by_time = dict(zip(data.times.tolist(), data.split_codes.tolist()))
    assert [by_time[t] for t in range(1, 13)] == [TRAIN] * 6 + [VAL] * 3 + [TEST] * 3


def test_each_sequence_is_a_training_prefix_then_validation_then_test(data):
    train_end, val_end = data.split_bounds()
    assert (train_end - data.offsets[:-1]).tolist() == [3, 3]
    assert (val_end - train_end).tolist() == [1, 2]


def test_leave_one_out_bounds_are_the_last_two_events():
    data = build_sequences(interactions(ROWS), PreprocessConfig(user_core=0, item_core=0))
    train_end, val_end = data.split_bounds()
    assert data.split_codes is None
    assert (train_end - data.offsets[:-1]).tolist() == [4, 4]
    assert (val_end - data.offsets[:-1]).tolist() == [5, 5]


def test_nothing_after_the_validation_cut_is_a_training_target_or_input(data):
    samples = train_samples(data, max_len=10)
    trained = samples.next_times[samples.targets > 0]
    assert trained.max() < 7
    assert samples.times[samples.items > 0].max() < 7


def test_every_later_event_is_a_target_asked_with_its_whole_past(data):
    test = eval_samples(data, "test", max_len=10)
    # a: z at 10 (never in training: left out), y at 12; b: x at 11
    assert sorted(zip(test.users.tolist(), test.positions.tolist())) == [(0, 5), (1, 5)]
    row = int(np.flatnonzero(test.users == 0)[0])
    assert [raw(data, i) for i in test.items[row] if i] == ["x", "y", "x", "x", "z"]  # validation + earlier test events
    assert test.next_times[row, -1] == 12
    assert raw(data, test.targets[row, -1]) == "y"
    assert test.dropped == {"no_history": 0, "unseen_item": 1}


def test_items_first_seen_after_the_training_cut_are_counted_and_not_targets(data):
    val = eval_samples(data, "val", max_len=10)
    targets = {raw(data, t) for t in val.targets[:, -1]}
    assert "w" not in targets  # b's w at 9 is new
    assert val.dropped["unseen_item"] == 1
    assert training_item_counts(data)[1:].sum() == 6  # only the six training events are counted


def test_a_sequence_first_event_is_no_target():
    rows = [("a", "x", 1), ("a", "y", 2), ("a", "x", 3), ("b", "x", 9), ("b", "y", 10)]
    data = build_sequences(
        interactions(rows), PreprocessConfig(user_core=0, item_core=0, split="time", test_share=0.4, val_share=0.2)
    )
    test = eval_samples(data, "test", max_len=5)
    assert test.dropped["no_history"] == 1
    assert test.users.tolist() == [1]


def test_history_of_a_target_lists_distinct_earlier_items(data):
    test = eval_samples(data, "test", max_len=2)
    row = int(np.flatnonzero(test.users == 0)[0])
    start, end = test.history_offsets[row], test.history_offsets[row + 1]
    assert sorted(raw(data, i) for i in test.history_items[start:end]) == ["x", "y", "z"]
    assert test.history_sizes()[row] == 5  # events before it, beyond the window of 2


def test_training_gap_cv_reads_only_training_gaps(data):
    cv = training_gap_cv(data)
    gaps = np.diff([1, 3, 5])  # user a's training events
    assert cv[0] == pytest.approx(gaps.std() / gaps.mean())


def test_given_split_takes_the_sources_test_events_and_cuts_validation_from_the_rest():
    rows = [("s1", "x", 1), ("s1", "y", 2), ("s2", "x", 3), ("s2", "y", 4), ("s3", "x", 5), ("s3", "y", 6)]
    config = PreprocessConfig(user_core=0, item_core=0, split="given", val_share=0.25)
    data = build_sequences(interactions(rows, test=[False, False, False, False, True, True]), config)
    assert data.split_codes.tolist() == [TRAIN, TRAIN, TRAIN, VAL, TEST, TEST]
    test = eval_samples(data, "test", max_len=5)
    assert test.users.tolist() == [2] and test.dropped["no_history"] == 1  # each click after a session's first


def test_given_split_without_test_events_is_a_one_line_error():
    config = PreprocessConfig(user_core=0, item_core=0, split="given")
    with pytest.raises(DataError, match="marks no test events"):
        build_sequences(interactions(ROWS), config)


def test_given_split_refuses_a_training_event_after_a_test_event():
    rows = [("a", "x", 1), ("a", "y", 2), ("a", "x", 3)]
    config = PreprocessConfig(user_core=0, item_core=0, split="given")
    with pytest.raises(DataError, match="user 'a' has a training event after one of its test events"):
        build_sequences(interactions(rows, test=[False, True, False]), config)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"split": "random"}, "dataset.split='random'"),
        ({"split": "time", "val_share": 0.0}, "dataset.val_share=0.0"),
        ({"split": "time", "val_share": 0.6, "test_share": 0.5}, "expected < 1"),
    ],
)
def test_bad_split_settings_are_one_line_config_errors(options, message):
    with pytest.raises(ConfigError, match=message):
        PreprocessConfig(**options)


def test_leave_one_out_cache_key_is_unchanged_by_the_split_options():
    assert PreprocessConfig().as_dict() == {"user_core": 5, "item_core": 5, "min_rating": None}


def test_split_codes_survive_a_save_and_load(data, tmp_path):
    data.save(tmp_path / "d")
    loaded = ProcessedData.load(tmp_path / "d")
    assert loaded.split_codes.tolist() == data.split_codes.tolist()
    assert ProcessedData.load(tmp_path / "d").by_time


def test_a_targets_gap_cv_measures_the_gaps_before_it(data):
    test = eval_samples(data, "test", max_len=10)
    row = int(np.flatnonzero(test.users == 0)[0])
    gaps = np.diff([1, 3, 5, 8, 10])  # user a's events before its target at 12
    assert test.gap_cv[row] == pytest.approx(gaps.std() / gaps.mean())


def test_a_run_split_by_time_writes_one_row_per_target_event_and_the_per_sequence_view(tmp_path):
    from tests.helpers.tiny_runs import tiny_run

    out = tmp_path / "run"
    metrics = tiny_run(out, tmp_path / "data", "model=gru4rec", "dataset.split=time", "dataset.user_core=0")
    rows = pd.read_csv(out / "test_users.csv", dtype={"user": str, "sequence": str})
    assert metrics["protocol"]["split"] == "time"
    assert len(rows) == metrics["data"]["test_targets"] > metrics["data"]["users"] / 2
    assert rows["user"].is_unique and (rows["user"].str.split("/").str[0] == rows["sequence"]).all()
    assert metrics["test"]["ndcg@10"] == pytest.approx(rows["ndcg@10"].mean(), rel=1e-5)
    per_sequence = rows.groupby("sequence")["ndcg@10"].mean().mean()
    assert metrics["test_per_sequence"]["ndcg@10"] == pytest.approx(per_sequence, rel=1e-6)
