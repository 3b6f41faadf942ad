"""Each noise operator perturbs only the history, keeps the arrays consistent and is seeded."""

from __future__ import annotations

import dataclasses
import re
from itertools import permutations

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from omegaconf import OmegaConf

from deepm3.analysis.noise import (
    NOISE_OPERATORS,
    Clean,
    GapShuffle,
    ItemDropout,
    ItemReplacement,
    NoiseOperator,
    NoiseSweep,
    PredictionInputs,
    TimestampDrop,
    TimestampJitter,
    make_noise,
    permute_within_rows,
    perturb_samples,
)
from deepm3.data.samples import SampleArrays
from deepm3.errors import ConfigError
from tests.helpers.config import CONF_DIR

NUM_ITEMS = 50


def hand_made() -> PredictionInputs:
    """Row 0: 4 events + 2 padding; row 1: full; row 2: one event. Query times 1000, 90, 7."""
    items = np.array([[0, 0, 5, 6, 7, 8], [1, 2, 3, 4, 5, 6], [0, 0, 0, 0, 0, 9]])
    times = np.array([[0, 0, 100, 200, 400, 700], [10, 10, 20, 40, 40, 80], [0, 0, 0, 0, 0, 5]])
    next_times = np.array([[0, 0, 200, 400, 700, 1000], [10, 20, 40, 40, 80, 90], [0, 0, 0, 0, 0, 7]])
    return PredictionInputs(items, times, next_times, NUM_ITEMS)


def random_inputs(rows: int = 400, width: int = 30, seed: int = 0) -> PredictionInputs:
    """Left-padded histories with random lengths, ~20% tied timestamps and a later query time."""
    rng = np.random.default_rng(seed)
    gaps = rng.exponential(3600.0, size=(rows, width + 1)).astype(np.int64) * (rng.random((rows, width + 1)) > 0.2)
    stamps = 1_600_000_000 + np.cumsum(gaps, axis=1)
    history = np.arange(width)[None, :] >= rng.integers(0, width - 1, size=(rows, 1))
    items = np.where(history, rng.integers(1, NUM_ITEMS + 1, size=(rows, width)), 0)
    times = np.where(history, stamps[:, :-1], 0)
    next_times = np.where(history, stamps[:, 1:], 0)
    return PredictionInputs(items, times, next_times, NUM_ITEMS)


OPERATORS = [
    Clean(),
    TimestampJitter(1.0),
    TimestampDrop(0.5),
    GapShuffle(1.0),
    ItemDropout(0.5),
    ItemReplacement(0.5),
]


def assert_consistent(noisy: PredictionInputs, clean: PredictionInputs) -> None:
    history = noisy.history
    assert np.array_equal(noisy.query_times, clean.query_times), "the query time moved"
    assert not (history & ~clean.history).any(), "padding became history"
    assert (noisy.times[~history] == 0).all() and (noisy.next_times[~history] == 0).all()
    assert (noisy.gaps() >= 0).all(), "time runs backwards"
    inside = history[:, :-1]
    assert np.array_equal(noisy.next_times[:, :-1][inside], noisy.times[:, 1:][inside]), "next_times != next time"
    # left padding: history is a suffix of every row
    assert (np.diff(history.astype(int), axis=1) >= 0).all()


@pytest.mark.parametrize("operator", OPERATORS, ids=lambda op: op.name)
@pytest.mark.parametrize("make_inputs", [hand_made, random_inputs], ids=["hand-made", "random"])
def test_operator_keeps_query_time_padding_and_consistency(operator: NoiseOperator, make_inputs) -> None:
    clean = make_inputs()
    for seed in range(3):
        assert_consistent(operator(clean, seed), clean)


@pytest.mark.parametrize("operator", OPERATORS[1:], ids=lambda op: op.name)
def test_operator_is_deterministic_per_seed_and_leaves_its_input_alone(operator: NoiseOperator) -> None:
    clean = random_inputs()
    before = dataclasses.replace(
        clean, items=clean.items.copy(), times=clean.times.copy(), next_times=clean.next_times.copy()
    )
    first, again, other = operator(clean, 7), operator(clean, 7), operator(clean, 8)
    arrays = ("items", "times", "next_times")
    assert all(np.array_equal(getattr(first, a), getattr(again, a)) for a in arrays)
    assert not all(np.array_equal(getattr(first, a), getattr(other, a)) for a in arrays)
    assert all(np.array_equal(getattr(clean, a), getattr(before, a)) for a in arrays)


