"""BERT4Rec (Sun et al., 2019): bidirectional self-attention trained as a cloze task.

Training: the window's events (inputs plus the last target) have each position replaced
by a mask token with probability ``mask_prob`` (a window with no masked position gets its
last one masked) and the network recovers the masked items. Inference: the window is
shifted left by one and a mask token appended; the output at that mask scores the next item.

The mask token is item index ``N + 1``: an input token only. Its embedding is a separate
vector, so ``score`` and the losses still range over items ``0..N``. Defaults follow the
paper on MovieLens (hidden 64, 2 blocks, 2 heads, GELU feed-forward of width ``4 * hidden``,
post-LN, dropout 0.1, mask proportion 0.2).
"""

from __future__ import annotations

import torch
from torch import nn

from deepm3.errors import ConfigError
from deepm3.models.components.base import next_item_loss
from deepm3.models.components.sasrec import SASRecNet


class BERT4RecNet(SASRecNet):
    causal = False

    def __init__(
        self,
        num_items: int,
        hidden: int = 64,
        blocks: int = 2,
        heads: int = 2,
        dropout: float = 0.1,
        max_len: int = 50,
        ffn_mult: int = 4,
        activation: str = "gelu",
        norm_first: bool = False,
        mask_prob: float = 0.2,
    ) -> None:
        super().__init__(num_items, hidden, blocks, heads, dropout, max_len, ffn_mult, activation, norm_first)
        if not 0.0 < mask_prob <= 1.0:
            raise ConfigError(f"mask_prob={mask_prob}; expected a value in (0, 1]")
        self.mask_prob = mask_prob
        self.mask_token = num_items + 1
        self.mask_embedding = nn.Parameter(torch.randn(hidden) * hidden**-0.5)
        # BERT's output transform (dense -> GELU -> LayerNorm) before scoring against the items
        self.head = nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(), nn.LayerNorm(hidden))

    def embed(self, items: torch.Tensor) -> torch.Tensor:
        masked = items == self.mask_token
        embedded = self.item_embedding(items.masked_fill(masked, 0))
        return torch.where(masked.unsqueeze(-1), self.mask_embedding, embedded)

    def forward(self, items: torch.Tensor, times: torch.Tensor, next_times: torch.Tensor) -> torch.Tensor:
        return self.head(super().forward(items, times, next_times))

    def predict(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        items = torch.cat([batch["items"][:, 1:], torch.full_like(batch["items"][:, :1], self.mask_token)], dim=1)
        hidden = self(items, batch["times"], batch["next_times"])
        return self.score(hidden[:, -1])

    def training_loss(self, batch: dict[str, torch.Tensor], loss: str = "ce") -> torch.Tensor:
        sequence = cloze_sequence(batch["items"], batch["targets"])
        real = sequence > 0
        masked = real & (torch.rand(sequence.shape, device=sequence.device) < self.mask_prob)
        unmasked_rows = ~masked.any(dim=1)
        masked[:, -1] |= unmasked_rows & real[:, -1]
        hidden = self(sequence.masked_fill(masked, self.mask_token), batch["times"], batch["next_times"])
        return next_item_loss(self, hidden[masked], sequence[masked], loss)


def cloze_sequence(items: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The window's events including its last target, left-padded to the same width.

    ``targets[:, i]`` is the event after ``items[:, i]``, so dropping the oldest input column
    and appending the last target keeps every event when the window is not full.
    """
    return torch.cat([items[:, 1:], targets[:, -1:]], dim=1)
