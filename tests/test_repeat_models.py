"""The repeat-aware models: decayed repeat, SLRC+ and DeepM3's continuous-time repeat term."""

from __future__ import annotations

import math

import pytest
import torch

from deepm3.errors import ConfigError
from deepm3.models.components.decayed_repeat import DecayedRepeatNet
from deepm3.models.components.deepm3 import DeepM3Net
from deepm3.models.components.excitation import ItemExcitation, elapsed
from deepm3.models.components.slrc import SLRCNet
from deepm3.models.components.time import visible_inputs
from deepm3.server.state import is_stateful
from tests.helpers.event_loops import eager_inference

HOUR = 3600
T0 = 1_500_000_000


def window(items: list[int], times: list[int], query: int) -> dict[str, torch.Tensor]:
    """One left-padded row of width 5 asking for the next item at ``query``."""
    pad = 5 - len(items)
    row = {
        "items": [0] * pad + items,
        "times": [0] * pad + times,
        "next_times": [0] * pad + times[1:] + [query],
    }
    return {k: torch.tensor([v]) for k, v in row.items()}


# --- decayed repeat ---------------------------------------------------------------------------


def decayed(tau: float, counts: list[int] | None = None) -> DecayedRepeatNet:
    net = DecayedRepeatNet(6, tau=tau)
    net.counts[:] = torch.tensor(counts or [0, 5, 4, 3, 2, 1, 9])
    return net


# item 1 twice long ago, item 2 once just now, item 3 once a day ago
HISTORY = window([1, 1, 3, 2], [T0, T0 + 60, T0 + 10 * HOUR, T0 + 34 * HOUR], query=T0 + 34 * HOUR + 60)


def order(scores: torch.Tensor, items: list[int]) -> list[int]:
    return sorted(items, key=lambda i: -float(scores[0, i]))


def test_small_tau_ranks_the_history_by_recency():
    assert order(decayed(60.0).predict(HISTORY), [1, 2, 3]) == [2, 3, 1]


def test_large_tau_ranks_the_history_by_frequency():
    assert order(decayed(1e9).predict(HISTORY), [1, 2, 3]) == [1, 2, 3]  # twice first; then the more recent


def test_memories_too_small_for_a_float_keep_their_order():
    # tau = 1 s: exp(-86400) underflows, yet the item seen a day ago still ranks above the older one
    scores = decayed(1.0).predict(window([1, 3], [T0, T0 + 10 * HOUR], query=T0 + 34 * HOUR))
    assert scores[0, 3] > scores[0, 1] > scores[0, 6]


def test_history_items_rank_above_every_other_item_then_popularity():
    scores = decayed(600.0).predict(HISTORY)
    assert scores[0, [1, 2, 3]].min() > scores[0, [4, 5, 6]].max()
    assert order(scores, [4, 5, 6]) == [6, 4, 5]  # by training counts


def test_decayed_repeat_memory_is_the_hand_computed_sum():
    net = decayed(HOUR)
    log_memory = net.memory(HISTORY["items"], HISTORY["times"], torch.tensor([T0 + 34 * HOUR + 60]))
    elapsed_1 = torch.tensor([34 * HOUR + 60, 34 * HOUR], dtype=torch.float64) / HOUR
    assert log_memory[0, 1].item() == pytest.approx(math.log(torch.exp(-elapsed_1).sum().item()))


def test_decayed_repeat_tau_must_be_positive():
    with pytest.raises(ConfigError, match="model.net.tau=0"):
        DecayedRepeatNet(3, tau=0)


# --- the shared kernel ------------------------------------------------------------------------


def test_elapsed_lets_each_query_see_only_events_up_to_its_own_position():
    items = torch.tensor([[0, 4, 5]])
    times = torch.tensor([[0, 10, 20]])
    gap, mask = elapsed(times, torch.tensor([[10, 20, 30]]), items, 1.0)
    assert mask[0].tolist() == [[False, False, False], [False, True, False], [False, True, True]]
    assert gap[0, 2].tolist() == [30.0, 20.0, 10.0]