@pytest.mark.parametrize("name", sorted(set(NOISE_OPERATORS) - {"clean"}))
def test_level_zero_is_the_identity(name: str) -> None:
    clean = random_inputs()
    noisy = make_noise(name, 0.0)(clean, 3)
    for array in ("items", "times", "next_times"):
        assert np.array_equal(getattr(noisy, array), getattr(clean, array))


def test_jitter_keeps_items_and_chronological_order_but_moves_times() -> None:
    clean = random_inputs()
    noisy = TimestampJitter(0.5)(clean, 0)
    assert np.array_equal(noisy.items, clean.items)
    history = clean.history
    assert (np.diff(np.where(history, noisy.times, -1), axis=1) >= 0).all()
    assert (noisy.times[history] != clean.times[history]).mean() > 0.5


def test_jitter_scale_follows_the_users_mean_gap() -> None:
    clean = random_inputs()
    history = clean.history
    rows = np.arange(len(history))
    mean_gap = (clean.query_times - clean.times[rows, history.argmax(axis=1)]) / history.sum(axis=1)
    moved = np.abs(TimestampJitter(0.1)(clean, 0).times - clean.times)[history]
    ratio = moved.mean() / np.repeat(mean_gap, history.sum(axis=1)).mean()
    assert 0.02 < ratio < 0.2  # E|N(0, 0.1^2)| = 0.08; sorting and clipping shrink it a little


def test_drop_everything_sets_every_gap_to_zero_at_the_query_time() -> None:
    clean = hand_made()
    noisy = TimestampDrop(1.0)(clean, 0)
    assert (noisy.gaps() == 0).all()
    assert np.array_equal(noisy.times[clean.history], np.repeat(clean.query_times, clean.history.sum(1)))


def test_drop_zeroes_about_the_requested_fraction_and_keeps_other_gaps() -> None:
    clean = random_inputs()
    before, after = clean.gaps()[clean.history], TimestampDrop(0.3)(clean, 0).gaps()[clean.history]
    assert ((after == 0) | (after == before)).all()
    positive = before > 0
    assert (after[positive] == 0).mean() == pytest.approx(0.3, abs=0.03)


def test_shuffle_keeps_the_multiset_of_gaps_and_the_first_timestamp() -> None:
    clean = random_inputs()
    noisy = GapShuffle(1.0)(clean, 0)
    assert np.array_equal(np.sort(noisy.gaps(), axis=1), np.sort(clean.gaps(), axis=1))
    first = clean.history.argmax(axis=1)
    rows = np.arange(len(first))
    assert np.array_equal(noisy.times[rows, first], clean.times[rows, first])
    assert (noisy.gaps() != clean.gaps()).any(axis=1).mean() > 0.8


def test_partial_shuffle_moves_only_some_gaps() -> None:
    clean = random_inputs()
    changed = lambda level: (GapShuffle(level)(clean, 0).gaps() != clean.gaps())[clean.history].mean()  # noqa: E731
    assert 0 < changed(0.25) < changed(1.0)


def test_permute_within_rows_leaves_unchosen_entries_and_draws_every_permutation() -> None:
    values = np.array([[10, 20, 30, 40]])
    chosen = np.array([[True, False, True, True]])
    seen = set()
    for seed in range(60):
        out = permute_within_rows(values, chosen, np.random.default_rng(seed))
        assert out[0, 1] == 20
        seen.add(tuple(out[0, [0, 2, 3]]))
    assert seen == set(permutations([10, 30, 40]))


def test_item_dropout_keeps_a_subsequence_with_its_timestamps() -> None:
    clean = random_inputs()
    noisy = ItemDropout(0.5)(clean, 0)
    for row in range(len(clean.items)):
        before, after = clean.history[row], noisy.history[row]
        original = iter(zip(clean.items[row][before], clean.times[row][before]))
        assert all(event in original for event in zip(noisy.items[row][after], noisy.times[row][after]))
    assert 1 - noisy.history.sum() / clean.history.sum() == pytest.approx(0.5, abs=0.05)


