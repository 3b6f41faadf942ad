"""Time features shared by every time-aware model (docs/protocol.md, "Time features").

Models receive raw int64 timestamps and turn differences into ``tau`` here, so that the
unit and transform are one config choice (``time.unit``, ``time.transform``) for all models.
Differences are taken in int64 before the cast to float: unix seconds do not fit float32.

``time.query`` is a protocol switch, not a model option (``docs/protocol.md``, "Query
modes"): ``target`` asks each prediction at the target event's own timestamp (what a live
system sees when request and interaction coincide); ``last`` hides it from every model, in
training and evaluation, by :func:`visible_inputs` -- the query moment becomes the last
observed event, so no score can depend on when the predicted event happened.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from deepm3.errors import ConfigError

UNITS = {"seconds": 1.0, "minutes": 60.0, "hours": 3600.0, "days": 86400.0, "weeks": 604800.0}
TRANSFORMS = ("log1p", "linear", "zero")
DEFAULT_QUERY = "target"  # time.query when a config or checkpoint names none (conf/train.yaml says so too)
QUERY_MODES = (DEFAULT_QUERY, "last")


def check_query_mode(query: str) -> str:
    if query not in QUERY_MODES:
        raise ConfigError(f"time.query={query!r} is unknown; expected one of {list(QUERY_MODES)}")
    return query


def visible_inputs(batch: dict[str, torch.Tensor], query: str) -> dict[str, torch.Tensor]:
    """What a model may see of ``batch`` under query mode ``query`` (a shallow copy in ``last``).

    ``last``: every position's prediction is asked at its own event's time (``next_times =
    times``): the gap to the predicted event, and so its timestamp, never reaches the model.
    """
    if check_query_mode(query) == "target":
        return batch
    return {**batch, "next_times": batch["times"]}


def with_query(net_cfg: Mapping[str, Any], query: str) -> dict[str, Any]:
    """``net_cfg`` with ``query`` put into its ``time`` block, when it has one.

    ``time.query`` has one road into a network: the module (``RecModule``) reads it from the
    training config and hands it over here, as the checkpoint reader does from the module's
    hyper-parameters; the model configs name only the unit and the transform. An older network
    config that already carries a ``query`` gets the module's, which was the same value.
    """
    out = dict(net_cfg)
    time = out.get("time")
    if isinstance(time, Mapping):
        out["time"] = {**time, "query": check_query_mode(query)}
    return out


class TimeTransform(nn.Module):
    """Maps a gap in seconds to the model's time variable ``tau``.

    ``log1p``: ``log(1 + gap / unit)`` (default; years stay O(10)); ``linear``: ``gap / unit``;
    ``zero``: always 0 (a time-blind control).
    """

    def __init__(self, unit: str | float = "hours", transform: str = "log1p", query: str = DEFAULT_QUERY) -> None:
        super().__init__()
        self.query = check_query_mode(query)  # carried for models whose dynamics depend on it
        if isinstance(unit, str):
            if unit not in UNITS:
                raise ConfigError(
                    f"time.unit={unit!r} is unknown; expected one of {sorted(UNITS)} or a number of seconds"
                )
            seconds = UNITS[unit]
        else:
            seconds = float(unit)
            if not seconds > 0:
                raise ConfigError(f"time.unit={unit!r}; expected a positive number of seconds")
        if transform not in TRANSFORMS:
            raise ConfigError(f"time.transform={transform!r} is unknown; expected one of {list(TRANSFORMS)}")
        self.unit_seconds = seconds
        self.transform = transform

    def forward(self, gap_seconds: torch.Tensor) -> torch.Tensor:
        gap = gap_seconds.clamp(min=0).to(torch.float32) / self.unit_seconds
        if self.transform == "log1p":
            return torch.log1p(gap)
        if self.transform == "linear":
            return gap
        return torch.zeros_like(gap)


def query_gaps(times: torch.Tensor, next_times: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """Seconds from each event to the moment its prediction is asked for (0 on padding)."""
    return torch.where(items > 0, next_times - times, torch.zeros_like(times))


def input_gaps(times: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """Seconds since the previous event in the window (0 for the window's first event and padding)."""
    prev = torch.nn.functional.pad(times[:, :-1], (1, 0))
    prev_real = torch.nn.functional.pad(items[:, :-1], (1, 0)) > 0
    return torch.where(prev_real & (items > 0), times - prev, torch.zeros_like(times))
