"""docs/protocol.md, "Data and split": leave-one-out samples, left padding, training windows, gap CV.

Every event in these sequences has its own item index, consecutive within a user, so an
item index says exactly which event of which user it is (the event after item k is k + 1).
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from deepm3.data.samples import eval_samples, train_samples, training_gap_cv
from tests.helpers.spine_fixtures import processed

MAX_LEN = 4


def time_of(item: int) -> int:
    """Distinct, increasing timestamps with uneven gaps (item k happens at 1000 + 10 k^2)."""
    return 1000 + 10 * item * item


def user(first: int, count: int) -> list[tuple[int, int]]:
    return [(item, time_of(item)) for item in range(first, first + count)]


# long: 9 events (training prefix 1..7), min: 3 events (prefix 14 only), short: 4 events.
SEQUENCES = {"long": user(1, 9), "min": user(14, 3), "short": user(10, 4)}
DATA = processed(SEQUENCES)
USERS = DATA.user_ids.tolist()


def events_of(name: str) -> list[int]:
    return [item for item, _ in SEQUENCES[name]]


def real_pairs(samples) -> list[tuple[int, int]]:
    """(input item, target) at every position that has a target."""
    mask = samples.targets > 0
    return list(zip(samples.items[mask].tolist(), samples.targets[mask].tolist()))


@pytest.mark.parametrize("split, from_end", [("test", 1), ("val", 2)])
def test_eval_target_is_the_last_or_second_to_last_event(split, from_end):
    samples = eval_samples(DATA, split, MAX_LEN)
    assert samples.targets[:, -1].tolist() == [events_of(u)[-from_end] for u in USERS]
    assert (samples.targets[:, :-1] == 0).all()
    assert samples.users.tolist() == list(range(len(USERS)))


@pytest.mark.parametrize("split, from_end", [("test", 1), ("val", 2)])
def test_eval_inputs_are_the_most_recent_events_before_the_target(split, from_end):
    samples = eval_samples(DATA, split, MAX_LEN)
    for row, name in enumerate(USERS):
        before = events_of(name)[:-from_end][-MAX_LEN:]
        assert samples.items[row][samples.items[row] > 0].tolist() == before


def test_training_windows_never_contain_validation_or_test_events():
    for windows in ("all", "last", "sliding"):
        samples = train_samples(DATA, MAX_LEN, windows)
        seen = set(samples.items[samples.items > 0].tolist()) | set(samples.targets[samples.targets > 0].tolist())
        held_out = {item for name in USERS for item in events_of(name)[-2:]}
        assert seen, "the fixture has training transitions"
        assert not seen & held_out


@pytest.mark.parametrize("windows", ["all", "last", "sliding"])
def test_training_target_at_each_position_is_the_event_after_that_input(windows):
    samples = train_samples(DATA, MAX_LEN, windows)
    mask = samples.targets > 0
    np.testing.assert_array_equal(samples.targets[mask], samples.items[mask] + 1)


@pytest.mark.parametrize("windows", ["all", "last", "sliding"])
def test_no_training_target_appears_at_or_before_its_own_position(windows):
    samples = train_samples(DATA, MAX_LEN, windows)
    for items, targets in zip(samples.items, samples.targets):
        for i in np.flatnonzero(targets):
            assert targets[i] not in items[: i + 1]


@pytest.mark.parametrize("split", ["val", "test"])
def test_no_eval_target_appears_in_its_input_window_or_history(split):
    samples = eval_samples(DATA, split, MAX_LEN)
    for row in range(len(samples)):
        target = samples.targets[row, -1]
        history = samples.history_items[samples.history_offsets[row] : samples.history_offsets[row + 1]]
        assert target not in samples.items[row]
        assert target not in history
        assert samples.items[row, -1] + 1 == target


def test_training_times_and_next_times_are_the_input_and_target_timestamps():
    samples = train_samples(DATA, MAX_LEN, "all")
    mask = samples.targets > 0
    np.testing.assert_array_equal(samples.times[mask], [time_of(i) for i in samples.items[mask]])
    np.testing.assert_array_equal(samples.next_times[mask], [time_of(i) for i in samples.targets[mask]])


@pytest.mark.parametrize("split", ["val", "test"])
def test_eval_query_time_is_the_target_timestamp(split):
    samples = eval_samples(DATA, split, MAX_LEN)
    np.testing.assert_array_equal(samples.next_times[:, -1], [time_of(t) for t in samples.targets[:, -1]])
    inner = samples.items[:, :-1] > 0
    np.testing.assert_array_equal(samples.next_times[:, :-1][inner], samples.times[:, 1:][inner])


def test_short_windows_are_padded_on_the_left_in_every_array():
    samples = eval_samples(DATA, "test", MAX_LEN)
    row = USERS.index("min")  # history 14, 15 -> target 16
    assert samples.items[row].tolist() == [0, 0, 14, 15]
    assert samples.times[row].tolist() == [0, 0, time_of(14), time_of(15)]
    assert samples.next_times[row].tolist() == [0, 0, time_of(15), time_of(16)]
    assert samples.targets[row].tolist() == [0, 0, 0, 16]
    train = train_samples(DATA, MAX_LEN, "all")
    row = train.users.tolist().index(USERS.index("short"))  # prefix 10, 11 -> one transition
    assert train.items[row].tolist() == [0, 0, 0, 10]
    assert train.times[row].tolist() == [0, 0, 0, time_of(10)]
    assert train.next_times[row].tolist() == [0, 0, 0, time_of(11)]
    assert train.targets[row].tolist() == [0, 0, 0, 11]


def test_all_windows_cover_every_training_transition_exactly_once():
    samples = train_samples(DATA, MAX_LEN, "all")
    expected = []
    for name in USERS:
        prefix = events_of(name)[:-2]
        expected += list(zip(prefix[:-1], prefix[1:]))
    assert len(events_of("long")) - 3 > MAX_LEN, "the long user needs more than one window"
    assert Counter(real_pairs(samples)) == Counter(expected)
    assert len(real_pairs(samples)) == len(expected)


def test_all_windows_end_at_the_most_recent_training_event_first():
    samples = train_samples(DATA, MAX_LEN, "all")
    long_rows = np.flatnonzero(samples.users == USERS.index("long"))
    assert samples.targets[long_rows[0]].tolist() == [4, 5, 6, 7]
    assert samples.targets[long_rows[1]].tolist() == [0, 0, 2, 3]


def test_last_window_keeps_only_the_most_recent_max_len_transitions():
    samples = train_samples(DATA, MAX_LEN, "last")
    assert sorted(samples.users.tolist()) == sorted([USERS.index("long"), USERS.index("short")])
    assert sorted(real_pairs(samples)) == [(3, 4), (4, 5), (5, 6), (6, 7), (10, 11)]


@pytest.mark.parametrize("stride", [1, 2, 3, MAX_LEN])
def test_sliding_windows_cover_every_training_transition_exactly_once(stride):
    expected = []
    for name in USERS:
        prefix = events_of(name)[:-2]
        expected += list(zip(prefix[:-1], prefix[1:]))
    pairs = real_pairs(train_samples(DATA, MAX_LEN, "sliding", stride))
    assert Counter(pairs) == Counter(expected)
    assert len(pairs) == len(expected)


def test_sliding_stride_one_trains_each_target_on_its_full_max_len_context():
    samples = train_samples(DATA, MAX_LEN, "sliding", 1)
    long_rows = np.flatnonzero(samples.users == USERS.index("long"))  # prefix 1..7, transitions 1->2 .. 6->7
    assert samples.items[long_rows].tolist() == [
        [3, 4, 5, 6],
        [2, 3, 4, 5],
        [1, 2, 3, 4],
        [0, 1, 2, 3],
        [0, 0, 1, 2],
        [0, 0, 0, 1],
    ]
    assert samples.targets[long_rows].tolist() == [
        [0, 0, 0, 7],
        [0, 0, 0, 6],
        [0, 0, 0, 5],
        [0, 0, 0, 4],
        [0, 0, 0, 3],
        [0, 0, 0, 2],
    ]


def test_sliding_stride_two_keeps_targets_on_the_last_two_positions_only():
    samples = train_samples(DATA, MAX_LEN, "sliding", 2)
    long_rows = np.flatnonzero(samples.users == USERS.index("long"))
    assert samples.targets[long_rows].tolist() == [[0, 0, 6, 7], [0, 0, 4, 5], [0, 0, 2, 3]]


def test_sliding_stride_equal_to_max_len_is_the_all_tiling():
    sliding, tiled = train_samples(DATA, MAX_LEN, "sliding", MAX_LEN), train_samples(DATA, MAX_LEN, "all")
    for name in ("items", "times", "next_times", "targets", "users"):
        np.testing.assert_array_equal(getattr(sliding, name), getattr(tiled, name))


@pytest.mark.parametrize("stride", [0, MAX_LEN + 1])
def test_sliding_stride_outside_one_to_max_len_is_rejected(stride):
    with pytest.raises(ValueError, match="stride"):
        train_samples(DATA, MAX_LEN, "sliding", stride)


def test_unknown_window_mode_is_rejected():
    with pytest.raises(ValueError, match="windows"):
        train_samples(DATA, MAX_LEN, "random")


@pytest.mark.parametrize("split, from_end", [("test", 1), ("val", 2)])
def test_history_holds_every_earlier_event_not_just_the_window(split, from_end):
    samples = eval_samples(DATA, split, MAX_LEN)
    for row, name in enumerate(USERS):
        history = samples.history_items[samples.history_offsets[row] : samples.history_offsets[row + 1]]
        assert history.tolist() == events_of(name)[:-from_end]
    row = USERS.index("long")
    assert samples.history_offsets[row + 1] - samples.history_offsets[row] > MAX_LEN


def gap_cv_data(times_by_user: dict[str, list[int]]):
    sequences, next_item = {}, 1
    for name, times in times_by_user.items():
        sequences[name] = [(next_item + k, t) for k, t in enumerate(times)]
        next_item += len(times)
    return processed(sequences)


def test_gap_cv_is_std_over_mean_of_training_gaps_only():
    # Training gaps 10, 20, 30; the huge gaps to the validation and test events must not count.
    data = gap_cv_data({"a": [0, 10, 30, 60, 10_000, 1_000_000]})
    gaps = np.array([10.0, 20.0, 30.0])
    assert training_gap_cv(data)[0] == pytest.approx(gaps.std() / gaps.mean())  # population std


def test_gap_cv_is_nan_when_undefined():
    data = gap_cv_data(
        {
            "one_gap": [0, 5, 100, 200],  # training prefix 0, 5: a single gap
            "all_ties": [7, 7, 7, 50, 90],  # training gaps 0, 0: zero mean
            "defined": [0, 1, 3, 50, 90],  # training gaps 1, 2
        }
    )
    cv = dict(zip(data.user_ids.tolist(), training_gap_cv(data).tolist()))
    assert np.isnan(cv["one_gap"])
    assert np.isnan(cv["all_ties"])
    assert cv["defined"] == pytest.approx(np.std([1.0, 2.0]) / 1.5)