# --- SLRC+ -------------------------------------------------------------------------------------


def test_slrc_score_is_the_hand_computed_hawkes_intensity():
    net = SLRCNet(3, hidden=2, unit="hours")
    with torch.no_grad():
        net.history_embedding.weight[:] = torch.tensor([[0.0], [1.0], [3.0], [5.0]])
        net.item_embedding.weight[:] = torch.tensor([[0.0, 0.0], [0.5, 0.1], [0.2, -0.3], [1.0, 0.0]])
        net.repeat.amplitude[:] = torch.tensor([0.0, 2.0, 1.0, 0.5])
        net.repeat.rate[:] = torch.log(torch.expm1(torch.tensor([1.0, 0.5, 2.0, 1.0])))  # softplus^-1
        net.repeat.mix[:] = torch.tensor([0.0, 0.0, math.inf, 0.0])  # pi: 0.5, 0.5, 1, 0.5
        net.repeat.lifetime[:] = torch.log(torch.expm1(torch.tensor([1.0, 3.0, 1.0, 1.0])))
        net.repeat.spread[:] = torch.log(torch.expm1(torch.tensor([1.0, 1.0, 1.0, 1.0]) - 1e-3))
    # history: item 1 at 0 h and 2 h, item 2 at 3 h; query at 4 h
    batch = window([1, 1, 2], [T0, T0 + 2 * HOUR, T0 + 3 * HOUR], T0 + 4 * HOUR)
    scores = net.predict(batch)[0]
    user = (1.0 + 1.0 + 3.0) / 3  # mean history factor, then a constant 1 (the item bias)

    def kernel(d: float, rate: float, pi: float, mu: float) -> float:
        return pi * math.exp(-rate * d) + (1 - pi) * math.exp(-0.5 * (d - mu) ** 2)

    expected_1 = 0.5 * user + 0.1 + 2.0 * (kernel(4, 0.5, 0.5, 3) + kernel(2, 0.5, 0.5, 3))
    expected_2 = 0.2 * user - 0.3 + 1.0 * kernel(1, 2.0, 1.0, 1)
    expected_3 = 1.0 * user  # never consumed: the base intensity only
    assert scores[1:].tolist() == pytest.approx([expected_1, expected_2, expected_3], rel=1e-5)


def test_slrc_learns_on_the_training_loss():
    torch.manual_seed(0)
    net = SLRCNet(4, hidden=8)
    batch = window([1, 2, 1], [T0, T0 + 60, T0 + 120], T0 + 180)
    batch["targets"] = torch.tensor([[0, 0, 2, 1, 2]])
    loss = net.training_loss(batch)
    loss.backward()
    assert torch.isfinite(loss) and net.repeat.amplitude.grad.abs().sum() > 0


# --- DeepM3's repeat term ----------------------------------------------------------------------


def deepm3(query: str = "target", repeat: dict | None = None, seed: int = 0, **kwargs) -> DeepM3Net:
    torch.manual_seed(seed)
    return DeepM3Net(
        8,
        hidden=8,
        dropout=0.0,
        field={"width": 16, "zero_init": False},
        time={"query": query},
        repeat=repeat,
        **kwargs,
    ).eval()


REPEAT = {"enabled": True, "kernel": "exp", "unit": "hours"}
ROWS = {
    "items": torch.tensor([[0, 3, 5, 3, 1], [2, 2, 4, 6, 2]]),
    "times": torch.tensor([[0, T0, T0 + 40, T0 + 4000, T0 + 9000], [T0, T0 + 1, T0 + 90, T0 + 7200, T0 + 9000]]),
    "next_times": torch.tensor(
        [[0, T0 + 40, T0 + 4000, T0 + 9000, T0 + 9600], [T0 + 1, T0 + 90, T0 + 7200, T0 + 9000, T0 + 86400]]
    ),
    "targets": torch.tensor([[0, 5, 3, 1, 3], [2, 4, 6, 2, 4]]),
}


