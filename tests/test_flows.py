"""DeepM3's between-events dynamics (``model.net.field.kind``) and the learned horizon."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from deepm3.errors import ConfigError
from deepm3.models.components.deepm3 import DeepM3Net
from deepm3.models.components.event_loop import FusedLoop
from deepm3.models.components.flows import FIELD_KINDS, DecayFlow, build_flow
from deepm3.models.components.ode import GapODE
from deepm3.models.components.time import visible_inputs
from deepm3.models.module import RecModule
from tests.helpers.event_loops import eager_inference

HIDDEN = 6
MOVING = {"width": 12, "zero_init": False}  # a field that moves states


def flow(kind: str, method: str = "euler", steps: int = 1, **field: object) -> nn.Module:
    torch.manual_seed(0)
    return build_flow(HIDDEN, {"kind": kind, **MOVING, **field}, {"method": method, "steps": steps})


@pytest.mark.parametrize("kind", FIELD_KINDS)
@pytest.mark.parametrize("method", ["euler", "rk4"])
def test_a_zero_gap_is_an_exact_identity(kind: str, method: str) -> None:
    h = torch.randn(4, HIDDEN)
    assert torch.equal(flow(kind, method)(h, torch.zeros(4)), h)


@pytest.mark.parametrize("kind", FIELD_KINDS)
def test_solver_none_is_the_identity_for_every_kind(kind: str) -> None:
    h = torch.randn(3, HIDDEN)
    assert torch.equal(flow(kind, "none")(h, torch.full((3,), 2.0)), h)


@pytest.mark.parametrize("kind", FIELD_KINDS)
def test_each_kind_moves_the_state_over_a_positive_gap(kind: str) -> None:
    h = torch.randn(3, HIDDEN)
    assert not torch.allclose(flow(kind)(h, torch.full((3,), 1.5)), h)


@pytest.mark.parametrize("method", ["euler", "rk4"])
def test_decay_without_residual_is_the_exact_ou_mean_over_any_gap(method: str) -> None:
    decay = flow("decay", method, residual=False, init_rate=0.3)
    with torch.no_grad():
        decay.anchor.copy_(torch.linspace(-1, 1, HIDDEN))
    h, tau = torch.randn(2, HIDDEN), torch.tensor([0.7, 4.0])
    expected = decay.anchor + torch.exp(-0.3 * tau)[:, None] * (h - decay.anchor)
    torch.testing.assert_close(decay(h, tau), expected)
    # a semigroup, as an exact flow must be: two gaps in a row = their sum
    torch.testing.assert_close(decay(decay(h, tau), tau), decay(h, 2 * tau))


def test_decay_rates_stay_positive_and_start_at_the_configured_rate() -> None:
    decay = flow("decay", init_rate=0.25)
    assert isinstance(decay, DecayFlow)
    torch.testing.assert_close(decay.rates(), torch.full((HIDDEN,), 0.25))
    with torch.no_grad():
        decay.raw_rate.fill_(-50.0)
    assert (decay.rates() > 0).all()


class ElapsedField(nn.Module):
    """``dh/dt = t``: solution ``h0 + tau^2 / 2``, a known answer for a time-dependent field."""

    time_dependent = True

    def forward(self, h: torch.Tensor, elapsed: torch.Tensor) -> torch.Tensor:
        return elapsed.expand_as(h)


def test_rk4_integrates_a_time_dependent_field_exactly_and_euler_converges_at_first_order() -> None:
    h0, tau = torch.zeros(1, 2, dtype=torch.float64), torch.tensor([2.0], dtype=torch.float64)
    exact = 2.0  # tau^2 / 2
    assert GapODE(ElapsedField(), "rk4", 1)(h0, tau)[0, 0].item() == pytest.approx(exact, abs=1e-6)  # float32 grid
    errors = [abs(GapODE(ElapsedField(), "euler", n)(h0, tau)[0, 0].item() - exact) for n in (4, 8, 16)]
    assert errors[0] / errors[1] == pytest.approx(2.0, rel=1e-6) and errors[1] / errors[2] == pytest.approx(
        2.0, rel=1e-6
    )


def test_time_mlp_reads_the_elapsed_time() -> None:
    field = flow("time_mlp").scaled.field
    h = torch.randn(2, HIDDEN)
    assert not torch.allclose(field(h, torch.zeros(2, 1)), field(h, torch.ones(2, 1)))


def test_an_unknown_kind_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="model.net.field.kind='spline'"):
        build_flow(HIDDEN, {"kind": "spline"}, {"method": "euler"})


# --- query=last: nothing past the last event, and the learned horizon -----------------------


def _module(kind: str, horizon: bool) -> RecModule:
    module = RecModule({"_target_": "deepm3.models.components.pop.PopNet"}, num_items=10, query="last")
    torch.manual_seed(0)
    module.net = DeepM3Net(
        10, hidden=8, dropout=0.0, field={"kind": kind, **MOVING}, time={"query": "last"}, horizon=horizon
    ).eval()
    return module


def _window(target_gap: int) -> dict[str, torch.Tensor]:
    items = torch.tensor([[0, 3, 5, 7, 2], [4, 4, 9, 1, 6]])
    times = torch.tensor([[0, 100, 4000, 90000, 90500], [10, 20, 7200, 7300, 400000]])
    next_times = torch.cat([times[:, 1:], times[:, -1:] + target_gap], dim=1) * (items > 0)
    targets = torch.zeros_like(items)
    targets[:, -1] = torch.tensor([8, 10])
    return {"items": items, "times": times, "next_times": next_times, "targets": targets}


@pytest.mark.parametrize("kind", FIELD_KINDS)
@pytest.mark.parametrize("horizon", [False, True])
def test_under_query_last_no_kind_sees_the_target_timestamp(kind: str, horizon: bool) -> None:
    module = _module(kind, horizon)
    with torch.no_grad():
        torch.testing.assert_close(module(_window(60)), module(_window(10**6)), rtol=0, atol=0)


def test_the_horizon_head_moves_the_prediction_past_the_last_event() -> None:
    with_head, without = _module("mlp", True), _module("mlp", False)
    without.net.load_state_dict(with_head.net.state_dict(), strict=False)
    with torch.no_grad():
        assert not torch.allclose(with_head(_window(60)), without(_window(60)))


def test_the_horizon_head_is_off_under_query_target() -> None:
    net = DeepM3Net(10, hidden=8, time={"query": "target"}, horizon=True)
    assert net.gap_head is None and not net.horizon


def test_the_gap_loss_is_the_gaussian_nll_of_the_following_in_window_gaps() -> None:
    net = DeepM3Net(10, hidden=4, time={"query": "last", "unit": "seconds", "transform": "linear"}, horizon=True)
    items = torch.tensor([[0, 1, 2, 3]])
    times = torch.tensor([[0, 10, 13, 20]])
    params = torch.zeros(1, 4, 2)  # mean softplus(0) = log 2, std 1 everywhere
    params[0, 2] = torch.tensor([1.0, math.log(2.0)])
    mean0 = math.log(2.0)
    expected = [0.5 * (3 - mean0) ** 2, 0.5 * ((7 - math.log1p(math.e)) / 2) ** 2 + math.log(2.0)]
    assert net._gap_nll(params, times, items).item() == pytest.approx(sum(expected) / 2, rel=1e-6)


def test_horizon_training_adds_the_gap_loss() -> None:
    module = _module("mlp", True)
    batch = visible_inputs({**_window(60), "targets": torch.tensor([[0, 5, 7, 2, 8], [4, 9, 1, 6, 10]])}, "last")
    module.net.horizon_weight = 0.0
    item_only = module.net.training_loss(batch).item()
    module.net.horizon_weight = 1.0
    assert module.net.training_loss(batch).item() != pytest.approx(item_only)


@pytest.mark.parametrize("query", ["target", "last"])
def test_solver_none_runs_as_one_fused_gru_equal_to_the_loop(query: str) -> None:
    torch.manual_seed(3)
    net = DeepM3Net(10, hidden=8, dropout=0.0, solver={"method": "none"}, time={"query": query})
    assert net.event_loops.inference.name == "fused" and net.event_loops.training.name == "eager"
    window = _window(60)
    window["items"][0, :3] = 0  # more padding on one row
    with torch.no_grad():  # the fused call serves inference; training keeps the loop
        fused = net(window["items"], window["times"], window["next_times"])
        with eager_inference(net):
            loop = net(window["items"], window["times"], window["next_times"])
    torch.testing.assert_close(fused, loop, rtol=1e-6, atol=1e-6)
    states = FusedLoop(net).states(net.item_embedding(window["items"]), window["items"] > 0)
    assert torch.autograd.grad(states.sum(), net.cell.weight_hh)[0].abs().sum() > 0  # differentiable all the same
    hidden, _ = net._run(window["items"], window["times"], window["next_times"])
    assert hidden.requires_grad


def test_the_fused_gru_template_holds_no_weights_of_its_own() -> None:
    net = DeepM3Net(10, hidden=8, solver={"method": "none"})
    assert not any(key.startswith("_gru_template") for key in net.state_dict())


def assert_scripted_equals_eager(net: DeepM3Net, query: str) -> None:
    assert net.event_loops.inference.name == "scripted"
    window = visible_inputs(_window(3600), query)
    with torch.no_grad():
        scripted = net(window["items"], window["times"], window["next_times"])
        with eager_inference(net):
            eager = net(window["items"], window["times"], window["next_times"])
    torch.testing.assert_close(scripted, eager, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("method,steps", [("euler", 1), ("euler", 2), ("rk4", 1), ("rk4", 2)])
@pytest.mark.parametrize("query", ["target", "last"])
def test_the_scripted_inference_loop_equals_the_eager_loop(method: str, steps: int, query: str) -> None:
    """Tolerance 1e-6: the same operations in the same order (in practice the values are equal)."""
    torch.manual_seed(4)
    net = DeepM3Net(
        10,
        hidden=8,
        dropout=0.0,
        field={"width": 16, "zero_init": False, "depth": 3},
        solver={"method": method, "steps": steps},
        time={"query": query},
    ).eval()
    assert_scripted_equals_eager(net, query)


def test_training_keeps_the_eager_loop_so_gradients_are_the_reference_ones() -> None:
    net = DeepM3Net(10, hidden=8, field={"zero_init": False})
    window = _window(60)
    calls = []
    import deepm3.models.components.event_loop as module

    assert net.event_loops.training.name == "eager"
    original = module.window_loop
    module.window_loop = lambda: calls.append(1) or original()
    try:
        net(window["items"], window["times"], window["next_times"]).sum().backward()
    finally:
        module.window_loop = original
    assert calls == [] and net.cell.weight_hh.grad is not None


@pytest.mark.parametrize("residual", [True, False])
@pytest.mark.parametrize("method", ["euler", "rk4"])
@pytest.mark.parametrize("query", ["target", "last"])
def test_the_scripted_loop_equals_the_eager_loop_for_the_decay_flow(residual: bool, method: str, query: str) -> None:
    """Tolerance 1e-6, as for the MLP field; trained-looking rates and anchor, not the init."""
    torch.manual_seed(5)
    net = DeepM3Net(
        10,
        hidden=8,
        dropout=0.0,
        field={"kind": "decay", "residual": residual, "width": 16, "zero_init": False},
        solver={"method": method, "steps": 2},
        time={"query": query},
    ).eval()
    with torch.no_grad():
        net.ode.anchor.normal_()
        net.ode.raw_rate.normal_()
    assert_scripted_equals_eager(net, query)


@pytest.mark.parametrize("field", [{"kind": "time_mlp"}, {"lipschitz": True}, {"kind": "decay", "lipschitz": True}])
def test_configurations_the_script_does_not_implement_stay_eager(field: dict) -> None:
    assert DeepM3Net(10, hidden=8, field=field).event_loops.inference.name == "eager"


@pytest.mark.parametrize("method", ["euler", "rk4", "none"])
@pytest.mark.parametrize("query", ["target", "last"])
def test_inference_skips_padding_only_columns_exactly(method: str, query: str) -> None:
    torch.manual_seed(5)
    net = DeepM3Net(
        10,
        hidden=8,
        dropout=0.0,
        field={"width": 16, "zero_init": False},
        solver={"method": method},
        time={"query": query},
    ).eval()
    window = visible_inputs(_window(600), query)
    short = {k: v.clone() for k, v in window.items()}
    short["items"][:, :2] = 0  # the first two columns are padding in every row
    short["times"][:, :2] = 0
    short["next_times"][:, :2] = 0
    assert net._first_event_column(short["items"]) == 0  # gradients on: never skipped
    with torch.no_grad():
        assert net._first_event_column(short["items"]) == 2
        skipped = net(short["items"], short["times"], short["next_times"])
        net._first_event_column = lambda items: 0  # the full walk through the padding
        walked = net(short["items"], short["times"], short["next_times"])
    torch.testing.assert_close(skipped, walked, rtol=1e-6, atol=1e-6)
