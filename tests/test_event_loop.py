"""DeepM3's event-loop interface (``models/components/event_loop.py``): which implementation the
factory picks for each configuration, that every implementation computes the eager loop's
states, and that the step functions of ``steps.py`` are the ones every path runs."""

from __future__ import annotations

import copy

import pytest
import torch

from deepm3.models.components.deepm3 import DeepM3Net
from deepm3.models.components.event_loop import (
    IMPLEMENTATIONS,
    EagerLoop,
    EventLoop,
    FusedLoop,
    GraphedLoop,
    ScriptedLoop,
    pick_event_loops,
)
from deepm3.models.components.flows import DecayFlow, build_flow
from deepm3.models.components.recurrent import run_left_padded
from deepm3.models.components.scripted import flow_arguments, window_loop
from deepm3.models.components.steps import decay_pull, flow_between, mlp_field

HIDDEN = 8
MOVING = {"width": 12, "zero_init": False}

# configuration -> (implementation for calls with gradients, for calls without): the documented picks
PICKS = {
    "mlp euler": ({}, ("eager", "scripted")),
    "mlp rk4": ({"solver": {"method": "rk4", "steps": 2}}, ("eager", "scripted")),
    "decay": ({"field": {"kind": "decay"}}, ("eager", "scripted")),
    "decay without residual": ({"field": {"kind": "decay", "residual": False}}, ("eager", "scripted")),
    "odeint": ({"solver": {"method": "euler", "steps": 1, "implementation": "odeint"}}, ("eager", "scripted")),
    "repeat term": ({"repeat": {"enabled": True}}, ("eager", "scripted")),
    "time_mlp": ({"field": {"kind": "time_mlp"}}, ("eager", "eager")),
    "lipschitz": ({"field": {"lipschitz": True}}, ("eager", "eager")),
    "decay lipschitz, no residual": (
        {"field": {"kind": "decay", "residual": False, "lipschitz": True}},
        ("eager", "eager"),
    ),
    "horizon": ({"horizon": True, "time": {"query": "last"}}, ("eager", "eager")),
    "solver none": ({"solver": {"method": "none"}}, ("eager", "fused")),
    "decay, solver none": ({"solver": {"method": "none"}, "field": {"kind": "decay"}}, ("eager", "fused")),
    "cuda graphs": ({"cuda_graphs": True}, ("graphed", "scripted")),
    "cuda graphs, solver none": ({"cuda_graphs": True, "solver": {"method": "none"}}, ("graphed", "fused")),
    "cuda graphs, decay": ({"cuda_graphs": True, "field": {"kind": "decay"}}, ("graphed", "scripted")),
    "cuda graphs, lipschitz": ({"cuda_graphs": True, "field": {"lipschitz": True}}, ("eager", "eager")),
    "cuda graphs, odeint": (
        {"cuda_graphs": True, "solver": {"method": "euler", "steps": 1, "implementation": "odeint"}},
        ("eager", "scripted"),
    ),
}


def make_net(config: dict, seed: int = 0) -> DeepM3Net:
    torch.manual_seed(seed)
    field = {**MOVING, **config.get("field", {})}
    return DeepM3Net(20, hidden=HIDDEN, dropout=0.0, **{**config, "field": field}).eval()


