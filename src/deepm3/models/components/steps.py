"""One event's arithmetic, written once: plain tensor functions that eager code calls and that
TorchScript compiles (scripting a function compiles the functions it calls, and inlines them).

Every execution path of DeepM3 (:mod:`.event_loop`) and the streaming ``advance``/``readout``
go through these: the GRU update (:func:`gru_step`), the MLP field (:func:`mlp_field`, also
:class:`.ode.VectorField`'s forward), the ``decay`` flow's exact pull (:func:`decay_pull`, also
:class:`.flows.DecayFlow`'s forward), and the flow over one gap as the scripted loop runs it
(:func:`flow_between`). Only TorchScript-compatible Python here: annotated arguments, no modules.

The eager path integrates a field with torchdiffeq's fixed-grid solver (:class:`.ode.GapODE`);
:func:`fixed_grid_flow` is the same arithmetic (Euler; RK4 is torchdiffeq's 3/8-rule variant
``rk4_alt_step_func``) in the same order, for the scripted loop, which cannot call torchdiffeq.
"""

from __future__ import annotations

from typing import List, Optional

import torch

EULER, RK4 = 0, 1
METHOD_CODES = {"euler": EULER, "rk4": RK4}


def gru_step(
    input_gates: torch.Tensor, h: torch.Tensor, weight_hh: torch.Tensor, bias_hh: torch.Tensor
) -> torch.Tensor:
    """``nn.GRUCell``'s update (same parameters and gate order) from precomputed input gates
    ``W_ih x + b_ih`` (``[B, 3D]``): the input side does not depend on the state, so a loop
    computes it for a whole window in one matmul."""
    hidden_gates = torch.nn.functional.linear(h, weight_hh, bias_hh)
    i_r, i_z, i_n = input_gates.chunk(3, dim=-1)
    h_r, h_z, h_n = hidden_gates.chunk(3, dim=-1)
    reset = torch.sigmoid(i_r + h_r)
    update = torch.sigmoid(i_z + h_z)
    candidate = torch.tanh(i_n + reset * h_n)
    return candidate + update * (h - candidate)


def absorb(
    h: torch.Tensor, input_gates: torch.Tensor, is_real: torch.Tensor, weight_hh: torch.Tensor, bias_hh: torch.Tensor
) -> torch.Tensor:
    """The state after an event: the GRU update where ``is_real`` (``[B, 1]``), unchanged on padding."""
    return torch.where(is_real, gru_step(input_gates, h, weight_hh, bias_hh), h)


def mlp_field(h: torch.Tensor, weights: List[torch.Tensor], biases: List[torch.Tensor]) -> torch.Tensor:
    """``f(h)``: ``tanh(W_k . + b_k)`` per layer, the output bounded by the last tanh."""
    out = h
    for k in range(len(weights)):
        out = torch.tanh(torch.nn.functional.linear(out, weights[k], biases[k]))
    return out


def decay_pull(h: torch.Tensor, gap: torch.Tensor, anchor: torch.Tensor, rates: torch.Tensor) -> torch.Tensor:
    """``anchor + exp(-rates * gap) (h - anchor)``: the exact solution of the linear pull
    ``dh/dt = -rates (h - anchor)`` over ``gap`` (``[B, 1]``)."""
    return anchor + torch.exp(-rates * gap.to(h.dtype)) * (h - anchor)


def fixed_grid_flow(
    h: torch.Tensor, tau: torch.Tensor, weights: List[torch.Tensor], biases: List[torch.Tensor], method: int, steps: int
) -> torch.Tensor:
    """``steps`` fixed steps of ``dh/ds = tau * f(h)`` over ``s in [0, 1]`` (``tau`` ``[B, 1]``)."""
    dt = 1.0 / steps
    for _ in range(steps):
        k1 = tau * mlp_field(h, weights, biases)
        if method == 0:
            h = h + dt * k1
        else:
            k2 = tau * mlp_field(h + dt * k1 * (1.0 / 3.0), weights, biases)
            k3 = tau * mlp_field(h + dt * (k2 - k1 * (1.0 / 3.0)), weights, biases)
            k4 = tau * mlp_field(h + dt * (k1 - k2 + k3), weights, biases)
            h = h + (k1 + 3.0 * (k2 + k3) + k4) * dt * 0.125
    return h


def flow_between(
    h: torch.Tensor,
    gap: torch.Tensor,
    weights: List[torch.Tensor],
    biases: List[torch.Tensor],
    method: int,
    steps: int,
    anchor: Optional[torch.Tensor],
    rates: Optional[torch.Tensor],
) -> torch.Tensor:
    """The flow over one gap (``[B, 1]``) as the scripted loop runs it: the MLP field's solver
    steps (none when ``weights`` is empty), then, for ``decay``, the exact pull."""
    if len(weights) > 0:
        h = fixed_grid_flow(h, gap, weights, biases, method, steps)
    if anchor is not None and rates is not None:
        h = decay_pull(h, gap, anchor, rates)
    return h
