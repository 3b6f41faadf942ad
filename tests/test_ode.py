"""Time: ODE integration over per-sample gaps, solver orders, and DeepM3Net's use of time."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.linalg import expm
from torch import nn

from deepm3.models.components.deepm3 import DeepM3Net
from deepm3.models.components.ode import GapODE, VectorField
from deepm3.models.components.steps import gru_step

SOLVERS = ["euler", "rk4"]
ORDERS = {"euler": 1, "rk4": 4}


def random_field(hidden: int = 6, seed: int = 0) -> VectorField:
    torch.manual_seed(seed)
    return VectorField(hidden, width=12, depth=2, zero_init=False)  # a field that moves states


@pytest.mark.parametrize("method", SOLVERS)
@pytest.mark.parametrize("steps", [1, 3])
def test_zero_gap_leaves_the_state_exactly_unchanged(method, steps):
    ode = GapODE(random_field(), method=method, steps=steps)
    h = torch.randn(4, 6)
    assert torch.equal(ode(h, torch.zeros(4)), h)


@pytest.mark.parametrize("method", SOLVERS)
def test_nonzero_gap_moves_the_state(method):
    ode = GapODE(random_field(), method=method)
    h = torch.randn(4, 6)
    assert not torch.allclose(ode(h, torch.full((4,), 0.5)), h)


def test_none_solver_is_the_identity_for_any_gap():
    ode = GapODE(random_field(), method="none", steps=0)
    h = torch.randn(4, 6)
    assert torch.equal(ode(h, torch.tensor([0.0, 0.5, 3.0, 1e6])), h)


@pytest.mark.parametrize("method", SOLVERS)
@pytest.mark.parametrize("steps", [1, 3])
def test_batched_gaps_equal_integrating_each_sample_alone(method, steps):
    ode = GapODE(random_field(), method=method, steps=steps)
    h = torch.randn(5, 6)
    tau = torch.tensor([0.0, 0.3, 1.0, 2.5, 7.0])
    batched = ode(h, tau)
    alone = torch.cat([ode(h[b : b + 1], tau[b : b + 1]) for b in range(len(tau))])
    torch.testing.assert_close(batched, alone, rtol=1e-5, atol=1e-6)


# dh/dt = A h: a damped rotation plus a slower decaying mode; exact solution h(t) = expm(A t) h(0).
A = np.array([[-0.5, 2.0, 0.0], [-2.0, -0.5, 0.3], [0.0, -0.3, -1.0]])
STEP_COUNTS = {"euler": [16, 32, 64, 128, 256], "rk4": [4, 8, 16, 32]}


def linear_field() -> nn.Linear:
    field = nn.Linear(3, 3, bias=False).double()
    with torch.no_grad():
        field.weight.copy_(torch.from_numpy(A))  # rows h -> h @ A.T, i.e. A h for column states
    return field


def global_error(method: str, steps: int) -> float:
    h0 = torch.tensor([[1.0, 0.0, 0.5], [-0.3, 0.8, 0.2]], dtype=torch.float64)
    tau = torch.tensor([0.7, 1.3], dtype=torch.float64)
    with torch.no_grad():
        numeric = GapODE(linear_field(), method=method, steps=steps)(h0, tau).numpy()
    exact = np.stack([expm(A * t) @ h for h, t in zip(h0.numpy(), tau.numpy())])
    return float(np.abs(numeric - exact).max())


@pytest.mark.parametrize("method", SOLVERS)
def test_solver_converges_at_its_order_on_a_linear_ode(method):
    # Global error ~ C * (step size)^order, step size = tau / steps: the slope of log(error)
    # against log(1 / steps) is the order. Tolerance: +-0.15 on the fitted slope.
    steps = STEP_COUNTS[method]
    errors = [global_error(method, n) for n in steps]
    slope = -np.polyfit(np.log(steps), np.log(errors), 1)[0]
    assert slope == pytest.approx(ORDERS[method], abs=0.15), (errors, slope)
    assert errors[-1] < (1e-2 if method == "euler" else 1e-6)


# --- DeepM3Net ------------------------------------------------------------------------------

NUM_ITEMS, HIDDEN, LENGTH = 30, 8, 6
HOUR, YEAR = 3_600, 365 * 86_400


def make_net(method: str, transform: str = "log1p") -> DeepM3Net:
    torch.manual_seed(0)
    net = DeepM3Net(
        NUM_ITEMS,
        hidden=HIDDEN,
        dropout=0.0,
        solver={"method": method, "steps": 2},
        field={"width": 16, "zero_init": False},
        time={"unit": "hours", "transform": transform},
    )
    return net.eval()


def window(gaps_seconds: list[int], batch: int = 3, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A full window: ``len(gaps) - 1`` events (no padding) and the query after the last."""
    generator = torch.Generator().manual_seed(seed)
    items = torch.randint(1, NUM_ITEMS + 1, (batch, len(gaps_seconds) - 1), generator=generator)
    stamps = 1_500_000_000 + torch.cumsum(torch.tensor(gaps_seconds), 0).expand(batch, -1).clone()
    stamps += torch.randint(0, 10 * HOUR, (batch, 1), generator=generator) * (torch.arange(len(gaps_seconds)) > 0)
    return items, stamps[:, :-1], stamps[:, 1:]


