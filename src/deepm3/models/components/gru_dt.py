"""GRU-Δt: GRU4Rec fed with time -- the control that asks whether an ODE beats simply
*feeding* the gaps to an RNN.

Each event's input is its embedding plus features of ``tau`` of the gap since the previous
event; the readout sees the GRU state plus features of ``tau`` of the gap to the moment the
prediction is asked for (the next event in training, the query time in evaluation) -- the
same two gaps DeepM3 uses, through the same ``TimeTransform`` (``time.unit``,
``time.transform``). ``time.transform=zero`` makes it time-blind (GRU4Rec with constant extra
inputs). Gap features are a learned ``tanh(w * tau + b)`` of width ``gap_features``, so the
readout can respond non-linearly to the gap.
"""

from __future__ import annotations

import torch
from torch import nn

from deepm3.models.components.gru4rec import GRU4RecNet
from deepm3.models.components.time import TimeTransform, input_gaps, query_gaps


class GapFeatures(nn.Module):
    """``tau`` ``[B, L]`` -> ``tanh(w * tau + b)`` ``[B, L, width]``."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.linear = nn.Linear(1, width)

    def forward(self, tau: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.linear(tau.unsqueeze(-1)))


class GRUDtNet(GRU4RecNet):
    def __init__(
        self,
        num_items: int,
        hidden: int = 64,
        gru_hidden: int = 128,
        layers: int = 1,
        dropout: float = 0.3,
        gap_features: int = 8,
        time: dict | None = None,
        state_dropout: float = 0.0,
    ) -> None:
        super().__init__(
            num_items,
            hidden,
            gru_hidden,
            layers,
            dropout,
            state_dropout,
            step_features=gap_features,
            query_features=gap_features,
        )
        self.time = TimeTransform(**(time or {}))
        self.uses_time = self.time.transform != "zero"
        self.input_gap_features = GapFeatures(gap_features)
        self.query_gap_features = GapFeatures(gap_features)

    def step_inputs(self, items: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
        return self.input_gap_features(self.time(input_gaps(times, items)))

    def query_inputs(self, items: torch.Tensor, times: torch.Tensor, next_times: torch.Tensor) -> torch.Tensor:
        return self.query_gap_features(self.time(query_gaps(times, next_times, items)))
