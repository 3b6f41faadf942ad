"""Repeat: the user's own history first (most frequent, then most recent), then the most popular.

The baseline for repeat consumption: it learns nothing about sequences, yet on data where
users come back to items it is hard to beat, and under a ranking that excludes the history
for every user except those whose target repeats, it would collect free hits (see
``docs/protocol.md``, "Ranking"). It belongs in every table of a dataset with repeats.

Scores: an item of the input window gets ``1 + count + recency`` (``count`` = occurrences in
the window, ``recency`` in (0, 1) grows with the position of its latest occurrence), so
frequency decides first and recency breaks ties; every other item gets its training
popularity scaled into [0, 1). Popularity is counted as in :class:`~.pop.PopNet` (one epoch).
"""

from __future__ import annotations

import torch

from deepm3.models.components.pop import PopNet


class RepeatNet(PopNet):
    def predict(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        items = batch["items"]
        batch_size, length = items.shape
        popularity = self.counts.float() / (self.counts.max().float() + 1.0)
        scores = popularity.expand(batch_size, -1).clone()
        real = (items > 0).float()
        count = torch.zeros_like(scores).scatter_add_(1, items, real)
        position = torch.arange(1, length + 1, device=items.device, dtype=scores.dtype) / (length + 1)
        recency = torch.zeros_like(scores).scatter_reduce_(
            1, items, position.expand(batch_size, -1) * real, reduce="amax"
        )
        seen = count > 0
        scores = torch.where(seen, 1.0 + count + recency, scores)
        scores[:, 0] = 0.0  # padding (never ranked)
        return scores