GAPS = [0, 2 * HOUR, 0, 30 * HOUR, 5 * 60, 400 * HOUR, 3 * HOUR]  # 6 events + query; zero gaps are ties


@pytest.mark.parametrize("method", SOLVERS + ["none"])
@pytest.mark.parametrize("changed", ["items", "times", "next_times"])
def test_changing_a_later_position_never_changes_earlier_outputs(method, changed):
    net = make_net(method)
    inputs = dict(zip(("items", "times", "next_times"), window(GAPS)))
    j = 3
    altered = {k: v.clone() for k, v in inputs.items()}
    if changed == "items":
        altered["items"][:, j] = altered["items"][:, j] % NUM_ITEMS + 1
    else:
        altered[changed][:, j] += 7 * HOUR
    with torch.no_grad():
        before, after = net(**inputs), net(**altered)
    torch.testing.assert_close(after[:, :j], before[:, :j], rtol=0, atol=0)
    if method != "none" or changed == "items":
        assert not torch.allclose(after[:, j:], before[:, j:]), "the change must reach position j"


@pytest.mark.parametrize("method", SOLVERS + ["none"])
def test_more_left_padding_does_not_change_the_outputs(method):
    net = make_net(method)
    items, times, next_times = window(GAPS)
    pad = torch.zeros(items.shape[0], 4, dtype=torch.long)
    with torch.no_grad():
        plain = net(items, times, next_times)
        padded = net(torch.cat([pad, items], 1), torch.cat([pad, times], 1), torch.cat([pad, next_times], 1))
    torch.testing.assert_close(padded[:, 4:], plain, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("method", SOLVERS + ["none"])
def test_query_time_moves_the_last_output_only_when_the_ode_is_on(method):
    net = make_net(method)
    items, times, next_times = window(GAPS)
    later = next_times.clone()
    later[:, -1] += 24 * HOUR
    with torch.no_grad():
        now, then = net(items, times, next_times), net(items, times, later)
    torch.testing.assert_close(then[:, :-1], now[:, :-1], rtol=0, atol=0)
    if method == "none":
        torch.testing.assert_close(then[:, -1], now[:, -1], rtol=0, atol=0)
        assert not net.uses_time
    else:
        assert not torch.allclose(then[:, -1], now[:, -1])
        assert net.uses_time


HUGE_GAPS = [0, 30 * YEAR, 0, 0, 50 * YEAR, 1, 40 * YEAR]


@pytest.mark.parametrize("method", SOLVERS + ["none"])
@pytest.mark.parametrize("transform", ["log1p", "linear"])
def test_gaps_of_decades_and_zero_gaps_give_finite_outputs(method, transform):
    net = make_net(method, transform)
    with torch.no_grad():
        out = net(*window(HUGE_GAPS))
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("method", SOLVERS)
def test_gaps_of_decades_give_a_finite_loss_and_gradients(method):
    net = make_net(method).train()
    items, times, next_times = window(HUGE_GAPS)
    targets = torch.roll(items, -1, dims=1)
    loss = net.training_loss({"items": items, "times": times, "next_times": next_times, "targets": targets})
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)


