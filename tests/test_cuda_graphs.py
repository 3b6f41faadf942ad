"""Replaying DeepM3's training loop from CUDA graphs: the capture bookkeeping and the loop's
capture-readiness run on CPU (with a stand-in for the capture); graph-vs-eager equality of
values and gradients needs a GPU (``cuda`` marker)."""

import copy
import logging

import pytest
import torch

from deepm3.bench import synthetic_batch
from deepm3.models.components.cuda_graphs import GraphedLoops
from deepm3.models.components.deepm3 import DeepM3Net
from deepm3.models.components.event_loop import CapturedLoop, EagerLoop, GraphedLoop
from tests.helpers.event_loops import loops

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

CONFIGS = {
    "euler": {"solver": {"method": "euler", "steps": 1}},
    "rk4": {"solver": {"method": "rk4", "steps": 2}},
    "none": {"solver": {"method": "none", "steps": 1}},
    "decay": {"solver": {"method": "euler", "steps": 1}, "field": {"kind": "decay", "zero_init": False}},
    "time_mlp": {"solver": {"method": "euler", "steps": 1}, "field": {"kind": "time_mlp", "zero_init": False}},
    "horizon": {"solver": {"method": "euler", "steps": 1}, "horizon": True, "time": {"query": "last"}},
}


def make_net(name: str, **extra) -> DeepM3Net:
    torch.manual_seed(0)
    field = {"zero_init": False, **CONFIGS[name].get("field", {})}
    return DeepM3Net(60, hidden=8, **{**CONFIGS[name], "field": field, **extra})


def counting_capture(calls: list):
    def capture(module, samples):
        calls.append(tuple(s.shape for s in samples))
        return module

    return capture


def test_one_capture_per_input_signature_then_replays() -> None:
    calls: list = []
    loops = GraphedLoops(lambda: torch.nn.Identity(), eager=lambda x: -x, capture=counting_capture(calls))
    x = torch.ones(2, 3)
    assert torch.equal(loops(x), x) and torch.equal(loops(x + 1), x + 1)
    assert calls == [(torch.Size([2, 3]),)]


def test_signatures_beyond_the_limit_run_eagerly() -> None:
    calls: list = []
    loops = GraphedLoops(lambda: torch.nn.Identity(), eager=lambda x: -x, max_shapes=1, capture=counting_capture(calls))
    loops(torch.ones(4, 3))
    assert torch.equal(loops(torch.ones(2, 3)), -torch.ones(2, 3))  # the eager reference
    assert len(calls) == 1


def test_a_failed_capture_falls_back_to_eager_and_is_not_retried(caplog: pytest.LogCaptureFixture) -> None:
    attempts = []

    def failing(module, samples):
        attempts.append(1)
        raise RuntimeError("operation not permitted when stream is capturing")

    loops = GraphedLoops(lambda: torch.nn.Identity(), eager=lambda x: x * 2, capture=failing)
    with caplog.at_level(logging.WARNING):
        assert torch.equal(loops(torch.ones(3)), torch.full((3,), 2.0))
        assert torch.equal(loops(torch.ones(3)), torch.full((3,), 2.0))
    assert len(attempts) == 1
    assert sum("CUDA graph capture of the event loop failed" in r.message for r in caplog.records) == 1


def test_capture_samples_are_detached_copies_with_the_same_grad_requirements() -> None:
    seen = []

    def capture(module, samples):
        seen.extend(samples)
        return module

    live = torch.randn(2, 3, requires_grad=True) * 2  # a non-leaf of the live graph
    mask = torch.ones(2, 3, dtype=torch.bool)
    GraphedLoops(lambda: _Pass(), eager=None, capture=capture)(live, mask)
    assert seen[0].requires_grad and seen[0].is_leaf and seen[0].data_ptr() != live.data_ptr()
    assert not seen[1].requires_grad


