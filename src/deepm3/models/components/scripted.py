"""DeepM3's per-event loop as one TorchScript function: the fast inference path.

Eager PyTorch pays Python and dispatcher overhead for each of the ~20 small operations of an
event step, 200 times per window; at batch 1 that overhead, not arithmetic, is the latency.
Scripting the whole window loop (GRU update + fixed-grid solver steps of the MLP field) removes
the per-op Python cost. On this project's 2-core CPU it cut batch-1 latency at the ML-1M shape
by about half (docs/speed.md, "Fused paths"). ``torch.compile`` of the step was
slower at batch 1 (per-call guards cost more than the work) and needs a compiler at runtime.

The eager loop in :mod:`.deepm3` stays the reference: the scripted path is used only without
gradients (inference), only for what it implements (``field.kind=mlp``, and ``decay`` with or
without its residual field: the MLP flow, then the exact pull towards the anchor; no spectral
norm, ``euler``/``rk4``, no horizon head), and is tested equal to the eager loop. The arithmetic is
torchdiffeq's (Euler; RK4 is its 3/8-rule variant ``rk4_alt_step_func``), in the same order.
If scripting fails on some platform the model logs one line and stays eager.

``torch.jit.script`` is deprecated (torch 2.13 warns and still runs it); the
warning is silenced here on purpose, and the day torch drops it, the fallback above takes over.
"""

from __future__ import annotations

import logging
import warnings
from typing import Callable, List, Optional

import torch

log = logging.getLogger(__name__)

EULER, RK4 = 0, 1
METHOD_CODES = {"euler": EULER, "rk4": RK4}


def _field(h: torch.Tensor, weights: List[torch.Tensor], biases: List[torch.Tensor]) -> torch.Tensor:
    out = h
    for k in range(len(weights)):
        out = torch.tanh(torch.nn.functional.linear(out, weights[k], biases[k]))
    return out


def _flow(
    h: torch.Tensor, tau: torch.Tensor, weights: List[torch.Tensor], biases: List[torch.Tensor], method: int, steps: int
) -> torch.Tensor:
    """``steps`` fixed steps of ``dh/ds = tau * f(h)`` over ``s in [0, 1]``."""
    dt = 1.0 / steps
    for _ in range(steps):
        k1 = tau * _field(h, weights, biases)
        if method == 0:
            h = h + dt * k1
        else:
            k2 = tau * _field(h + dt * k1 * (1.0 / 3.0), weights, biases)
            k3 = tau * _field(h + dt * (k2 - k1 * (1.0 / 3.0)), weights, biases)
            k4 = tau * _field(h + dt * (k1 - k2 + k3), weights, biases)
            h = h + (k1 + 3.0 * (k2 + k3) + k4) * dt * 0.125
    return h


def _between(
    h: torch.Tensor,
    gap: torch.Tensor,
    weights: List[torch.Tensor],
    biases: List[torch.Tensor],
    method: int,
    steps: int,
    anchor: Optional[torch.Tensor],
    rates: Optional[torch.Tensor],
) -> torch.Tensor:
    """The flow over one gap: the MLP field's solver steps (none when ``weights`` is empty),
    then, for ``decay``, the exact pull ``anchor + exp(-rates * gap) (h - anchor)``."""
    if len(weights) > 0:
        h = _flow(h, gap, weights, biases, method, steps)
    if anchor is not None and rates is not None:
        h = anchor + torch.exp(-rates * gap.to(h.dtype)) * (h - anchor)
    return h


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
    """``[B, L, D]`` states: per event, (flow,) GRU update, (flow) -- as DeepM3Net's eager loop."""
    outputs: List[torch.Tensor] = []
    for i in range(input_gates.shape[1]):
        gap = tau[:, i].unsqueeze(-1)
        if flow_first:
            h = _between(h, gap, weights, biases, method, steps, anchor, rates)
        hidden_gates = torch.nn.functional.linear(h, weight_hh, bias_hh)
        i_r, i_z, i_n = input_gates[:, i].chunk(3, dim=-1)
        h_r, h_z, h_n = hidden_gates.chunk(3, dim=-1)
        reset = torch.sigmoid(i_r + h_r)
        update = torch.sigmoid(i_z + h_z)
        candidate = torch.tanh(i_n + reset * h_n)
        h = torch.where(real[:, i].unsqueeze(-1), candidate + update * (h - candidate), h)
        if not flow_first:
            h = _between(h, gap, weights, biases, method, steps, anchor, rates)
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
