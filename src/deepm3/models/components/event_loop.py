"""DeepM3's event loop behind one interface, with its implementations picked once per network.

An :class:`EventLoop` maps a window's item embeddings ``emb [B, L, D]`` (after dropout), its
event mask ``real [B, L]`` and its transformed gaps ``tau [B, L]`` to the states after each
event ``[B, L, D]`` (before the output norm) and, with the horizon head, the head's gap
parameters ``[B, L, 2]`` (else ``None``). Per event the state flows over the gap and absorbs
the event -- the flow first under ``time.query=last``, after under ``target``.

Implementations (all tested equal to ``eager``):

- ``eager`` -- the reference: a Python loop over the events calling the flow module and
  :func:`.steps.absorb`. Supports every configuration, and gradients.
- ``scripted`` -- the whole loop as one TorchScript function (:mod:`.scripted`) calling the
  same step functions; inference only; falls back to ``eager`` if scripting is unavailable.
- ``fused`` -- ``solver.method=none`` leaves a plain GRU: one packed ``nn.GRU`` call over the
  window with the cell's own parameters (:func:`.recurrent.run_left_padded`); inference only.
- ``graphed`` -- training on CUDA: the eager loop replayed from CUDA graphs (:mod:`.cuda_graphs`);
  off CUDA, in eval mode or without gradients it runs ``eager``.

:func:`pick_event_loops` chooses once, from the configuration, one implementation for calls
with gradients (``training``: ``graphed`` or ``eager``) and one for calls without (``inference``:
``fused``, ``scripted`` or ``eager``); :meth:`EventLoops.current` hands a call the one its
gradient mode asks for. No implementation holds weights of its own: the network's state dict
and checkpoints are the same whichever runs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from deepm3.models.components.cuda_graphs import GraphedLoops
from deepm3.models.components.recurrent import run_left_padded
from deepm3.models.components.scripted import flow_arguments, scriptable, window_loop
from deepm3.models.components.steps import absorb
from deepm3.models.components.time import TimeTransform

LoopResult = tuple[torch.Tensor, torch.Tensor | None]


class LoopNetwork(Protocol):
    """What an event loop reads of its network (:class:`.deepm3.DeepM3Net` has all of it), typed
    here so that this module never imports the network that picks its loops: no circle."""

    hidden: int
    training: bool
    uses_time: bool
    horizon: bool
    h0: nn.Parameter
    cell: nn.GRUCell
    ode: nn.Module
    time: TimeTransform
    gap_head: nn.Module | None

    def input_gates(self, emb: torch.Tensor) -> torch.Tensor: ...


class EventLoop(ABC):
    """One way of running a window's per-event loop for the network ``net`` (not registered on it)."""

    name: ClassVar[str]

    def __init__(self, net: LoopNetwork) -> None:
        self.net = net

    @abstractmethod
    def __call__(self, emb: torch.Tensor, real: torch.Tensor, tau: torch.Tensor) -> LoopResult:
        """``(states [B, L, D], gap parameters [B, L, 2] or None)`` from ``emb``, ``real``, ``tau``."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class EagerLoop(EventLoop):
    """The reference loop, in Python: the flow module and :func:`.steps.absorb` per event."""

    name = "eager"

    def __call__(self, emb: torch.Tensor, real: torch.Tensor, tau: torch.Tensor) -> LoopResult:
        looped = self.run(self.net.input_gates(emb), real.unsqueeze(-1), tau)
        return looped if isinstance(looped, tuple) else (looped, None)

    def run(
        self, input_gates: torch.Tensor, real: torch.Tensor, tau: torch.Tensor
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """States ``[B, L, D]`` (and, with the horizon head, its gap parameters ``[B, L, 2]``) from
        input gates ``[B, L, 3D]``, the event mask ``[B, L, 1]`` and the gaps ``tau [B, L]``. Only
        tensors in and out, so a CUDA graph can replay it."""
        net = self.net
        flow_first = net.time.query == "last"  # flow to each event, then update; never past the last
        h = net.h0.expand(input_gates.shape[0], -1)
        outputs, gap_params = [], []
        # unbind: one backward node for all steps (indexing [:, i] would add a full-size gradient per step)
        for gates, is_real, gap in zip(input_gates.unbind(1), real.unbind(1), tau.unbind(1)):
            if flow_first:
                h = net.ode(h, gap)  # 0 on padding and the window's first event: an exact identity
            h = absorb(h, gates, is_real, net.cell.weight_hh, net.cell.bias_hh)
            if not flow_first:
                h = net.ode(h, gap)
            if net.gap_head is not None:  # read out at the expected next time, carry h unchanged
                params = net.gap_head(h)
                gap_params.append(params)
                outputs.append(net.ode(h, F.softplus(params[:, 0])))
            else:
                outputs.append(h)
        states = torch.stack(outputs, dim=1)
        return (states, torch.stack(gap_params, dim=1)) if net.gap_head is not None else states


class ScriptedLoop(EagerLoop):
    """The loop as one TorchScript function over the flow's weights (:mod:`.scripted`)."""

    name = "scripted"

    def __call__(self, emb: torch.Tensor, real: torch.Tensor, tau: torch.Tensor) -> LoopResult:
        loop = window_loop()
        if loop is None:  # scripting failed on this platform (logged once): the eager loop
            return super().__call__(emb, real, tau)
        net = self.net
        weights, biases, method, steps, anchor, rates = flow_arguments(net.ode)
        states = loop(
            net.input_gates(emb),
            real,
            tau,
            net.h0.expand(emb.shape[0], -1),
            net.cell.weight_hh,
            net.cell.bias_hh,
            weights,
            biases,
            method,
            steps,
            net.time.query == "last",
            anchor,
            rates,
        )
        return states, None