def test_zero_initialised_field_starts_as_the_network_without_an_ode():
    torch.manual_seed(0)
    ode_net = DeepM3Net(NUM_ITEMS, hidden=HIDDEN, dropout=0.0, solver={"method": "euler", "steps": 1})
    plain = DeepM3Net(NUM_ITEMS, hidden=HIDDEN, dropout=0.0, solver={"method": "none"})
    plain.load_state_dict(ode_net.state_dict())
    inputs = window(GAPS)
    with torch.no_grad():
        torch.testing.assert_close(ode_net.eval()(*inputs), plain.eval()(*inputs), rtol=0, atol=0)


def test_zero_initialised_field_still_gets_a_gradient_on_its_last_layer():
    torch.manual_seed(0)
    net = DeepM3Net(NUM_ITEMS, hidden=HIDDEN, dropout=0.0, solver={"method": "euler", "steps": 1})
    net(*window(GAPS)).square().sum().backward()
    last = net.ode.scaled.field.net[-2]
    assert last.weight.abs().sum() == 0 and last.weight.grad.abs().sum() > 0


def test_lipschitz_field_keeps_a_random_last_layer():
    field = VectorField(HIDDEN, width=16, lipschitz=True, zero_init=True)
    assert torch.isfinite(field(torch.randn(2, HIDDEN))).all()
    assert field(torch.randn(2, HIDDEN)).abs().sum() > 0


def test_the_fused_gru_update_equals_torch_grucell():
    net = make_net("euler")
    x, h = torch.randn(5, HIDDEN), torch.randn(5, HIDDEN)
    gates = torch.nn.functional.linear(x, net.cell.weight_ih, net.cell.bias_ih)
    updated = gru_step(gates, h, net.cell.weight_hh, net.cell.bias_hh)
    torch.testing.assert_close(updated, net.cell(x, h), rtol=1e-6, atol=1e-6)


def test_one_ode_serves_concurrent_threads_with_different_gaps() -> None:
    """tau is bound per call, not stored on the module: a server may score requests in parallel."""
    from concurrent.futures import ThreadPoolExecutor

    ode = GapODE(random_field(), method="rk4", steps=4)
    h = torch.randn(64, 6)
    taus = [torch.full((64,), float(k)) for k in range(1, 9)]
    with torch.no_grad():
        expected = [ode(h, tau) for tau in taus]
        with ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(lambda tau: [ode(h, tau) for _ in range(20)][-1], taus))
    for got, want in zip(results, expected):
        assert torch.equal(got, want)


@pytest.mark.parametrize("method", ["euler", "rk4"])
def test_single_event_histories_and_extreme_gaps_keep_the_state_finite(method: str) -> None:
    net = DeepM3Net(10, hidden=8, solver={"method": method, "steps": 1}, field={"zero_init": False}).eval()
    items = torch.zeros(3, 5, dtype=torch.long)
    items[:, -1] = 3  # one real event each
    times = torch.zeros(3, 5, dtype=torch.long)
    times[:, -1] = 1_000_000_000
    next_times = times.clone()
    next_times[:, -1] += torch.tensor([0, 10 * 365 * 86_400, 200 * 365 * 86_400])  # tie, 10 and 200 years
    with torch.no_grad():
        out = net(items, times, next_times)
    assert torch.isfinite(out).all()