def test_item_dropout_keeps_the_most_recent_event_when_everything_would_go() -> None:
    clean = hand_made()
    noisy = ItemDropout(1.0)(clean, 0)
    assert noisy.history.sum(axis=1).tolist() == [1, 1, 1]
    assert noisy.items[:, -1].tolist() == clean.items[:, -1].tolist()
    assert noisy.times[:, -1].tolist() == clean.times[:, -1].tolist()


def test_perturbed_samples_keep_targets_users_and_true_history() -> None:
    clean = hand_made()
    targets = np.zeros_like(clean.items)
    targets[:, -1] = [11, 12, 13]
    samples = SampleArrays(
        clean.items,
        clean.times,
        clean.next_times,
        targets,
        np.arange(3),
        history_offsets=np.array([0, 4, 10, 11]),
        history_items=np.arange(1, 12),
    )
    for operator in OPERATORS:
        noisy = perturb_samples(samples, operator, seed=0, num_items=NUM_ITEMS)
        assert noisy.targets is samples.targets and noisy.users is samples.users
        assert noisy.history_items is samples.history_items


def test_item_replacement_changes_about_the_requested_fraction_and_no_timestamps() -> None:
    clean = random_inputs()
    noisy = ItemReplacement(0.25)(clean, 0)
    history = clean.history
    changed = (noisy.items != clean.items)[history].mean()
    assert changed == pytest.approx(0.25 * (1 - 1 / NUM_ITEMS), abs=0.03)
    assert noisy.items[history].min() >= 1 and noisy.items[history].max() <= NUM_ITEMS
    assert np.array_equal(noisy.times, clean.times) and np.array_equal(noisy.next_times, clean.next_times)


@pytest.mark.parametrize("name, level", [("jitter", -0.1), ("drop", 1.5), ("clean", 0.5)])
def test_out_of_range_levels_are_config_errors(name: str, level: float) -> None:
    with pytest.raises(ConfigError, match=name):
        make_noise(name, level)


def test_unknown_noise_names_list_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="item_replace"):
        NoiseSweep("blur", [0.1])


@pytest.mark.parametrize("name", sorted(NOISE_OPERATORS))
def test_each_noise_config_instantiates_a_sweep_of_its_operator(name: str) -> None:
    sweep = instantiate(OmegaConf.load(CONF_DIR / "noise" / f"{name}.yaml"))
    assert isinstance(sweep, NoiseSweep) and sweep.name == name
    operators = sweep.operators()
    assert all(isinstance(op, NOISE_OPERATORS[name]) for op in operators)
    assert len(operators) >= (1 if name == "clean" else 3)


def test_noise_group_is_selectable_from_the_train_config() -> None:
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        default = compose(config_name="train")
        cfg = compose(config_name="train", overrides=["noise=shuffle", "noise.level=0.5"])
    GlobalHydra.instance().clear()
    assert default.noise.name == "clean"  # part of every training config, off by default
    sweep = instantiate(cfg.noise)
    assert [op.level for op in sweep.operators()] == [0.25, 0.5, 1.0]  # the robustness study's levels
    assert isinstance(sweep.operator(), GapShuffle) and sweep.operator().level == 0.5  # the run's own


@pytest.mark.parametrize(
    "field, value, message",
    [("level", "abc", "noise.level='abc'"), ("level", 3.0, "shuffle"), ("seed", 1.5, "noise.seed=1.5")],
)
def test_a_bad_training_noise_value_is_one_config_error(field: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        NoiseSweep("shuffle", [0.5], **{field: value})


def test_item_replacement_never_puts_the_target_into_the_input() -> None:
    items = np.tile(np.array([[1, 2, 1, 2, 1, 2]]), (50, 1))
    times = np.cumsum(np.ones_like(items), axis=1)
    inputs = PredictionInputs(items, times, times + 1, num_items=3, targets=np.full(50, 3))
    noisy = ItemReplacement(level=1.0)(inputs, seed=0)
    assert (noisy.items != 3).all() and set(np.unique(noisy.items)) == {1, 2}
