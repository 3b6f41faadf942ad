"""TiSASRec (Li, Wang & McAuley, 2020): self-attention aware of time intervals between events.

Attention from event i to event j adds learned embeddings of (a) j's position and (b) the
personalised interval r_ij to the key and to the value:
``score_ij = q_i . (k_j + P^K_j + R^K_ij)``, ``out_i = sum_j a_ij (v_j + P^V_j + R^V_ij)``.
Inputs are item embeddings only (positions enter through keys and values). Position and
interval tables are shared by all blocks, as in the paper.

Personalised interval: ``r_ij = min(floor(|t_i - t_j| / s), clip)`` where ``s`` is the
user's smallest non-zero gap. The paper takes ``s`` over the user's whole sequence; here it
is the smallest non-zero gap among the window's events up to i, so no prediction depends on
a later event (or on the validation/test events). Intervals are unit-free, so ``time.unit``
does not apply.

Query time: row i is the prediction made after event i, so its intervals are measured from
the moment that prediction is asked, ``next_times[i]``: ``r_ij = min(floor(|q_i - t_j| / s),
clip)``. Under ``time.query=last`` the model is given ``q_i = t_i`` and this is exactly the
paper's relation matrix; under ``time.query=target`` ``q_i`` is the target's timestamp, so
TiSASRec gets the same information about the query gap as DeepM3 and the gap GRU, through its
own relative-time embeddings (the diagonal term is then the query gap itself). Defaults:
2 blocks, dropout 0.2 and clip k = 256 as the paper uses on MovieLens-1M, at the same 64-dim,
2-head size as ``sasrec``.
"""

from __future__ import annotations

import torch
from torch import nn

from deepm3.errors import ConfigError
from deepm3.models.components.attention import RecencyPositions, RelativeTerms, TransformerEncoder
from deepm3.models.components.base import SequentialRecommender
from deepm3.models.components.time import input_gaps


def personal_intervals(
    times: torch.Tensor, items: torch.Tensor, clip: int, query_times: torch.Tensor | None = None
) -> torch.Tensor:
    """``[B, L, L]`` int64 interval buckets ``r_ij`` (0 wherever i or j is padding).

    Row i measures from ``query_times[i]`` (default ``times[i]``, the paper's matrix) to each
    event j, scaled by the smallest non-zero gap between consecutive events at or before i
    (1 second when there is none yet: every interval in that row is then 0 or clipped).
    """
    gaps = input_gaps(times, items)
    largest = torch.iinfo(gaps.dtype).max
    running_min = torch.cummin(torch.where(gaps > 0, gaps, torch.full_like(gaps, largest)), dim=1).values
    scale = torch.where(running_min == largest, torch.ones_like(running_min), running_min)
    rows = times if query_times is None else query_times
    distance = (rows[:, :, None] - times[:, None, :]).abs()
    buckets = torch.div(distance, scale[:, :, None], rounding_mode="floor").clamp(max=clip)
    real = items > 0
    return torch.where(real[:, :, None] & real[:, None, :], buckets, torch.zeros_like(buckets))


class TiSASRecNet(SequentialRecommender):
    uses_time = True

    def __init__(
        self,
        num_items: int,
        hidden: int = 64,
        blocks: int = 2,
        heads: int = 2,
        dropout: float = 0.2,
        max_len: int = 50,
        clip: int = 256,
        ffn_mult: int = 1,
        activation: str = "relu",
        norm_first: bool = True,
    ) -> None:
        super().__init__(num_items, hidden)
        if clip < 1:
            raise ConfigError(f"clip={clip}; expected a positive number of interval buckets")
        self.clip = clip
        self.key_positions = RecencyPositions(max_len, hidden)
        self.value_positions = RecencyPositions(max_len, hidden)
        self.interval_keys = nn.Embedding(clip + 1, hidden)
        self.interval_values = nn.Embedding(clip + 1, hidden)
        for table in (self.interval_keys, self.interval_values):
            nn.init.normal_(table.weight, std=hidden**-0.5)
        self.dropout = nn.Dropout(dropout)
        self.encoder = TransformerEncoder(
            hidden, blocks, heads, dropout, causal=True, ffn_mult=ffn_mult, activation=activation, norm_first=norm_first
        )

    def forward(self, items: torch.Tensor, times: torch.Tensor, next_times: torch.Tensor) -> torch.Tensor:
        length = items.shape[1]
        relative = RelativeTerms(
            index=personal_intervals(times, items, self.clip, query_times=next_times),
            keys=self.dropout(self.interval_keys.weight),
            values=self.dropout(self.interval_values.weight),
        )
        return self.encoder(
            self.dropout(self.item_embedding(items)),
            items,
            key_positions=self.dropout(self.key_positions(length)),
            value_positions=self.dropout(self.value_positions(length)),
            relative=relative,
        )
