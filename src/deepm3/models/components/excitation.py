"""Continuous-time self-excitation of history items: the repeat term shared by SLRC+ and DeepM3.

A past interaction with item ``i`` at time ``t_j`` raises ``i``'s score at the query time ``t``
by ``a * k(t - t_j)``, summed over the window's interactions with ``i`` (a Hawkes process's
intensity; Wang et al., WWW 2019, model repeat consumption this way). The kernel is written
once here; the models differ in where amplitude and rate come from (per item, or read from
the evolved user state).

Which history a query sees is the causal rule every model follows: the prediction at window
position ``p`` (asked at ``next_times[:, p]``) is excited by the events at positions ``<= p``
only. Under ``time.query=last`` the caller passes ``next_times = times``
(:func:`~deepm3.models.components.time.visible_inputs`), so no term depends on when the
predicted event happened.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from deepm3.errors import ConfigError
from deepm3.models.components.time import UNITS

KERNELS = ("exp", "exp_gauss", "multiscale")


def elapsed(times: torch.Tensor, query_times: torch.Tensor, items: torch.Tensor, unit_seconds: float):
    """``[B, Q, L]`` time from each window event ``j`` to each query ``q`` in ``unit_seconds``, and
    the mask of pairs where event ``j`` may excite query ``q``.

    ``query_times`` is ``[B, Q]`` and belongs to the last ``Q`` window positions (``Q = L`` in
    training: every position; ``Q = 1`` at inference: the last), so query ``q`` sees events
    ``j <= L - Q + q``. Differences are taken in int64 (unix seconds overflow float32).
    """
    length, queries = items.shape[1], query_times.shape[1]
    gap = (query_times[:, :, None] - times[:, None, :]).clamp(min=0).to(torch.float32) / unit_seconds
    position = torch.arange(length, device=items.device)
    causal = position[None, :] <= (position[length - queries :])[:, None]
    mask = causal[None] & (items > 0)[:, None, :]
    return gap, mask


def add_to_scores(scores: torch.Tensor, items: torch.Tensor, excitation: torch.Tensor) -> torch.Tensor:
    """``scores [M, N + 1] + `` each event's ``excitation [M, L]`` on its item ``items [M, L]`` (new tensor)."""
    return scores.scatter_add(-1, items, excitation.to(scores.dtype))


def check_unit(unit: str | float) -> float:
    if isinstance(unit, str):
        if unit not in UNITS:
            raise ConfigError(
                f"repeat.unit={unit!r} is unknown; expected one of {sorted(UNITS)} or a number of seconds"
            )
        return UNITS[unit]
    if isinstance(unit, bool) or not isinstance(unit, (int, float)) or not unit > 0:
        raise ConfigError(f"repeat.unit={unit!r}; expected a positive number of seconds")
    return float(unit)


class ItemExcitation(nn.Module):
    """Per-item amplitude ``a_i`` and decay rate ``b_i = softplus(.)`` (per ``unit``) of an exponential
    kernel, optionally mixed (``exp_gauss``) with a Gaussian bump at a learned lifetime ``mu_i``:
    ``k_i(d) = pi_i exp(-b_i d) + (1 - pi_i) exp(-(d - mu_i)^2 / (2 s_i^2))`` -- SLRC+'s kernel,
    short-term excitation plus the item's life cycle.

    ``forward`` returns ``[B, Q, L]``: what each window event adds to its item's score at each
    query. ``modulation`` (``[B, Q, 2]``, optional) is added to each query's amplitudes and to their
    rates' pre-activation: how DeepM3 reads both from its evolved state.
    Amplitudes start at ``init_amplitude`` (0: the term starts switched off). ``positive`` makes
    each amplitude ``softplus(.)`` of its sum (a Hawkes process's excitation is never negative),
    so a past interaction can only raise its item's score (:func:`excitation_amplitude`).
    """

    def __init__(
        self,
        num_items: int,
        kernel: str = "exp",
        unit: str | float = "hours",
        init_amplitude: float = 0.0,
        init_rate: float = 1.0,
        init_lifetime: float = 24.0,
        positive: bool = False,
    ) -> None:
        super().__init__()
        if kernel not in KERNELS or kernel == "multiscale":
            raise ConfigError(f"repeat.kernel={kernel!r}; expected one of {list(KERNELS)}")
        if not init_rate > 0 or not init_lifetime > 0:
            raise ConfigError(f"repeat.init_rate / init_lifetime must be > 0, got {init_rate!r} / {init_lifetime!r}")
        self.kernel = kernel
        self.modulation_size = 2  # amplitude, rate
        self.unit_seconds = check_unit(unit)
        self.positive = bool(positive)
        self.amplitude = nn.Parameter(torch.full((num_items + 1,), amplitude_start(init_amplitude, self.positive)))
        self.rate = nn.Parameter(torch.full((num_items + 1,), _softplus_inverse(init_rate)))
        if kernel == "exp_gauss":
            self.mix = nn.Parameter(torch.zeros(num_items + 1))  # pi = 0.5 at the start
            self.lifetime = nn.Parameter(torch.full((num_items + 1,), _softplus_inverse(init_lifetime)))
            self.spread = nn.Parameter(torch.full((num_items + 1,), _softplus_inverse(init_lifetime / 2)))

    def forward(
        self,
        items: torch.Tensor,
        times: torch.Tensor,
        query_times: torch.Tensor,
        modulation: torch.Tensor | None = None,
    ) -> torch.Tensor:
        gap, mask = elapsed(times, query_times, items, self.unit_seconds)
        amplitude = self.amplitude[items][:, None, :]
        rate = self.rate[items][:, None, :]
        if modulation is not None:
            amplitude = amplitude + modulation[..., :1]
            rate = rate + modulation[..., 1:]
        amplitude = excitation_amplitude(amplitude, self.positive)
        value = torch.exp(-F.softplus(rate) * gap)
        if self.kernel == "exp_gauss":
            mix = torch.sigmoid(self.mix[items])[:, None, :]
            centre = F.softplus(self.lifetime[items])[:, None, :]
            spread = F.softplus(self.spread[items])[:, None, :] + 1e-3
            value = mix * value + (1 - mix) * torch.exp(-0.5 * ((gap - centre) / spread) ** 2)
        return torch.where(mask, amplitude * value, torch.zeros_like(value))


