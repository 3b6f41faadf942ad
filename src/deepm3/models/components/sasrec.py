"""SASRec (Kang & McAuley, 2018): causal self-attention over the item sequence.

Input = item embedding + learned position embedding (counted from the most recent event),
then ``blocks`` transformer blocks under a causal mask; position i's output scores the
item after event i. Time-blind: timestamps are ignored.

``norm_first=True`` is the paper's pre-LN block (``x + Dropout(g(LayerNorm(x)))``, final
LayerNorm); ``False`` is the post-LN block of BERT/RecBole. Defaults follow the paper
(2 blocks, ReLU feed-forward of width ``hidden``, dropout 0.2 as used on MovieLens-1M) with
the 64-dim, 2-head size of the RecBole configuration we compare against.
"""

from __future__ import annotations

import torch
from torch import nn

from deepm3.models.components.attention import RecencyPositions, TransformerEncoder
from deepm3.models.components.base import SequentialRecommender


class SASRecNet(SequentialRecommender):
    causal = True  # BERT4Rec reuses this network bidirectionally

    def __init__(
        self,
        num_items: int,
        hidden: int = 64,
        blocks: int = 2,
        heads: int = 2,
        dropout: float = 0.2,
        max_len: int = 50,
        ffn_mult: int = 1,
        activation: str = "relu",
        norm_first: bool = True,
    ) -> None:
        super().__init__(num_items, hidden)
        self.positions = RecencyPositions(max_len, hidden)
        self.dropout = nn.Dropout(dropout)
        self.encoder = TransformerEncoder(
            hidden,
            blocks,
            heads,
            dropout,
            causal=self.causal,
            ffn_mult=ffn_mult,
            activation=activation,
            norm_first=norm_first,
        )

    def embed(self, items: torch.Tensor) -> torch.Tensor:
        """Input tokens -> ``[B, L, hidden]`` (BERT4Rec adds its mask token here)."""
        return self.item_embedding(items)

    def forward(self, items: torch.Tensor, times: torch.Tensor, next_times: torch.Tensor) -> torch.Tensor:
        x = self.embed(items) + self.positions(items.shape[1])
        return self.encoder(self.dropout(x), items)