def train_term(net: DeepM3Net) -> DeepM3Net:
    """Give the term trained-looking values (the init is exactly zero)."""
    with torch.no_grad():
        net.repeat.amplitude.normal_()
        net.repeat.rate.normal_()
        net.repeat_head.weight.normal_()
        net.repeat_head.bias.normal_()
    return net


def test_the_term_is_off_by_default_and_adds_no_parameters():
    assert deepm3().repeat is None
    names = set(deepm3().state_dict())
    assert not any(name.startswith("repeat") for name in names)


@pytest.mark.parametrize("query", ["target", "last"])
def test_zero_amplitude_is_exactly_the_model_without_the_term(query):
    plain, with_term = deepm3(query), deepm3(query, REPEAT)
    with_term.load_state_dict(plain.state_dict(), strict=False)
    batch = visible_inputs(ROWS, query)
    assert torch.equal(plain.predict(batch), with_term.predict(batch))
    assert torch.equal(plain.training_loss(batch), with_term.training_loss(batch))


def test_a_trained_term_raises_the_history_items():
    net = deepm3("target", REPEAT)
    with torch.no_grad():
        net.repeat.amplitude.fill_(5.0)
    base = deepm3("target")
    base.load_state_dict(net.state_dict(), strict=False)
    lift = net.predict(ROWS) - base.predict(ROWS)
    assert (lift[0, [1, 3, 5]] > 0).all() and lift[0, [2, 4, 6, 7, 8]].abs().max() == 0


def test_under_last_no_score_depends_on_the_targets_timestamp():
    net = train_term(deepm3("last", REPEAT))
    later = {**ROWS, "next_times": ROWS["next_times"].clone()}
    later["next_times"][:, -1] += 90 * 86400
    assert torch.equal(net.predict(visible_inputs(ROWS, "last")), net.predict(visible_inputs(later, "last")))


def test_under_target_the_term_decays_with_the_query_gap():
    net = deepm3("target", {**REPEAT, "state": False})
    with torch.no_grad():
        net.repeat.amplitude.fill_(1.0)
    base = deepm3("target")
    base.load_state_dict(net.state_dict(), strict=False)
    soon = {**ROWS, "next_times": ROWS["next_times"].clone()}
    soon["next_times"][0, -1] = ROWS["times"][0, -1] + 1
    lift_soon = (net.predict(soon) - base.predict(soon))[0, 1]
    lift_late = (net.predict(ROWS) - base.predict(ROWS))[0, 1]
    assert lift_soon > lift_late > 0


def test_the_term_is_causal_in_training():
    """Changing the last event changes no earlier position's loss terms: compare per-position scores."""
    net = train_term(deepm3("target", REPEAT))
    changed = {k: v.clone() for k, v in ROWS.items()}
    changed["items"][:, -1] = 7
    changed["times"][:, -1] += 5
    hidden_a, hidden_b = (net(b["items"], b["times"], b["next_times"]) for b in (ROWS, changed))
    extra_a, extra_b = net.excitation(ROWS, hidden_a), net.excitation(changed, hidden_b)
    assert torch.equal(extra_a[:, :-1, :-1], extra_b[:, :-1, :-1])
    assert extra_a[:, :-1, -1].abs().max() == 0


@pytest.mark.parametrize("query", ["target", "last"])
def test_the_scripted_inference_loop_equals_the_eager_one_with_the_term(query):
    net = train_term(deepm3(query, REPEAT))
    assert net.event_loops.inference.name == "scripted"
    batch = visible_inputs(ROWS, query)
    with torch.no_grad():
        scripted = net.predict(batch)
        with eager_inference(net):
            eager = net.predict(batch)
    torch.testing.assert_close(scripted, eager, rtol=1e-6, atol=1e-6)


def test_the_term_gets_gradients_and_the_loss_is_finite():
    net = deepm3("target", REPEAT).train()
    loss = net.training_loss(ROWS)
    loss.backward()
    assert torch.isfinite(loss) and net.repeat.amplitude.grad.abs().sum() > 0