DEFAULT_TIMESCALES = (60.0, 600.0, 3600.0, 21600.0, 86400.0, 604800.0)  # 1 min .. 1 week


class MultiScaleExcitation(nn.Module):
    """A bank of exponential kernels at fixed timescales ``tau_k`` (seconds) with per-item amplitudes:
    ``k_i(d) = sum_k a_ik exp(-d / tau_k)``.

    Why fixed timescales: a learned decay rate moves by about the learning rate per step, so a rate
    that must grow from 1/hour to 1/minute (what "the last item first" needs on edit logs) takes
    tens of thousands of steps; amplitudes over a bank are linear, and any mixture of "within a
    minute" and "within a week" memories is one step away. It spans the decayed-repeat baseline
    (one timescale) and its tuning grid. ``modulation`` (``[B, Q, K]``) shifts each amplitude per
    query (DeepM3 reads it from its state). Amplitudes start at 0: the term starts switched off.
    """

    def __init__(
        self,
        num_items: int,
        timescales: tuple[float, ...] | list[float] = DEFAULT_TIMESCALES,
        positive: bool = False,
        init_amplitude: float = 0.0,
    ) -> None:
        super().__init__()
        scales = [float(t) for t in timescales]
        if not scales or any(not t > 0 for t in scales):
            raise ConfigError(f"repeat.timescales={list(timescales)!r}; expected positive numbers of seconds")
        self.kernel = "multiscale"
        self.modulation_size = len(scales)
        self.register_buffer("timescales", torch.tensor(scales), persistent=False)
        self.positive = bool(positive)
        start = amplitude_start(init_amplitude, self.positive)
        self.amplitude = nn.Parameter(torch.full((num_items + 1, len(scales)), start))

    def forward(
        self,
        items: torch.Tensor,
        times: torch.Tensor,
        query_times: torch.Tensor,
        modulation: torch.Tensor | None = None,
    ) -> torch.Tensor:
        gap, mask = elapsed(times, query_times, items, 1.0)  # seconds
        amplitude = self.amplitude[items][:, None, :, :]  # [B, 1, L, K]
        if modulation is not None:
            amplitude = amplitude + modulation[:, :, None, :]
        amplitude = excitation_amplitude(amplitude, self.positive)
        value = (amplitude * torch.exp(-gap[..., None] / self.timescales)).sum(-1)
        return torch.where(mask, value, torch.zeros_like(value))


def build_excitation(num_items: int, kernel: str = "exp", **options: Any) -> nn.Module:
    """The repeat term's kernel by name: ``exp`` / ``exp_gauss`` (:class:`ItemExcitation`; ``unit``,
    ``init_amplitude``, ``init_rate``) or ``multiscale`` (:class:`MultiScaleExcitation`; ``timescales``,
    the other options unused)."""
    timescales = options.pop("timescales", None)
    if kernel == "multiscale":
        scales = DEFAULT_TIMESCALES if timescales is None else timescales
        return MultiScaleExcitation(
            num_items, scales, bool(options.get("positive", False)), float(options.get("init_amplitude", 0.0))
        )
    return ItemExcitation(num_items, kernel, **options)


def amplitude_start(init_amplitude: float, positive: bool) -> float:
    """The raw parameter whose amplitude is ``init_amplitude``: itself, or softplus's inverse when
    ``positive`` (which cannot start at 0, so it asks for a positive start)."""
    if not positive:
        return float(init_amplitude)
    if not init_amplitude > 0:
        raise ConfigError(
            f"repeat.positive=true with repeat.init_amplitude={init_amplitude!r}: a softplus amplitude "
            "cannot start at 0; expected a small positive start, e.g. repeat.init_amplitude=0.01"
        )
    return _softplus_inverse(float(init_amplitude))


def excitation_amplitude(raw: torch.Tensor, positive: bool) -> torch.Tensor:
    """The amplitude an event excites its item with: ``raw`` (any sign), or ``softplus(raw)`` when
    ``positive``. Unconstrained, the term learned on YOOCHOOSE to push most clicked items *down*
    (docs/models.md, "Repeat term"); a Hawkes excitation only raises."""
    return F.softplus(raw) if positive else raw


def _softplus_inverse(value: float) -> float:
    return float(value + math.log(-math.expm1(-value)))
