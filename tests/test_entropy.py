"""The entropy estimator recovers known entropies and counts words like a brute-force count."""

from __future__ import annotations

import math

import numpy as np
import pytest

from deepm3.analysis.entropy import (
    HistorySymboliser,
    entropy_rate,
    entropy_under_noise,
    miller_madow_entropy,
    popularity_buckets,
    random_entropy_rate,
    select_word_length,
    word_counts,
)
from deepm3.analysis.noise import Clean, GapShuffle, PredictionInputs, TimestampDrop
from deepm3.errors import ConfigError, DataError

PHI = (1 + math.sqrt(5)) / 2
TOLERANCE = 0.01  # nats; measured errors at 20,000 symbols are below 0.005 (both measures)
LENGTH = 20_000


def golden_mean_sequence(length: int, p_one_after_zero: float, seed: int) -> np.ndarray:
    """A random walk on the golden-mean shift: a 1 is always followed by a 0."""
    coins = np.random.default_rng(seed).random(length) < p_one_after_zero
    out = np.zeros(length, dtype=np.int64)
    for i in range(1, length):
        out[i] = 0 if out[i - 1] == 1 else int(coins[i])
    return out


def brute_force_distinct(rows: list[list[int]], n: int) -> int:
    return len({tuple(row[j : j + n]) for row in rows for j in range(len(row) - n + 1)})


@pytest.mark.parametrize("k", [2, 3, 4])
def test_full_shift_on_k_symbols_has_entropy_log_k(k: int) -> None:
    symbols = np.random.default_rng(k).integers(0, k, LENGTH)
    assert entropy_rate(symbols, k).rate == pytest.approx(math.log(k), abs=TOLERANCE)


@pytest.mark.parametrize("word", [[0, 1], [0, 1, 1, 0, 2], [2, 2, 1, 0, 1, 0, 0]])
def test_periodic_sequence_has_zero_entropy(word: list[int]) -> None:
    symbols = np.tile(word, LENGTH // len(word))
    estimate = entropy_rate(symbols, 3)
    assert estimate.rate == pytest.approx(0.0, abs=1e-12)
    assert estimate.word_length >= len(word)


@pytest.mark.parametrize("p_one", [1 / PHI**2, 0.5], ids=["parry-measure", "fair-coin-after-zero"])
def test_golden_mean_shift_has_entropy_log_phi(p_one: float) -> None:
    symbols = golden_mean_sequence(LENGTH, p_one, seed=1)
    assert entropy_rate(symbols, 2).rate == pytest.approx(math.log(PHI), abs=TOLERANCE)


@pytest.mark.parametrize("k", [2, 3, 4])
def test_shannon_rate_of_a_uniform_full_shift_is_log_k(k: int) -> None:
    symbols = np.random.default_rng(k).integers(0, k, LENGTH)
    assert entropy_rate(symbols, k, measure="shannon").rate == pytest.approx(math.log(k), abs=TOLERANCE)


def test_shannon_rate_of_a_periodic_sequence_is_zero() -> None:
    assert entropy_rate(np.tile([0, 1, 1, 0, 2], 4000), 3, measure="shannon").rate == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize(
    "p_one, expected",
    [(1 / PHI**2, math.log(PHI)), (0.5, 2 / 3 * math.log(2))],
    ids=["parry-measure-attains-log-phi", "fair-coin-is-below-it"],
)
def test_shannon_rate_on_the_golden_mean_shift_depends_on_the_measure(p_one: float, expected: float) -> None:
    symbols = golden_mean_sequence(LENGTH, p_one, seed=2)
    assert entropy_rate(symbols, 2, measure="shannon").rate == pytest.approx(expected, abs=TOLERANCE)


def test_unknown_measure_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="shannon"):
        entropy_rate(np.zeros(10, dtype=int), 2, measure="renyi")


def test_miller_madow_adds_half_the_extra_categories_per_observation() -> None:
    assert miller_madow_entropy(np.array([2, 2])) == pytest.approx(math.log(2) + 1 / 8)
    assert miller_madow_entropy(np.array([], dtype=int)) == 0.0


def test_word_counts_match_a_brute_force_count_within_rows_and_valid_positions() -> None:
    rng = np.random.default_rng(0)
    symbols = rng.integers(0, 3, size=(6, 12))
    valid = np.arange(12)[None, :] >= rng.integers(0, 8, size=(6, 1))  # left padding, like histories
    rows = [list(row[mask]) for row, mask in zip(symbols, valid)]
    counts = word_counts(symbols, 3, max_length=5, valid=valid)
    assert [c.distinct for c in counts] == [brute_force_distinct(rows, n) for n in range(1, 6)]


def test_words_never_span_two_rows() -> None:
    counts = word_counts(np.array([[0, 0, 0], [1, 1, 1]]), 2, max_length=2)
    assert counts[1].distinct == 2  # 00 and 11, never 01 or 10