class FusedLoop(EventLoop):
    """``solver.method=none``: the loop is a plain GRU, run as one packed ``nn.GRU`` call with the
    cell's own parameters (``torch.func.functional_call``; the template lives on the meta device
    and holds no weights). Inference only: on CPU the packed GRU's backward measured 2.5x slower
    than the loop."""

    name = "fused"

    def __init__(self, net: LoopNetwork) -> None:
        super().__init__(net)
        self.template = nn.GRU(net.hidden, net.hidden, batch_first=True, device="meta")

    def __call__(self, emb: torch.Tensor, real: torch.Tensor, tau: torch.Tensor) -> LoopResult:
        return self.states(emb, real), None

    def states(self, emb: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """The loop's states without an ODE: rows run from ``h0``; padding keeps ``h0``."""
        net = self.net
        weights = {
            "weight_ih_l0": net.cell.weight_ih,
            "weight_hh_l0": net.cell.weight_hh,
            "bias_ih_l0": net.cell.bias_ih,
            "bias_hh_l0": net.cell.bias_hh,
        }
        h0 = net.h0.expand(1, emb.shape[0], -1).contiguous()
        states = run_left_padded(emb, real, lambda packed: functional_call(self.template, weights, (packed, h0))[0])
        return torch.where(real.unsqueeze(-1), states, net.h0.expand_as(states))


class CapturedLoop(nn.Module):
    """The eager loop of one network as a module whose parameters are exactly the ones the loop
    reads (a CUDA graph's backward returns gradients for those; the input-side GRU weights and
    the embedding stay outside, in eager code). Not registered on the network: its state dict and
    checkpoints are unchanged."""

    def __init__(self, loop: EagerLoop) -> None:
        super().__init__()
        net = loop.net
        object.__setattr__(self, "loop", loop)
        self.h0 = net.h0
        self.weight_hh = net.cell.weight_hh
        self.bias_hh = net.cell.bias_hh
        self.ode = net.ode if net.uses_time else None  # solver=none: the flow is not called
        self.gap_head = net.gap_head
        self.train(net.training)

    def forward(self, input_gates: torch.Tensor, real: torch.Tensor, tau: torch.Tensor) -> Any:
        return self.loop.run(input_gates, real, tau)


class GraphedLoop(EagerLoop):
    """The eager loop replayed from CUDA graphs, one capture per input shape, where :meth:`applies`
    (a training call on CUDA); elsewhere the eager loop. ``capture`` is injectable for tests."""

    name = "graphed"

    def __init__(self, net: LoopNetwork, capture: Callable[..., Any] | None = None) -> None:
        super().__init__(net)
        self.capture = capture
        self.graphs: GraphedLoops | None = None  # built at the first graphed call

    def applies(self, input_gates: torch.Tensor) -> bool:
        """Whether this call is a training step on CUDA that may replay the loop from a graph."""
        return self.net.training and torch.is_grad_enabled() and input_gates.is_cuda

    def __call__(self, emb: torch.Tensor, real: torch.Tensor, tau: torch.Tensor) -> LoopResult:
        input_gates = self.net.input_gates(emb)
        if not self.applies(input_gates):
            looped = self.run(input_gates, real.unsqueeze(-1), tau)
        else:
            if self.graphs is None:
                self.graphs = GraphedLoops(lambda: CapturedLoop(self), self.run, capture=self.capture)
            looped = self.graphs(input_gates, real.unsqueeze(-1), tau)
        return looped if isinstance(looped, tuple) else (looped, None)

    def __getstate__(self) -> dict:
        # Graphs belong to these parameters on this device: a copy or a pickle captures its own.
        return {**self.__dict__, "graphs": None}


IMPLEMENTATIONS: dict[str, type[EventLoop]] = {
    loop.name: loop for loop in (EagerLoop, ScriptedLoop, FusedLoop, GraphedLoop)
}


@dataclass(frozen=True)
class EventLoops:
    """The implementation for calls with gradients and the one for calls without."""

    training: EventLoop
    inference: EventLoop

    def current(self) -> EventLoop:
        return self.training if torch.is_grad_enabled() else self.inference


def pick_event_loops(net: LoopNetwork, *, lipschitz: bool = False, cuda_graphs: bool = False) -> EventLoops:
    """The implementations a network of this configuration runs (``lipschitz``: ``field.lipschitz``;
    ``cuda_graphs``: ``model.net.cuda_graphs``):

    - inference: ``fused`` under ``solver.method=none``; ``scripted`` where :mod:`.scripted`
      implements the flow (:func:`.scripted.scriptable`), without spectral norm and without the
      horizon head; else ``eager``.
    - training: ``graphed`` with ``cuda_graphs`` where every op of the loop can be captured: not
      spectral norm (its power iteration), not torchdiffeq's public odeint (it checks its inputs on
      the host); else ``eager``.
    """
    if not net.uses_time:
        inference: EventLoop = FusedLoop(net)
    elif scriptable(net.ode) and not lipschitz and not net.horizon:
        inference = ScriptedLoop(net)
    else:
        inference = EagerLoop(net)
    capturable = (
        not lipschitz
        and getattr(net.ode, "implementation", "steps") == "steps"
        and getattr(getattr(net.ode, "residual", None), "implementation", "steps") == "steps"
    )
    training = GraphedLoop(net) if cuda_graphs and capturable else EagerLoop(net)
    return EventLoops(training=training, inference=inference)
