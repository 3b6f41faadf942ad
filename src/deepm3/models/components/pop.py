"""Most-popular: every user gets the same ranking, by how often each item was a training target.

A sanity floor every model must beat. It trains through the same ``RecModule``/``Trainer``
path as the others: ``training_loss`` adds each training batch's target counts to a buffer
(saved in checkpoints, summed across processes under DDP) and returns a zero loss that still
has a gradient path, so the optimiser and the loss guard see a normal step. Repeated epochs
scale every count alike, so the ranking is that of one pass; one epoch is enough
(``trainer.max_epochs=1``). Ties (e.g. never-seen items) are ranked pessimistically.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from deepm3.models.components.base import SequentialRecommender


class PopNet(SequentialRecommender):
    def __init__(self, num_items: int) -> None:
        super().__init__(num_items, hidden=1)  # the 1-dim embedding is never used for scoring
        self.register_buffer("counts", torch.zeros(num_items + 1, dtype=torch.long))

    def forward(self, items: torch.Tensor, times: torch.Tensor, next_times: torch.Tensor) -> torch.Tensor:
        return self.item_embedding.weight.new_zeros(*items.shape, 1)

    def score(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.counts.float().expand(*hidden.shape[:-1], -1)

    def training_loss(self, batch: dict[str, torch.Tensor], loss: str = "ce") -> torch.Tensor:
        targets = batch["targets"]
        counts = torch.bincount(targets[targets > 0], minlength=self.num_items + 1)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(counts)
        self.counts += counts
        return self.item_embedding.weight.sum() * 0.0