def test_short_data_is_flagged_as_not_well_sampled() -> None:
    symbols = np.random.default_rng(0).integers(0, 4, 30)
    assert select_word_length(symbols, 4) == (1, False)


def test_symbols_outside_the_alphabet_are_rejected() -> None:
    with pytest.raises(DataError, match="0..1"):
        entropy_rate(np.array([0, 1, 2]), 2)


def test_word_length_beyond_int64_codes_is_rejected() -> None:
    with pytest.raises(ConfigError, match="outside"):
        entropy_rate(np.zeros(100, dtype=int), 16, word_length=20)


def test_random_entropy_averages_realisations_at_one_word_length() -> None:
    rng = np.random.default_rng(0)
    realisations = [(rng.integers(0, 2, 5000), None), (np.tile([0, 1], 2500), None)]
    result = random_entropy_rate(realisations, 2, word_length=6)
    assert result.values == pytest.approx((math.log(2), 0.0), abs=1e-9) and result.well_sampled
    assert result.mean == pytest.approx(math.log(2) / 2)
    assert result.std == pytest.approx(math.log(2) / math.sqrt(2))


def _regular_histories(users: int = 200, length: int = 40, seed: int = 0) -> PredictionInputs:
    """Each user alternates a 1-minute and a 1-day gap: a periodic rhythm (entropy 0)."""
    rng = np.random.default_rng(seed)
    gaps = np.tile([60, 86_400], length // 2)
    times = 1_000_000 + np.concatenate([[0], np.cumsum(gaps)])  # length + 1 stamps: history + query
    times = np.tile(times, (users, 1))
    items = rng.integers(1, 50, size=(users, length))
    return PredictionInputs(items, times[:, :-1], times[:, 1:], num_items=50)


def test_symboliser_maps_ties_to_zero_and_positive_gaps_to_quantile_bins() -> None:
    times = np.array([[0, 0, 10, 20, 120, 1120]])
    inputs = PredictionInputs(np.array([[0, 1, 2, 3, 4, 5]]), times, np.array([[0, 10, 20, 120, 1120, 1121]]), 5)
    symboliser = HistorySymboliser.fit(inputs, gap_bins=3)  # one tie symbol + 2 bins split at the median
    symbols, valid = symboliser(inputs)
    # gaps of the history: 10, 10, 100, 1000, 1; median of positive gaps = 10
    assert valid.tolist() == [[False, True, True, True, True, True]]
    assert symbols[0, 1:].tolist() == [2, 2, 2, 2, 1]
    tied_times, tied_next = np.array([[0, 0, 0, 20, 20, 1120]]), np.array([[0, 0, 20, 20, 1120, 1121]])
    tied = PredictionInputs(inputs.items, tied_times, tied_next, 5)
    assert symboliser(tied)[0][0, 1:].tolist() == [0, 2, 0, 2, 1]  # gaps 0, 20, 0, 1100, 1


def test_popularity_buckets_hold_equal_interaction_mass_and_unseen_items_go_last() -> None:
    items = np.array([1] * 4 + [2] * 2 + [3] * 2)  # item 4 never seen
    assert popularity_buckets(items, num_items=4, buckets=2).tolist() == [1, 0, 1, 1, 1]


def test_joint_channel_combines_item_and_gap_symbols() -> None:
    inputs = _regular_histories()
    gaps_only = HistorySymboliser.fit(inputs, channel="gaps")
    joint = HistorySymboliser.fit(inputs, channel="joint", item_bins=3)
    gap_symbols, _ = gaps_only(inputs)
    joint_symbols, valid = joint(inputs)
    assert joint.alphabet_size == gaps_only.alphabet_size * 3
    assert np.array_equal(joint_symbols[valid] % gaps_only.alphabet_size, gap_symbols[valid])


@pytest.mark.parametrize("measure", ["topological", "shannon"])
def test_clean_regular_histories_have_zero_entropy_and_shuffling_raises_it(measure: str) -> None:
    clean = _regular_histories()
    symboliser = HistorySymboliser.fit(clean)
    symbols, valid = symboliser(clean)
    word_length, well_sampled = select_word_length(symbols, symboliser.alphabet_size, valid)
    assert well_sampled
    n = min(word_length, 6)
    assert entropy_under_noise(clean, Clean(), symboliser, [0, 1], n, measure).mean == pytest.approx(0.0, abs=1e-3)
    shuffled = entropy_under_noise(clean, GapShuffle(1.0), symboliser, [0, 1, 2], n, measure)
    assert shuffled.mean > 0.3 and len(shuffled.values) == 3


def test_dropping_every_gap_leaves_a_single_symbol_and_zero_entropy() -> None:
    clean = _regular_histories()
    symboliser = HistorySymboliser.fit(clean)
    assert entropy_under_noise(clean, TimestampDrop(1.0), symboliser, [0], 3).mean == 0.0
