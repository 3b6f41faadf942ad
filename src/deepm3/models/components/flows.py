"""What DeepM3's latent state does between events: the ``model.net.field.kind`` options.

Every option maps ``(h [B, D], tau [B])`` to the state after a gap of ``tau`` (the
transformed gap, see :mod:`.time`), is an exact identity at ``tau = 0``, and integrates its
learned part with the same torchdiffeq fixed-grid solvers (:class:`.ode.GapODE`):

- ``mlp`` -- ``dh/dt = f(h)``, an autonomous MLP field (the original DeepM3 design).
- ``time_mlp`` -- ``dh/dt = f(h, e)``, non-autonomous: ``e`` is the time elapsed since the
  event, so the drift can depend on how long the silence has lasted.
- ``decay`` -- ``dh/dt = -lambda * (h - mu) + g(h)``: an Ornstein-Uhlenbeck pull towards a
  learned anchor ``mu`` at learned per-coordinate rates ``lambda > 0`` (the GRU-D / CT-GRU
  lineage: interest fades towards a baseline), plus a learned residual field ``g`` (zero at
  start; ``field.residual=false`` drops it). The linear part is applied **exactly** over any
  gap, ``mu + exp(-lambda tau) (h - mu)``; ``g`` goes through the solver first (Lie splitting:
  exact when ``g = 0``, first order in the splitting otherwise). The pull is
  :func:`.steps.decay_pull`, the one every execution path calls.

``solver.method=none`` makes every option the identity: the ODE-free ablation.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from deepm3.errors import ConfigError
from deepm3.models.components.ode import GapODE, TimeVectorField, VectorField
from deepm3.models.components.steps import decay_pull

FIELD_KINDS = ("mlp", "time_mlp", "decay")


class DecayFlow(nn.Module):
    """``mu + exp(-lambda tau) (h - mu)`` after an optional learned residual flow."""

    def __init__(self, hidden: int, residual: GapODE | None, method: str, init_rate: float = 0.1) -> None:
        super().__init__()
        self.residual = residual
        self.active = method != "none"
        self.anchor = nn.Parameter(torch.zeros(hidden))
        # softplus(raw) = init_rate at start: a slow fade that training can speed up or stop
        raw = torch.log(torch.expm1(torch.tensor(float(init_rate))))
        self.raw_rate = nn.Parameter(torch.full((hidden,), float(raw)))

    def rates(self) -> torch.Tensor:
        return F.softplus(self.raw_rate)

    def forward(self, h: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        if not self.active:
            return h
        if self.residual is not None:
            h = self.residual(h, tau)
        return decay_pull(h, tau.unsqueeze(-1), self.anchor, self.rates())


def build_flow(hidden: int, field: dict[str, Any] | None, solver: dict[str, Any] | None) -> nn.Module:
    """The between-events flow ``(h, tau) -> h'`` that ``field.kind`` names."""
    field, solver = dict(field or {}), dict(solver or {"method": "euler", "steps": 1})
    kind = field.get("kind", "mlp")
    if kind not in FIELD_KINDS:
        raise ConfigError(f"model.net.field.kind={kind!r} is unknown; expected one of {list(FIELD_KINDS)}")
    method = solver.get("method", "euler")
    mlp = {
        "width": field.get("width", 2 * hidden),
        "depth": field.get("depth", 2),
        "lipschitz": field.get("lipschitz", False),
        "zero_init": field.get("zero_init", True),
    }

    def ode(vector_field: nn.Module) -> GapODE:
        return GapODE(
            vector_field,
            method=method,
            steps=solver.get("steps", 1),
            implementation=solver.get("implementation", "steps"),
        )

    if kind == "mlp":
        return ode(VectorField(hidden, **mlp))
    if kind == "time_mlp":
        return ode(TimeVectorField(hidden, **mlp))
    rate = field.get("init_rate", 0.1)
    if not (isinstance(rate, (int, float)) and not isinstance(rate, bool) and rate > 0):
        raise ConfigError(f"model.net.field.init_rate={rate!r}; expected a positive number")
    residual = ode(VectorField(hidden, **mlp)) if field.get("residual", True) else None
    if method not in ("euler", "rk4", "none"):  # GapODE validates; a residual-free decay must too
        ode(VectorField(hidden, **mlp))
    return DecayFlow(hidden, residual, method, float(rate))
