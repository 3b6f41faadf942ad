"""DeepM3: a GRU that updates a latent intent at each event and lets it flow between events.

At event i the state absorbs the item (GRU cell); it then follows the flow that
``model.net.field.kind`` names (:mod:`.flows`; by default ``decay``, in configs) over the
gap to the moment the next prediction is asked for (the next event in training, the query
time in evaluation and serving). The evolved state scores items by dot product. With
``solver.method=none`` it is the same network without the ODE: the ablation.

Under ``time.query=last`` nothing is known past the last event: the state flows over the gap
*since the previous event* before absorbing each event, and predicts from the state right
after the last update. The flow between observed events is the same in both modes; only the
flow past the last event (to the target's time) is gone.

How the window's per-event loop runs (eager, TorchScript, one fused GRU, CUDA graphs) is chosen
once per network by :func:`.event_loop.pick_event_loops`; this module only prepares its inputs
and reads its states out.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from deepm3.errors import ConfigError
from deepm3.models.components.base import SequentialRecommender
from deepm3.models.components.event_loop import pick_event_loops
from deepm3.models.components.excitation import build_excitation
from deepm3.models.components.flows import build_flow
from deepm3.models.components.steps import absorb
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
        horizon: bool = False,
        horizon_weight: float = 0.1,
        cuda_graphs: bool = False,
        repeat: dict | None = None,
    ) -> None:
        super().__init__(num_items, hidden)
        solver = dict(solver or {"method": "euler", "steps": 1})
        field = dict(field or {})
        self.uses_time = solver.get("method", "euler") != "none"
        self.dropout = nn.Dropout(dropout)
        self.cell = nn.GRUCell(hidden, hidden)
        self.h0 = nn.Parameter(torch.zeros(hidden))
        self.ode = build_flow(hidden, field, solver)  # the `field.kind` between events (see .flows)
        self.time = TimeTransform(**(time or {}))
        self.out_norm = nn.LayerNorm(hidden)
        if not (
            isinstance(horizon_weight, (int, float)) and not isinstance(horizon_weight, bool) and horizon_weight >= 0
        ):
            raise ConfigError(f"model.net.horizon_weight={horizon_weight!r}; expected a number >= 0")
        # horizon (time.query=last only): predict at the model's own expected next time. A head
        # reads each state's distribution of the gap to the next event (Gaussian in tau: mean,
        # log-std), the state flows over the expected gap before scoring, and the head learns from
        # the gaps that follow inside the window (labels, never inputs of the same prediction).
        self.horizon = bool(horizon) and self.time.query == "last" and self.uses_time
        self.horizon_weight = float(horizon_weight)
        self.gap_head = nn.Linear(hidden, 2) if self.horizon else None
        # How the per-event loop runs (eager / scripted / fused / CUDA-graphed), chosen once from the
        # configuration (.event_loop); none holds weights, so checkpoints are the same whichever runs.
        self.event_loops = pick_event_loops(
            self, lipschitz=bool(field.get("lipschitz", False)), cuda_graphs=bool(cuda_graphs)
        )
        # repeat (off by default): each history item excites its own score with a kernel of the time
        # elapsed to the query (.excitation); amplitude and rate per item, shifted per query by a
        # read-out of the evolved state (`state: true`). Both start at zero: the term starts off,
        # and with zero amplitude the model is exactly the one without it.
        repeat = dict(repeat or {})
        self.repeat: nn.Module | None = None
        self.repeat_head: nn.Linear | None = None
        if repeat.pop("enabled", False):
            from_state = repeat.pop("state", True)
            self.repeat = build_excitation(num_items, **repeat)
            if from_state:
                self.repeat_head = nn.Linear(hidden, self.repeat.modulation_size)
                nn.init.zeros_(self.repeat_head.weight)
                nn.init.zeros_(self.repeat_head.bias)

    @property
    def streaming(self) -> bool:
        """Whether a stored state alone can score (``advance``/``readout``): not with the repeat term,
        which reads the history's items and times."""
        return self.repeat is None

    def excitation(self, batch: dict[str, torch.Tensor], hidden: torch.Tensor) -> torch.Tensor | None:
        if self.repeat is None:
            return None
        queries = hidden.shape[1]
        modulation = None if self.repeat_head is None else self.repeat_head(hidden)
        return self.repeat(batch["items"], batch["times"], batch["next_times"][:, -queries:], modulation)

    def forward(self, items: torch.Tensor, times: torch.Tensor, next_times: torch.Tensor) -> torch.Tensor:
        return self._run(items, times, next_times)[0]

    def training_loss(self, batch: dict[str, torch.Tensor], loss: str = "ce") -> torch.Tensor:
        """The next-item loss, plus (``horizon``) the gap head's negative log-likelihood."""
        if not self.horizon:
            return super().training_loss(batch, loss)
        hidden, gap_params = self._run(batch["items"], batch["times"], batch["next_times"])
        item_loss = self.position_loss(batch, hidden, loss)
        return item_loss + self.horizon_weight * self._gap_nll(gap_params, batch["times"], batch["items"])

    def _gap_nll(self, gap_params: torch.Tensor, times: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Gaussian NLL of each next in-window gap (in tau) under the head at the event before it."""
        following = self.time(input_gaps(times, items))[:, 1:]  # gap from event i to i + 1, at i + 1
        known = (items[:, :-1] > 0) & (items[:, 1:] > 0)
        mean, log_std = gap_params[:, :-1, 0], gap_params[:, :-1, 1].clamp(-5.0, 5.0)
        nll = 0.5 * ((following - F.softplus(mean)) / log_std.exp()) ** 2 + log_std
        return (nll * known).sum() / known.sum().clamp(min=1)

    def _run(
        self, items: torch.Tensor, times: torch.Tensor, next_times: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        batch, length = items.shape
        first = self._first_event_column(items)
        if first > 0:  # columns that are padding in every row leave the state at h0: skip them
            hidden, gap_params = self._run(items[:, first:], times[:, first:], next_times[:, first:])
            skipped = self.out_norm(self.h0).expand(batch, first, -1)
            return torch.cat([skipped, hidden], dim=1), gap_params
        emb = self.dropout(self.item_embedding(items))
        flow_first = self.time.query == "last"  # flow to each event, then update; never past the last
        tau = self.time(input_gaps(times, items) if flow_first else query_gaps(times, next_times, items))
        states, gap_params = self.event_loops.current()(emb, items > 0, tau)
        return self.dropout(self.out_norm(states)), gap_params

    def input_gates(self, emb: torch.Tensor) -> torch.Tensor:
        """The GRU's input side, ``W_ih x + b_ih`` (``[..., 3D]``): it does not depend on the state,
        so a loop computes it for every event of the window in one matmul."""
        return F.linear(emb, self.cell.weight_ih, self.cell.bias_ih)

    def _first_event_column(self, items: torch.Tensor) -> int:
        """How many leading columns are padding in every row, at inference on the CPU (0 otherwise).

        A served or evaluated history shorter than ``max_len`` would otherwise walk the loop through
        all its padding; the fused GRU of GRU4Rec skips it by packing. Skipping those columns is
        exact (padding is an identity step) but needs their count on the host, so it is left out
        on CUDA (no host sync) and in training (the same random draws as before); not with the
        horizon head, whose read-out at a padding position is not h0.
        """
        if torch.is_grad_enabled() or items.is_cuda or self.gap_head is not None or not items.shape[1]:
            return 0
        columns = (items > 0).any(dim=0)
        return int(columns.int().argmax()) if bool(columns.any()) else items.shape[1] - 1

    # --- one event at a time: what a server keeping each user's state needs -------------------
    # Between observed events both query modes carry the same state S_i (flow over the gap since
    # the previous event, then absorb event i); they differ only in the read-out. The steps are the
    # event loops' own: the flow module and .steps.absorb.

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
        gates = self.input_gates(self.dropout(self.item_embedding(items)))
        return absorb(h, gates, real, self.cell.weight_hh, self.cell.bias_hh)

    def readout(self, h: torch.Tensor, query_gap_seconds: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, N + 1]`` scores from states ``h``: under ``time.query=target`` the state first flows
        over ``query_gap_seconds`` (last event -> request time); under ``last`` it is read as is,
        or (``horizon``) after flowing over the gap the model expects."""
        if self.time.query == "target" and query_gap_seconds is not None:
            h = self.ode(h, self.time(query_gap_seconds))
        elif self.gap_head is not None:
            h = self.ode(h, F.softplus(self.gap_head(h)[:, 0]))
        return self.score(self.dropout(self.out_norm(h)))
