"""DeepM3's per-event loop as one TorchScript function: the fast inference path.

Eager PyTorch pays Python and dispatcher overhead for each of the ~20 small operations of an
event step, 200 times per window; at batch 1 that overhead, not arithmetic, is the latency.
Scripting the whole window loop (GRU update + fixed-grid solver steps of the MLP field) removes
the per-op Python cost. On this project's 2-core CPU it cut batch-1 latency at the ML-1M shape
by about half (docs/speed.md, "Fused paths"). ``torch.compile`` of the step was
slower at batch 1 (per-call guards cost more than the work) and needs a compiler at runtime.

The loop calls the step functions of :mod:`.steps` -- the same ones the eager loop and the
streaming ``advance`` call -- so only the order of steps per event is written here. It is the
``scripted`` implementation of :mod:`.event_loop`: used only without gradients (inference), only
for what it implements (:func:`scriptable`: ``field.kind=mlp``, and ``decay`` with or without
its residual field: the MLP flow, then the exact pull towards the anchor; ``euler``/``rk4``),
and tested equal to the eager loop. If scripting fails on some platform the model logs one line
and stays eager.

``torch.jit.script`` is deprecated (torch 2.13 warns and still runs it); the
warning is silenced here on purpose, and the day torch drops it, the fallback above takes over.
"""

from __future__ import annotations

import logging
import warnings
from typing import Callable, List, Optional

import torch
from torch import nn

from deepm3.models.components.flows import DecayFlow
from deepm3.models.components.ode import GapODE, VectorField
from deepm3.models.components.steps import METHOD_CODES, absorb, flow_between

log = logging.getLogger(__name__)

FlowArguments = tuple[List[torch.Tensor], List[torch.Tensor], int, int, Optional[torch.Tensor], Optional[torch.Tensor]]


def _plain_field(ode: nn.Module | None) -> bool:
    return (
        isinstance(ode, GapODE)
        and isinstance(ode.scaled.field, VectorField)
        and not getattr(ode.scaled, "time_dependent", False)
        and ode.method in METHOD_CODES
    )


def scriptable(flow: nn.Module) -> bool:
    """Whether the scripted loop implements this flow: an autonomous MLP field under euler or
    rk4, or ``decay`` (active) whose residual, if any, is such a field."""
    if isinstance(flow, DecayFlow):
        return flow.active and (flow.residual is None or _plain_field(flow.residual))
    return _plain_field(flow)


def flow_arguments(flow: nn.Module) -> FlowArguments:
    """What :func:`.steps.flow_between` reads of a :func:`scriptable` flow, read afresh per call:
    the field's layer weights and biases, solver method code and steps, and decay's anchor and rates."""
    decay = flow if isinstance(flow, DecayFlow) else None
    ode = decay.residual if decay is not None else flow
    layers = [] if ode is None else [m for m in ode.scaled.field.net if isinstance(m, nn.Linear)]
    return (
        [m.weight for m in layers],
        [m.bias for m in layers],
        0 if ode is None else METHOD_CODES[ode.method],
        1 if ode is None else ode.steps,
        None if decay is None else decay.anchor,
        None if decay is None else decay.rates(),
    )


def _window_loop(
    input_gates: torch.Tensor,
    real: torch.Tensor,
    tau: torch.Tensor,
    h: torch.Tensor,
    weight_hh: torch.Tensor,
    bias_hh: torch.Tensor,
    weights: List[torch.Tensor],
    biases: List[torch.Tensor],
    method: int,
    steps: int,
    flow_first: bool,
    anchor: Optional[torch.Tensor] = None,
    rates: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """``[B, L, D]`` states: per event, (flow,) GRU update, (flow) -- as the eager loop."""
    outputs: List[torch.Tensor] = []
    for i in range(input_gates.shape[1]):
        gap = tau[:, i].unsqueeze(-1)
        if flow_first:
            h = flow_between(h, gap, weights, biases, method, steps, anchor, rates)
        h = absorb(h, input_gates[:, i], real[:, i].unsqueeze(-1), weight_hh, bias_hh)
        if not flow_first:
            h = flow_between(h, gap, weights, biases, method, steps, anchor, rates)
        outputs.append(h)
    return torch.stack(outputs, dim=1)


_COMPILED: Optional[Callable] = None
_FAILED = False


def window_loop() -> Optional[Callable]:
    """The scripted loop (compiled once per process), or None when scripting is unavailable."""
    global _COMPILED, _FAILED
    if _COMPILED is None and not _FAILED:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                _COMPILED = torch.jit.script(_window_loop)
        except Exception as exc:  # noqa: BLE001 -- any failure means: stay eager
            _FAILED = True
            log.warning(
                "DeepM3: TorchScript loop unavailable (%s: %s); using the eager loop",
                type(exc).__name__,
                str(exc).splitlines()[0] if str(exc) else "",
            )
    return _COMPILED
