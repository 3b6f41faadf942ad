"""GRU4Rec (Hidasi et al., 2016) as a next-item model: a GRU over item embeddings, time-blind.

Trained like every model here (next-item loss at each position), not with the paper's
session-parallel mini-batches. A linear readout maps the GRU state to the embedding size
for scoring. Defaults are RecBole's GRU4Rec configuration of the peer numbers (docs/experiments.md, "Measured results")
(64-dim embeddings, 128-dim GRU, 1 layer, dropout 0.3 on the embeddings only).

Subclasses may feed extra per-event inputs (``step_inputs``) and extra readout inputs about
the moment the prediction is asked for (``query_inputs``); ``gru_dt`` does.
"""

from __future__ import annotations

import torch
from torch import nn

from deepm3.models.components.base import SequentialRecommender
from deepm3.models.components.recurrent import LeftPaddedGRU


class GRU4RecNet(SequentialRecommender):
    def __init__(
        self,
        num_items: int,
        hidden: int = 64,
        gru_hidden: int = 128,
        layers: int = 1,
        dropout: float = 0.3,
        state_dropout: float = 0.0,
        *,
        step_features: int = 0,
        query_features: int = 0,
    ) -> None:
        super().__init__(num_items, hidden)
        self.dropout = nn.Dropout(dropout)  # on the item embeddings, as RecBole
        self.state_dropout = nn.Dropout(state_dropout)  # on the GRU states before the readout (RecBole: none)
        self.gru = LeftPaddedGRU(hidden + step_features, gru_hidden, layers, dropout)
        self.readout = nn.Linear(gru_hidden + query_features, hidden)

    def step_inputs(self, items: torch.Tensor, times: torch.Tensor) -> torch.Tensor | None:
        """Extra ``[B, L, step_features]`` inputs beside each event's embedding (none here)."""
        return None

    def query_inputs(self, items: torch.Tensor, times: torch.Tensor, next_times: torch.Tensor) -> torch.Tensor | None:
        """Extra ``[B, L, query_features]`` readout inputs (none here)."""
        return None

    def forward(self, items: torch.Tensor, times: torch.Tensor, next_times: torch.Tensor) -> torch.Tensor:
        x = self.dropout(self.item_embedding(items))
        step = self.step_inputs(items, times)
        if step is not None:
            x = torch.cat([x, step], dim=-1)
        state = self.state_dropout(self.gru(x, items > 0))
        query = self.query_inputs(items, times, next_times)
        if query is not None:
            state = torch.cat([state, query], dim=-1)
        return self.readout(state)