def test_a_network_with_the_term_is_not_served_from_stored_states():
    assert is_stateful(deepm3()) and not is_stateful(deepm3(repeat=REPEAT))


def test_an_unknown_kernel_is_a_config_error():
    with pytest.raises(ConfigError, match="repeat.kernel='hawkes'"):
        ItemExcitation(3, kernel="hawkes")


# --- the multiscale kernel ----------------------------------------------------------------------

MULTISCALE = {"enabled": True, "kernel": "multiscale", "timescales": [60, 3600]}


def test_the_multiscale_kernel_is_the_hand_computed_sum_over_its_timescales():
    from deepm3.models.components.excitation import MultiScaleExcitation

    kernel = MultiScaleExcitation(4, timescales=[60, 3600])
    with torch.no_grad():
        kernel.amplitude[2] = torch.tensor([2.0, 0.5])
    items, times = torch.tensor([[2, 3, 2]]), torch.tensor([[T0, T0 + 30, T0 + 60]])
    value = kernel(items, times, torch.tensor([[T0 + 120]]))[0, 0]

    def k(d: float) -> float:
        return 2.0 * math.exp(-d / 60) + 0.5 * math.exp(-d / 3600)

    assert value.tolist() == pytest.approx([k(120), 0.0, k(60)], rel=1e-6)


@pytest.mark.parametrize("query", ["target", "last"])
def test_a_fresh_multiscale_term_is_exactly_the_model_without_it(query):
    plain, with_term = deepm3(query), deepm3(query, MULTISCALE)
    with_term.load_state_dict(plain.state_dict(), strict=False)
    batch = visible_inputs(ROWS, query)
    assert torch.equal(plain.predict(batch), with_term.predict(batch))


def test_the_multiscale_term_reads_one_amplitude_shift_per_timescale_from_the_state():
    net = deepm3("last", MULTISCALE)
    assert net.repeat_head.out_features == 2 and net.repeat.amplitude.shape == (9, 2)


def test_multiscale_timescales_must_be_positive():
    from deepm3.models.components.excitation import MultiScaleExcitation

    with pytest.raises(ConfigError, match="repeat.timescales"):
        MultiScaleExcitation(3, timescales=[60, 0])


# --- positive amplitudes (a Hawkes excitation only raises a score) -------------------------------


POSITIVE_KERNELS = [{"kernel": "exp", "unit": "hours"}, {"kernel": "multiscale", "timescales": [86400]}]


@pytest.mark.parametrize("kernel", POSITIVE_KERNELS)
def test_a_positive_term_never_lowers_a_history_item(kernel):
    net = train_term_any(deepm3("target", {"enabled": True, "positive": True, "init_amplitude": 0.01, **kernel}))
    with torch.no_grad():
        net.repeat.amplitude.fill_(-5.0)  # a raw value that would push items down if used as it is
    base = deepm3("target")
    base.load_state_dict(net.state_dict(), strict=False)
    lift = net.predict(ROWS) - base.predict(ROWS)
    assert (lift[0, [1, 3, 5]] > 0).all() and lift[0, [2, 4, 6, 7, 8]].abs().max() == 0


def test_a_positive_term_starts_at_its_initial_amplitude():
    term = ItemExcitation(4, positive=True, init_amplitude=0.01)
    value = term(torch.tensor([[2]]), torch.tensor([[T0]]), torch.tensor([[T0]]))
    assert value.item() == pytest.approx(0.01, rel=1e-5)


def test_a_positive_term_must_start_above_zero():
    with pytest.raises(ConfigError, match="repeat.init_amplitude=0.0"):
        deepm3("target", {**REPEAT, "positive": True})


def train_term_any(net: DeepM3Net) -> DeepM3Net:
    """The state read-out with trained-looking values (kernels differ in their own parameters)."""
    with torch.no_grad():
        net.repeat_head.weight.normal_()
        net.repeat_head.bias.normal_()
    return net
