"""The synthetic world is deterministic, its gaps have the CVs asked for, and time carries
exactly as much information as ``time_signal`` says (docs/protocol.md, "A world with known ground truth")."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from deepm3.data.cache import cache_key
from deepm3.data.preprocess import PreprocessConfig
from deepm3.data.sources.synthetic import PARAMETERS, SyntheticEvents, SyntheticSource, SyntheticWorld
from deepm3.errors import ConfigError

SMALL = dict(users=60, items=40, events_per_user=30, dim=4)


def per_user(events: SyntheticEvents, world: SyntheticWorld, values: np.ndarray) -> np.ndarray:
    return values.reshape(world.users, world.events_per_user, *values.shape[1:])


def next_item_log_likelihood(world: SyntheticWorld, events: SyntheticEvents, tau: np.ndarray) -> float:
    """Mean log-probability of each next item when the exact current intent is pushed ``tau`` ahead."""
    intents = per_user(events, world, events.intents)
    drift_now = intents[:, :-1] - events.anchors[:, None, :]
    expected = events.anchors[:, None, :] + world.expected_drift(drift_now, tau)
    logits = world.item_logits(expected, events.item_vectors)
    log_norm = np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1)) + logits.max(-1)
    targets = per_user(events, world, events.items)[:, 1:]
    return float((np.take_along_axis(logits, targets[..., None], -1)[..., 0] - log_norm).mean())


def test_same_seed_same_world_and_a_new_seed_a_new_one():
    first = SyntheticSource(**SMALL, seed=3).read()
    again = SyntheticSource(**SMALL, seed=3).read()
    other = SyntheticSource(**SMALL, seed=4).read()
    assert first.equals(again)
    assert not first["item"].equals(other["item"])
    assert not first["timestamp"].equals(other["timestamp"])


def test_table_has_every_event_in_time_order_per_user():
    world = SyntheticWorld(**SMALL)
    table = SyntheticSource(**SMALL).read()
    assert len(table) == world.users * world.events_per_user
    assert table.groupby("user")["timestamp"].apply(lambda t: t.is_monotonic_increasing).all()
    assert table["user"].nunique() == world.users and table["item"].nunique() <= world.items


def test_per_user_gap_cv_follows_the_requested_range():
    world = SyntheticWorld(users=200, items=20, events_per_user=400, dim=2, cv_min=0.5, cv_max=1.5, seed=1)
    events = world.generate()
    gaps = np.diff(per_user(events, world, events.times), axis=1).astype(float)
    realised = gaps.std(axis=1) / gaps.mean(axis=1)
    assert np.all((events.gap_cv >= 0.5) & (events.gap_cv <= 1.5))
    assert np.all((realised > 0.5 * 0.8) & (realised < 1.5 * 1.2))
    assert np.mean(np.abs(realised / events.gap_cv - 1) < 0.1) > 0.9
    assert gaps.mean() / 3600 == pytest.approx(world.mean_gap_hours, rel=0.1)


def test_without_time_signal_items_do_not_depend_on_the_gaps():
    calm = dict(SMALL, time_signal=0.0, cv_min=0.3, cv_max=0.4, mean_gap_hours=2.0)
    wild = dict(calm, cv_min=1.5, cv_max=2.5, mean_gap_hours=200.0)
    calm_events, wild_events = SyntheticWorld(**calm).generate(), SyntheticWorld(**wild).generate()
    assert not np.array_equal(calm_events.times, wild_events.times)
    assert np.array_equal(calm_events.items, wild_events.items)


def test_with_time_signal_the_same_draws_give_other_items_when_the_gaps_change():
    calm = dict(SMALL, time_signal=1.0, cv_min=0.3, cv_max=0.4)
    wild = dict(calm, cv_min=1.5, cv_max=2.5)
    assert not np.array_equal(SyntheticWorld(**calm).generate().items, SyntheticWorld(**wild).generate().items)


@pytest.mark.parametrize("signal", [1.0, 0.0])
def test_knowing_the_gap_predicts_the_next_item_better_exactly_when_time_matters(signal):
    world = SyntheticWorld(users=150, items=100, events_per_user=20, time_signal=signal, seed=2)
    events = world.generate()
    gaps = np.diff(per_user(events, world, events.times), axis=1)
    time_aware = next_item_log_likelihood(world, events, world.elapsed(gaps))
    time_blind = next_item_log_likelihood(world, events, world.elapsed(np.full(gaps.shape, world.mean_gap_seconds)))
    if signal:
        assert time_aware > time_blind + 1.0  # nats per event
    else:
        assert time_aware == pytest.approx(time_blind, abs=1e-9)


def test_source_has_no_files_and_reports_every_generator_parameter():
    source = SyntheticSource(**SMALL)
    assert source.files() == []
    assert set(source.params()) == set(PARAMETERS) == {f.name for f in dataclasses.fields(SyntheticWorld)}
    assert source.params()["users"] == SMALL["users"]
    config = PreprocessConfig()
    assert cache_key(source, config) != cache_key(SyntheticSource(**SMALL, time_signal=0.5), config)


@pytest.mark.parametrize(
    "params, message",
    [
        (dict(dim=5), "even"),
        (dict(time_signal=1.5), r"time_signal=1\.5; expected a number in \[0, 1\]"),
        (dict(cv_min=2.0, cv_max=1.0), "cv_min <= cv_max"),
        (dict(users=0), "users=0"),
        (dict(temperature=0.0), "temperature"),
        (dict(gap_shape=2.0), r"unknown parameter\(s\) \['gap_shape'\]"),
    ],
)
def test_bad_parameters_are_one_line_config_errors(params, message):
    with pytest.raises(ConfigError, match=message):
        SyntheticSource(**params)
