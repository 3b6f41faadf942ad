"""DeepM3: a GRU that updates a latent intent at each event and lets it flow between events.

At event i the state absorbs the item (GRU cell); it then follows ``dh/dt = f(h)`` over the
gap to the moment the next prediction is asked for (the next event in training, the query
time in evaluation and serving). The evolved state scores items by dot product. With
``solver.method=none`` it is the same network without the ODE: the ablation.

Under ``time.query=last`` nothing is known past the last event: the state flows over the gap
*since the previous event* before absorbing each event, and predicts from the state right
after the last update. The flow between observed events is the same in both modes; only the
flow past the last event (to the target's time) is gone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from deepm3.models.components.base import SequentialRecommender
from deepm3.models.components.ode import GapODE, VectorField
from deepm3.models.components.time import TimeTransform, input_gaps, query_gaps


class DeepM3Net(SequentialRecommender):
    uses_time = True

    def __init__(
        self,
        num_items: int,
        hidden: int = 64,
        dropout: float = 0.2,
        solver: dict | None = None,
        field: dict | None = None,
        time: dict | None = None,
    ) -> None:
        super().__init__(num_items, hidden)
        solver = dict(solver or {"method": "euler", "steps": 1})
        field = dict(field or {})
        self.uses_time = solver.get("method", "euler") != "none"
        self.dropout = nn.Dropout(dropout)
        self.cell = nn.GRUCell(hidden, hidden)
        self.h0 = nn.Parameter(torch.zeros(hidden))
        vector_field = VectorField(hidden, width=field.get("width", 2 * hidden), depth=field.get("depth", 2),
                                   lipschitz=field.get("lipschitz", False), zero_init=field.get("zero_init", True))
        self.ode = GapODE(vector_field, method=solver.get("method", "euler"), steps=solver.get("steps", 1),
                          implementation=solver.get("implementation", "steps"))
        self.time = TimeTransform(**(time or {}))
        self.out_norm = nn.LayerNorm(hidden)

    def forward(self, items: torch.Tensor, times: torch.Tensor, next_times: torch.Tensor) -> torch.Tensor:
        batch, length = items.shape
        emb = self.dropout(self.item_embedding(items))
        flow_first = self.time.query == "last"  # flow to each event, then update; never past the last
        tau = self.time(input_gaps(times, items) if flow_first else query_gaps(times, next_times, items))
        real = (items > 0).unsqueeze(-1)
        # The GRU's input side does not depend on the state: one matmul for every event of the
        # window instead of one per step; only the state side stays in the sequential loop.
        # unbind: one backward node for all steps (indexing [:, i] would add a full-size gradient per step)
        input_gates = F.linear(emb, self.cell.weight_ih, self.cell.bias_ih).unbind(1)
        h = self.h0.expand(batch, -1)
        outputs = []
        for gates, is_real, gap in zip(input_gates, real.unbind(1), tau.unbind(1)):
            if flow_first:
                h = self.ode(h, gap)  # 0 on padding and the window's first event: an exact identity
            h = torch.where(is_real, self._gru_update(gates, h), h)
            if not flow_first:
                h = self.ode(h, gap)
            outputs.append(h)
        return self.dropout(self.out_norm(torch.stack(outputs, dim=1)))

    # --- one event at a time: what a server keeping each user's state needs -------------------
    # Between observed events both query modes carry the same state S_i (flow over the gap since
    # the previous event, then absorb event i); they differ only in the read-out.

    def initial_state(self, batch: int) -> torch.Tensor:
        """``[batch, hidden]`` state before any event."""
        return self.h0.detach().expand(batch, -1).clone()

    def advance(self, h: torch.Tensor, items: torch.Tensor, gap_seconds: torch.Tensor) -> torch.Tensor:
        """State after one more event per row: flow over ``gap_seconds`` (since the row's previous
        event; 0 for its first), then absorb ``items`` (``[B]``; 0 = no event, state unchanged).

        Over a user's events this reproduces :meth:`forward`'s state (eval mode) while the history
        fits the window; beyond it, the state keeps remembering events the window would drop.
        """
        real = (items > 0).unsqueeze(-1)
        h = self.ode(h, self.time(torch.where(items > 0, gap_seconds, torch.zeros_like(gap_seconds))))
        gates = F.linear(self.dropout(self.item_embedding(items)), self.cell.weight_ih, self.cell.bias_ih)
        return torch.where(real, self._gru_update(gates, h), h)

    def readout(self, h: torch.Tensor, query_gap_seconds: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, N + 1]`` scores from states ``h``: under ``time.query=target`` the state first flows
        over ``query_gap_seconds`` (last event -> request time); under ``last`` it is read as is."""
        if self.time.query == "target" and query_gap_seconds is not None:
            h = self.ode(h, self.time(query_gap_seconds))
        return self.score(self.dropout(self.out_norm(h)))

    def _gru_update(self, input_gates: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """``nn.GRUCell``'s update (same parameters and gate order) from precomputed input gates."""
        hidden_gates = F.linear(h, self.cell.weight_hh, self.cell.bias_hh)
        i_r, i_z, i_n = input_gates.chunk(3, dim=-1)
        h_r, h_z, h_n = hidden_gates.chunk(3, dim=-1)
        reset = torch.sigmoid(i_r + h_r)
        update = torch.sigmoid(i_z + h_z)
        candidate = torch.tanh(i_n + reset * h_n)
        return candidate + update * (h - candidate)