class _Pass(torch.nn.Module):
    def forward(self, *args):
        return args[0]


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_every_parameter_of_the_captured_loop_gets_a_gradient(name: str) -> None:
    """make_graphed_callables differentiates w.r.t. every parameter of the module it captures and
    fails on an unused one: the loop module must hold exactly what the loop reads."""
    net = make_net(name).train()
    batch = synthetic_batch(60, 6, 3, torch.device("cpu"))
    gates = torch.randn(3, 6, 24, requires_grad=True)
    real = (batch["items"] > 0).unsqueeze(-1)
    tau = torch.rand(3, 6)
    loop = CapturedLoop(EagerLoop(net))
    out = loop(gates, real, tau)
    outputs = out if isinstance(out, tuple) else (out,)
    params = list(loop.parameters())
    grads = torch.autograd.grad([o.sum() for o in outputs], [gates, *params], allow_unused=False)
    assert all(g is not None for g in grads)
    assert {id(p) for p in params} <= {id(p) for p in net.parameters()}  # shared, never copied


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_the_graphed_path_computes_what_the_eager_loop_computes(name: str, monkeypatch) -> None:
    """With a stand-in capture (the module itself), the graphed path's plumbing -- inputs, the
    horizon head's second output -- gives the eager loss and gradients exactly."""
    batch = synthetic_batch(60, 7, 4, torch.device("cpu"))

    def loss_and_grads(graphed: bool):
        net = make_net(name).train()
        loop = GraphedLoop(net, capture=lambda m, s: m) if graphed else EagerLoop(net)
        monkeypatch.setattr(GraphedLoop, "applies", lambda self, x: True)
        with loops(net, training=loop):
            torch.manual_seed(1)
            loss = net.training_loss(batch)
        grads = torch.autograd.grad(loss, list(net.parameters()), allow_unused=True)
        monkeypatch.undo()
        assert not graphed or len(loop.graphs.graphs) == 1
        return loss, grads

    eager_loss, eager_grads = loss_and_grads(False)
    graphed_loss, graphed_grads = loss_and_grads(True)
    assert torch.equal(eager_loss, graphed_loss)
    for a, b in zip(eager_grads, graphed_grads):
        assert (a is None and b is None) or torch.equal(a, b)


def test_on_cpu_no_graph_is_built_and_checkpoints_are_unchanged() -> None:
    net = make_net("euler", cuda_graphs=True).train()
    keys = set(net.state_dict())
    assert net.event_loops.training.name == "graphed"
    net.training_loss(synthetic_batch(60, 5, 2, torch.device("cpu"))).backward()
    assert net.event_loops.training.graphs is None
    assert set(net.state_dict()) == keys


def test_a_copied_network_drops_the_original_graphs() -> None:
    net = make_net("euler", cuda_graphs=True)
    loop = net.event_loops.training
    loop.graphs = GraphedLoops(lambda: CapturedLoop(loop), loop.run, capture=lambda m, s: m)
    copied = copy.deepcopy(net)
    assert copied.event_loops.training.graphs is None and copied.event_loops.training.net is copied
    assert net.event_loops.training.graphs is not None


def test_graphs_are_opt_in_and_off_where_capture_cannot_work() -> None:
    def training_loop(net: DeepM3Net) -> str:
        return net.event_loops.training.name

    assert training_loop(make_net("euler")) == "eager"  # off by default until checked on a GPU
    assert training_loop(make_net("euler", cuda_graphs=True)) == "graphed"
    lipschitz = DeepM3Net(60, hidden=8, field={"lipschitz": True}, cuda_graphs=True)
    assert training_loop(lipschitz) == "eager"  # power iteration
    odeint = {"method": "euler", "steps": 1, "implementation": "odeint"}
    assert training_loop(DeepM3Net(60, hidden=8, solver=odeint, cuda_graphs=True)) == "eager"  # host-side checks


@cuda
@pytest.mark.cuda
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_graphed_training_matches_eager_training_on_cuda(name: str) -> None:
    """Three optimizer steps, graphs vs eager: losses and final parameters agree to 1e-5
    (the same kernels; only their launch differs, so differences are reduction-order noise)."""
    device = torch.device("cuda")
    batch = synthetic_batch(60, 12, 8, device)

    def train(graphs: bool):
        net = make_net(name, cuda_graphs=graphs).to(device).train()
        net.dropout.p = 0.0  # dropout draws differ between a replay and eager code
        optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
        losses = []
        for _ in range(3):
            optimizer.zero_grad(set_to_none=True)
            loss = net.training_loss(batch)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        return net, losses

    graphed, graphed_losses = train(True)
    eager, eager_losses = train(False)
    graphs = graphed.event_loops.training.graphs
    assert graphs is not None and len(graphs.graphs) == 1
    assert graphed_losses == pytest.approx(eager_losses, abs=1e-5)
    for a, b in zip(graphed.parameters(), eager.parameters()):
        assert torch.allclose(a, b, atol=1e-5)
