"""Evolving a batch of states over per-sample time gaps with torchdiffeq.

``odeint`` takes one time grid for the whole batch, so each sample's gap ``tau_b`` is
folded into the vector field: integrating ``dh/ds = tau_b * f(h)`` over ``s in [0, 1]``
equals integrating ``dh/dt = f(h)`` over ``[0, tau_b]``. A zero gap is then an exact
identity (padding and tied timestamps cost nothing). ``rk4`` is torchdiffeq's 3/8-rule
variant (4th order, 4 evaluations per step); ``euler`` is 1st order, 1 evaluation.

Two implementations give identical numbers (a test compares them bit for bit):
``odeint`` calls ``torchdiffeq.odeint`` for every gap; ``steps`` (default) builds torchdiffeq's
own fixed-grid solver once and calls its step function over the same time grid, skipping the
input checks, grid construction and solution bookkeeping that ``odeint`` repeats on every
call -- for a state this small that per-call overhead costs more than the maths (torchdiffeq issue #278).

``steps`` reaches into torchdiffeq's private ``_impl`` (its solver table, fixed-grid solver and
grid constructor), which pyproject.toml pins to a tested range. Should a release move them,
deepm3 warns once at import and solves every gap with the public ``odeint``: the same numbers,
only slower.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch
import torchdiffeq
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm
from torchdiffeq import odeint

from deepm3.errors import ConfigError
from deepm3.models.components.steps import mlp_field

METHODS = ("euler", "rk4", "none")
IMPLEMENTATIONS = ("steps", "odeint")


def _private_solvers() -> tuple[dict[str, Any], Callable[..., Any]] | None:
    """torchdiffeq's fixed-grid solver classes and step-grid constructor, or ``None`` (one warning)
    when this torchdiffeq does not have them where the ``steps`` implementation expects them."""
    try:
        from torchdiffeq._impl.odeint import SOLVERS
        from torchdiffeq._impl.solvers import FixedGridODESolver

        solvers = {method: SOLVERS[method] for method in ("euler", "rk4")}
        grid = FixedGridODESolver._grid_constructor_from_step_size
        for solver in solvers.values():
            solver._step_func  # noqa: B018 -- the attribute the step loop calls
    except (ImportError, AttributeError, KeyError, TypeError) as exc:
        version = getattr(torchdiffeq, "__version__", "?")
        warnings.warn(
            f"torchdiffeq {version} lacks the internals of deepm3's fast solver path ({type(exc).__name__}: "
            f"{exc}); solving every gap with torchdiffeq.odeint instead (same numbers, slower)",
            RuntimeWarning,
            stacklevel=2,
        )
        return None
    return solvers, grid


_PRIVATE = _private_solvers()
FAST_PATH = _PRIVATE is not None  # False: implementation=steps runs as implementation=odeint


class VectorField(nn.Module):
    """``f(h)``: an MLP with tanh activations and a tanh-bounded output.

    The bounded output keeps ``|dh/dt| <= 1`` per coordinate, so even a gap of years moves the
    state by a finite amount; ``lipschitz=True`` adds spectral normalisation to every layer,
    bounding the field's Lipschitz constant by 1 (stable, contractive-friendly dynamics).

    ``zero_init=True`` zeroes the last layer, so training starts from the identity flow (the
    network without an ODE) and grows the dynamics from there. A random field instead moves
    every state over long gaps towards the same saturated corner, where the items it came from
    are forgotten and the tanh gradients vanish -- a seed can then stay near chance for good.
    Spectral normalisation cannot divide a zero matrix, so with ``lipschitz=True`` the last
    layer keeps its random start.
    """

    def __init__(
        self,
        hidden: int,
        width: int,
        depth: int = 2,
        lipschitz: bool = False,
        zero_init: bool = True,
        extra_inputs: int = 0,
    ) -> None:
        super().__init__()
        if depth < 1:
            raise ConfigError(f"model.net.field.depth={depth}; expected an integer >= 1")
        sizes = [hidden + extra_inputs] + [width] * (depth - 1) + [hidden]
        layers: list[nn.Module] = []
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            linear = nn.Linear(n_in, n_out)
            if zero_init and not lipschitz and i == len(sizes) - 2:
                nn.init.zeros_(linear.weight)
                nn.init.zeros_(linear.bias)
            layers.append(spectral_norm(linear) if lipschitz else linear)
            layers.append(nn.Tanh())
        self.net = nn.Sequential(*layers)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self._apply_layers(h)

    def _apply_layers(self, x: torch.Tensor) -> torch.Tensor:
        """The layers of ``net`` through :func:`.steps.mlp_field`, the function the scripted loop
        calls with the same weights (spectral norm, if any, recomputes each weight on access)."""
        linears = [m for m in self.net if isinstance(m, nn.Linear)]
        return mlp_field(x, [m.weight for m in linears], [m.bias for m in linears])


class TimeVectorField(VectorField):
    """``f(h, e)``: a non-autonomous field that also reads ``e``, the time elapsed since the
    last event (in ``tau`` units), so the direction of drift can change along the gap --
    a recent event can pull one way and a long silence another, which ``f(h)`` cannot express.
    """

    time_dependent = True

    def __init__(
        self, hidden: int, width: int, depth: int = 2, lipschitz: bool = False, zero_init: bool = True
    ) -> None:
        super().__init__(hidden, width, depth, lipschitz, zero_init, extra_inputs=1)  # + the elapsed time

    def forward(self, h: torch.Tensor, elapsed: torch.Tensor | None = None) -> torch.Tensor:
        elapsed = torch.zeros_like(h[..., :1]) if elapsed is None else elapsed.expand_as(h[..., :1])
        return self._apply_layers(torch.cat([h, elapsed], dim=-1))


class _ScaledField(nn.Module):
    """Holds the field; :meth:`at` gives the ``(s, h) -> tau * f(h)`` callable torchdiffeq steps
    (``tau * f(h, s * tau)`` for a time-dependent field; ``s * tau`` is the time elapsed so far).

    ``tau`` is bound per call, never stored on the module, so one network can serve several
    threads at once (a server scoring concurrent requests).
    """

    def __init__(self, field: nn.Module) -> None:
        super().__init__()
        self.field = field
        self.time_dependent = bool(getattr(field, "time_dependent", False))

    def at(self, tau: torch.Tensor) -> Callable[..., torch.Tensor]:
        field = self.field
        if self.time_dependent:
            return lambda s, h, perturb=None: tau * field(h, s * tau)
        return lambda s, h, perturb=None: tau * field(h)


class GapODE(nn.Module):
    """Evolves states ``[B, D]`` over gaps ``tau [B]`` with ``steps`` fixed solver steps per gap."""

    def __init__(self, field: nn.Module, method: str = "euler", steps: int = 1, implementation: str = "steps") -> None:
        super().__init__()
        if method not in METHODS:
            raise ConfigError(f"solver.method={method!r} is unknown; expected one of {list(METHODS)}")
        if method != "none" and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
            raise ConfigError(f"solver.steps={steps!r}; expected an integer >= 1")
        if implementation not in IMPLEMENTATIONS:
            raise ConfigError(f"solver.implementation={implementation!r}; expected one of {list(IMPLEMENTATIONS)}")
        self.method = method
        self.steps = steps
        self.implementation = implementation if FAST_PATH else "odeint"
        self.scaled = _ScaledField(field)
        self.register_buffer("grid", torch.tensor([0.0, 1.0]), persistent=False)
        if method != "none" and self.implementation == "steps":
            assert _PRIVATE is not None
            solvers, grid_constructor = _PRIVATE
            # The grid odeint would build for step_size = 1 / steps, computed once.
            grid = grid_constructor(1.0 / steps)(None, None, self.grid)
            self.register_buffer("step_grid", grid, persistent=False)
            self._solver = solvers[method](
                func=self.scaled.at(self.grid[:1]), y0=self.grid, step_size=1.0 / steps, atol=0.0
            )  # only its step function is used, with a per-call func
            self._intervals_of: torch.Tensor | None = None

    def _grid_intervals(self) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """``(t0, dt, t1)`` of each step, cached until ``.to()``/``.double()`` replaces the grid buffer."""
        grid = self.step_grid
        if self._intervals_of is not grid:
            self._intervals = [(grid[k], grid[k + 1] - grid[k], grid[k + 1]) for k in range(len(grid) - 1)]
            self._intervals_of = grid
        return self._intervals

    def forward(self, h: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        if self.method == "none":
            return h
        func = self.scaled.at(tau.to(h.dtype).unsqueeze(-1))
        if self.implementation == "odeint":
            return odeint(func, h, self.grid.to(h.dtype), method=self.method, options={"step_size": 1.0 / self.steps})[
                -1
            ]
        for t0, dt, t1 in self._grid_intervals():
            dy, _ = self._solver._step_func(func, t0, dt, t1, h)
            h = h + dy
        return h
