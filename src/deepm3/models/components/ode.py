"""Evolving a batch of states over per-sample time gaps with torchdiffeq.

``odeint`` takes one time grid for the whole batch, so each sample's gap ``tau_b`` is
folded into the vector field: integrating ``dh/ds = tau_b * f(h)`` over ``s in [0, 1]``
equals integrating ``dh/dt = f(h)`` over ``[0, tau_b]``. A zero gap is then an exact
identity (padding and tied timestamps cost nothing). ``rk4`` is torchdiffeq's 3/8-rule
variant (4th order, 4 evaluations per step); ``euler`` is 1st order, 1 evaluation.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm
from torchdiffeq import odeint

from deepm3.errors import ConfigError

METHODS = ("euler", "rk4", "none")


class VectorField(nn.Module):
    """``f(h)``: an MLP with tanh activations and a tanh-bounded output.

    The bounded output keeps ``|dh/dt| <= 1`` per coordinate, so even a gap of years moves the
    state by a finite amount; ``lipschitz=True`` adds spectral normalisation to every layer,
    bounding the field's Lipschitz constant by 1 (stable, contractive-friendly dynamics).
    """

    def __init__(self, hidden: int, width: int, depth: int = 2, lipschitz: bool = False) -> None:
        super().__init__()
        if depth < 1:
            raise ConfigError(f"model.net.field.depth={depth}; expected an integer >= 1")
        sizes = [hidden] + [width] * (depth - 1) + [hidden]
        layers: list[nn.Module] = []
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            linear = nn.Linear(n_in, n_out)
            layers.append(spectral_norm(linear) if lipschitz else linear)
            layers.append(nn.Tanh())
        self.net = nn.Sequential(*layers)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h)


class _ScaledField(nn.Module):
    """``(s, h) -> tau * f(h)``: the per-sample time rescaling torchdiffeq needs."""

    def __init__(self, field: nn.Module) -> None:
        super().__init__()
        self.field = field
        self.tau: torch.Tensor | None = None

    def forward(self, s: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return self.tau * self.field(h)


class GapODE(nn.Module):
    """Evolves states ``[B, D]`` over gaps ``tau [B]`` with ``steps`` fixed solver steps per gap."""

    def __init__(self, field: nn.Module, method: str = "euler", steps: int = 1) -> None:
        super().__init__()
        if method not in METHODS:
            raise ConfigError(f"solver.method={method!r} is unknown; expected one of {list(METHODS)}")
        if method != "none" and (not isinstance(steps, int) or steps < 1):
            raise ConfigError(f"solver.steps={steps!r}; expected an integer >= 1")
        self.method = method
        self.steps = steps
        self.scaled = _ScaledField(field)
        self.register_buffer("grid", torch.tensor([0.0, 1.0]), persistent=False)

    def forward(self, h: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        if self.method == "none":
            return h
        self.scaled.tau = tau.to(h.dtype).unsqueeze(-1)
        out = odeint(self.scaled, h, self.grid.to(h.dtype), method=self.method,
                     options={"step_size": 1.0 / self.steps})
        self.scaled.tau = None
        return out[-1]
