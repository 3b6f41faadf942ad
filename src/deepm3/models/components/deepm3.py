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
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from deepm3.errors import ConfigError
from deepm3.models.components.base import SequentialRecommender
from deepm3.models.components.cuda_graphs import GraphedLoops
from deepm3.models.components.excitation import ItemExcitation
from deepm3.models.components.flows import DecayFlow, build_flow
from deepm3.models.components.ode import GapODE, VectorField
from deepm3.models.components.scripted import METHOD_CODES, window_loop
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
        # solver=none at inference: the loop is a plain GRU, so run it as one fused nn.GRU call over
        # the window with the cell's own parameters (torch.func.functional_call; the template holds
        # no weights of its own and is not part of the state dict, so checkpoints are unchanged).
        # Training keeps the loop: on CPU the packed nn.GRU's backward measured 2.5x slower than it.
        self.fused = not self.uses_time
        object.__setattr__(self, "_gru_template", nn.GRU(hidden, hidden, batch_first=True, device="meta"))
        # Inference (no gradients) runs the whole window loop as one TorchScript function where it
        # implements this configuration (see .scripted); `scripted = False` forces the eager loop.
        self.scripted = self._scriptable(self.ode) and not field.get("lipschitz", False) and not self.horizon
        # cuda_graphs=True: training on CUDA replays the per-event loop from CUDA graphs (.cuda_graphs) where every
        # op of this configuration can be captured: not spectral norm (its power iteration), not
        # torchdiffeq's public odeint (it checks its inputs on the host).
        self.cuda_graphs = (
            bool(cuda_graphs)
            and not field.get("lipschitz", False)
            and getattr(self.ode, "implementation", "steps") == "steps"
            and getattr(getattr(self.ode, "residual", None), "implementation", "steps") == "steps"
        )
        self._graph_loops: GraphedLoops | None = None
        # repeat (off by default): each history item excites its own score with a kernel of the time
        # elapsed to the query (.excitation); amplitude and rate per item, shifted per query by a
        # read-out of the evolved state (`state: true`). Both start at zero: the term starts off,
        # and with zero amplitude the model is exactly the one without it.
        repeat = dict(repeat or {})
        self.repeat: ItemExcitation | None = None
        self.repeat_head: nn.Linear | None = None
        if repeat.pop("enabled", False):
            from_state = repeat.pop("state", True)
            self.repeat = ItemExcitation(num_items, **repeat)
            if from_state:
                self.repeat_head = nn.Linear(hidden, 2)
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
        real = (items > 0).unsqueeze(-1)
        # The GRU's input side does not depend on the state: one matmul for every event of the
        # window instead of one per step; only the state side stays in the sequential loop.
        if self.fused and not torch.is_grad_enabled():
            return self.dropout(self.out_norm(self._fused_states(emb, items > 0))), None
        if self.scripted and not torch.is_grad_enabled() and window_loop() is not None:
            decay = self.ode if isinstance(self.ode, DecayFlow) else None
            ode = decay.residual if decay is not None else self.ode
            layers = [] if ode is None else [m for m in ode.scaled.field.net if isinstance(m, nn.Linear)]
            states = window_loop()(
                F.linear(emb, self.cell.weight_ih, self.cell.bias_ih),
                items > 0,
                tau,
                self.h0.expand(batch, -1),
                self.cell.weight_hh,
                self.cell.bias_hh,
                [m.weight for m in layers],
                [m.bias for m in layers],
                0 if ode is None else METHOD_CODES[ode.method],
                1 if ode is None else ode.steps,
                flow_first,
                None if decay is None else decay.anchor,
                None if decay is None else decay.rates(),
            )
            return self.dropout(self.out_norm(states)), None
        input_gates = F.linear(emb, self.cell.weight_ih, self.cell.bias_ih)
        if self._graphable(input_gates):
            looped = self._graphed_loop()(input_gates, real, tau)
        else:
            looped = self._loop(input_gates, real, tau)
        states, gap_params = looped if self.gap_head is not None else (looped, None)
        return self.dropout(self.out_norm(states)), gap_params

    @staticmethod
    def _scriptable(flow: nn.Module) -> bool:
        """Whether :mod:`.scripted` implements this flow: an autonomous MLP field under euler or
        rk4, or ``decay`` (active) whose residual, if any, is such a field."""

        def plain(ode: nn.Module | None) -> bool:
            return (
                isinstance(ode, GapODE)
                and isinstance(ode.scaled.field, VectorField)
                and not getattr(ode.scaled, "time_dependent", False)
                and ode.method in METHOD_CODES
            )

        if isinstance(flow, DecayFlow):
            return flow.active and (flow.residual is None or plain(flow.residual))
        return plain(flow)

    def _loop(
        self, input_gates: torch.Tensor, real: torch.Tensor, tau: torch.Tensor
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """The eager per-event loop: states ``[B, L, D]`` (and, with the horizon head, its gap
        parameters ``[B, L, 2]``) from input gates ``[B, L, 3D]``, the event mask ``[B, L, 1]``
        and the gaps ``tau [B, L]``. Only tensors in and out, so a CUDA graph can replay it."""
        flow_first = self.time.query == "last"
        h = self.h0.expand(input_gates.shape[0], -1)
        outputs, gap_params = [], []
        # unbind: one backward node for all steps (indexing [:, i] would add a full-size gradient per step)
        for gates, is_real, gap in zip(input_gates.unbind(1), real.unbind(1), tau.unbind(1)):
            if flow_first:
                h = self.ode(h, gap)  # 0 on padding and the window's first event: an exact identity
            h = torch.where(is_real, self._gru_update(gates, h), h)
            if not flow_first:
                h = self.ode(h, gap)
            if self.gap_head is not None:  # read out at the expected next time, carry h unchanged
                params = self.gap_head(h)
                gap_params.append(params)
                outputs.append(self.ode(h, F.softplus(params[:, 0])))
            else:
                outputs.append(h)
        states = torch.stack(outputs, dim=1)
        return (states, torch.stack(gap_params, dim=1)) if self.gap_head is not None else states

    def _graphable(self, input_gates: torch.Tensor) -> bool:
        """Whether this call is a training step on CUDA that may replay the loop from a graph."""
        return self.cuda_graphs and self.training and torch.is_grad_enabled() and input_gates.is_cuda

    def _graphed_loop(self) -> GraphedLoops:
        if self._graph_loops is None:
            self._graph_loops = GraphedLoops(lambda: _EventLoop(self), self._loop)
        return self._graph_loops

    def __getstate__(self) -> dict:
        # Graphs belong to these parameters on this device: a copy or a pickle captures its own.
        return {**super().__getstate__(), "_graph_loops": None}

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

    def _fused_states(self, emb: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """The loop's states without an ODE, from one packed GRU call: rows are rotated so their
        events start at column 0, run from ``h0``, rotated back; padding keeps ``h0``."""
        batch, length, _ = emb.shape
        lengths = real.sum(dim=1)
        pads = (length - lengths)[:, None]
        columns = torch.arange(length, device=emb.device)[None, :]
        to_front = ((columns + pads) % length).unsqueeze(-1).expand_as(emb)
        packed = pack_padded_sequence(
            emb.gather(1, to_front), lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False
        )
        weights = {
            "weight_ih_l0": self.cell.weight_ih,
            "weight_hh_l0": self.cell.weight_hh,
            "bias_ih_l0": self.cell.bias_ih,
            "bias_hh_l0": self.cell.bias_hh,
        }
        h0 = self.h0.expand(1, batch, -1).contiguous()
        out, _ = functional_call(self._gru_template, weights, (packed, h0))
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=length)
        states = out.gather(1, ((columns - pads) % length).unsqueeze(-1).expand_as(out))
        return torch.where(real.unsqueeze(-1), states, self.h0.expand_as(states))

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
        over ``query_gap_seconds`` (last event -> request time); under ``last`` it is read as is,
        or (``horizon``) after flowing over the gap the model expects."""
        if self.time.query == "target" and query_gap_seconds is not None:
            h = self.ode(h, self.time(query_gap_seconds))
        elif self.gap_head is not None:
            h = self.ode(h, F.softplus(self.gap_head(h)[:, 0]))
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


class _EventLoop(nn.Module):
    """The loop of one :class:`DeepM3Net` as a module whose parameters are exactly the ones the
    loop reads (a CUDA graph's backward returns gradients for those; the input-side GRU weights
    and the embedding stay outside, in eager code). Not registered on the network: its state
    dict and checkpoints are unchanged."""

    def __init__(self, net: DeepM3Net) -> None:
        super().__init__()
        object.__setattr__(self, "net", net)
        self.h0 = net.h0
        self.weight_hh = net.cell.weight_hh
        self.bias_hh = net.cell.bias_hh
        self.ode = net.ode if net.uses_time else None  # solver=none: the flow is not called
        self.gap_head = net.gap_head
        self.train(net.training)

    def forward(self, input_gates: torch.Tensor, real: torch.Tensor, tau: torch.Tensor) -> Any:
        return self.net._loop(input_gates, real, tau)