def loop_inputs(net: DeepM3Net, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    items = torch.randint(1, 21, (3, 7), generator=g)
    items[0, :3] = 0
    items[1, :1] = 0
    tau = torch.rand(3, 7, generator=g) * 3 * (items > 0)
    return net.item_embedding(items), items > 0, tau


@pytest.mark.parametrize("name", sorted(PICKS))
def test_the_factory_picks_the_documented_implementation_for_each_configuration(name: str) -> None:
    config, (training, inference) = PICKS[name]
    net = make_net(config)
    assert (net.event_loops.training.name, net.event_loops.inference.name) == (training, inference)
    assert isinstance(net.event_loops.training, IMPLEMENTATIONS[training])
    assert isinstance(net.event_loops.inference, IMPLEMENTATIONS[inference])


def test_the_gradient_mode_chooses_between_the_two_picks() -> None:
    net = make_net({})
    assert net.event_loops.current() is net.event_loops.training
    with torch.no_grad():
        assert net.event_loops.current() is net.event_loops.inference
    with torch.inference_mode():
        assert net.event_loops.current() is net.event_loops.inference


def test_the_scripted_loop_compiles_here() -> None:
    """Its fallback is the eager loop, which would hide a failure from the equality tests."""
    assert window_loop() is not None


def test_implementations_are_named_once_and_implement_the_interface() -> None:
    assert sorted(IMPLEMENTATIONS) == ["eager", "fused", "graphed", "scripted"]
    assert all(issubclass(loop, EventLoop) for loop in IMPLEMENTATIONS.values())


@pytest.mark.parametrize("name", sorted(PICKS))
def test_no_implementation_adds_state_to_the_network(name: str) -> None:
    """Checkpoints are the same whichever implementation runs: no loop is a registered module."""
    net = make_net(PICKS[name][0])
    keys = {k: v.shape for k, v in net.state_dict().items()}
    assert not any(isinstance(m, EventLoop) for m in net.modules())
    net.event_loops = pick_event_loops(net)
    assert {k: v.shape for k, v in net.state_dict().items()} == keys


@pytest.mark.parametrize(
    "config,loop",
    [
        ({}, ScriptedLoop),
        ({"solver": {"method": "rk4", "steps": 3}, "field": {"depth": 3}}, ScriptedLoop),
        ({"field": {"kind": "decay"}, "time": {"query": "last"}}, ScriptedLoop),
        ({"field": {"kind": "decay", "residual": False}}, ScriptedLoop),
        ({"solver": {"method": "none"}}, FusedLoop),
        ({"solver": {"method": "none"}, "time": {"query": "last"}}, FusedLoop),
        ({}, GraphedLoop),  # off CUDA: the eager loop itself
        ({"horizon": True, "time": {"query": "last"}}, GraphedLoop),
    ],
)
def test_every_implementation_computes_the_eager_loops_states(config: dict, loop: type[EventLoop]) -> None:
    net = make_net(config)
    with torch.no_grad():
        if "decay" in str(config):
            net.ode.anchor.normal_()
            net.ode.raw_rate.normal_()
        inputs = loop_inputs(net)
        states, gap_params = loop(net)(*inputs)
        reference, reference_params = EagerLoop(net)(*inputs)
    torch.testing.assert_close(states, reference, rtol=1e-6, atol=1e-6)
    assert (gap_params is None) == (reference_params is None) == (net.gap_head is None)
    if gap_params is not None:
        assert torch.equal(gap_params, reference_params)


def test_a_copied_network_runs_its_own_parameters() -> None:
    net = make_net({})
    copied = copy.deepcopy(net)
    assert copied.event_loops.inference.net is copied and copied.event_loops.training.net is copied
    with torch.no_grad():
        copied.cell.weight_hh.zero_()
        inputs = loop_inputs(net)
        assert not torch.equal(copied.event_loops.inference(*inputs)[0], net.event_loops.inference(*inputs)[0])


# --- the shared pieces ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["mlp", "decay"])
@pytest.mark.parametrize("method,steps", [("euler", 1), ("euler", 3), ("rk4", 1), ("rk4", 2)])
def test_the_scripted_flow_step_equals_the_flow_module(kind: str, method: str, steps: int) -> None:
    """torchdiffeq's fixed-grid arithmetic, transcribed once for TorchScript, and decay's pull."""
    torch.manual_seed(0)
    flow = build_flow(HIDDEN, {"kind": kind, **MOVING}, {"method": method, "steps": steps})
    with torch.no_grad():
        if isinstance(flow, DecayFlow):
            flow.anchor.normal_()
            flow.raw_rate.normal_()
        h, tau = torch.randn(5, HIDDEN), torch.rand(5) * 4
        torch.testing.assert_close(
            flow_between(h, tau.unsqueeze(-1), *flow_arguments(flow)), flow(h, tau), rtol=1e-6, atol=1e-6
        )


def test_the_flow_modules_are_the_step_functions() -> None:
    torch.manual_seed(0)
    decay = build_flow(HIDDEN, {"kind": "decay", "residual": False}, {"method": "euler"})
    field = build_flow(HIDDEN, {"kind": "mlp", **MOVING}, {"method": "euler"}).scaled.field
    h, tau = torch.randn(4, HIDDEN), torch.rand(4)
    assert torch.equal(decay(h, tau), decay_pull(h, tau.unsqueeze(-1), decay.anchor, decay.rates()))
    layers = [m for m in field.net if isinstance(m, torch.nn.Linear)]
    assert torch.equal(field(h), mlp_field(h, [m.weight for m in layers], [m.bias for m in layers]))


def test_the_padding_rotation_is_exact_and_keeps_each_rows_order() -> None:
    x = torch.arange(3 * 5, dtype=torch.float32).reshape(3, 5, 1)
    real = torch.tensor([[False, False, True, True, True], [True] * 5, [False] * 4 + [True]])
    seen = []

    def run(packed):
        seen.append(packed.batch_sizes.tolist())
        return packed

    out = run_left_padded(x, real, run)
    assert torch.equal(out[real], x[real])
    assert seen == [[3, 2, 2, 1, 1]]  # each row's events start at step 0: lengths 3, 5 and 1
