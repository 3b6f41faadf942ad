"""The interface every network implements, and the pieces all of them share.

A network maps a left-padded window (items, their timestamps, and the moment each
position's prediction is asked for) to one representation per position; scores are dot
products with the item embedding table. Training, evaluation and serving go through
these three methods only, so every model is judged by the same code.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
import torch.nn.functional as F
from torch import nn

from deepm3.models.components.excitation import add_to_scores


class SequentialRecommender(nn.Module, ABC):
    """Base class: item embedding (row 0 = padding), scoring and the default losses."""

    uses_time: bool = False  # whether predictions depend on timestamps (serving reports it)

    def __init__(self, num_items: int, hidden: int) -> None:
        super().__init__()
        self.num_items = num_items
        self.hidden = hidden
        self.item_embedding = nn.Embedding(num_items + 1, hidden, padding_idx=0)
        nn.init.normal_(self.item_embedding.weight, std=hidden**-0.5)
        with torch.no_grad():
            self.item_embedding.weight[0].zero_()

    @abstractmethod
    def forward(self, items: torch.Tensor, times: torch.Tensor, next_times: torch.Tensor) -> torch.Tensor:
        """``[B, L]`` inputs -> ``[B, L, hidden]``: position i's representation predicts target i."""

    def score(self, hidden: torch.Tensor) -> torch.Tensor:
        """Scores for every item (column 0 is padding; callers never rank it)."""
        return hidden @ self.item_embedding.weight.T

    def excitation(self, batch: dict[str, torch.Tensor], hidden: torch.Tensor) -> torch.Tensor | None:
        """What each window event adds to its own item's score (a repeat term), or ``None`` (no such term).

        ``hidden`` is ``[B, Q, D]``, the representations of the last ``Q`` positions; the answer is
        ``[B, Q, L]`` (:mod:`.excitation`). Every path -- training, evaluation, serving -- adds it the
        same way, here in the base class, so a model implements only this hook.
        """
        return None

    def predict(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """``[B, N + 1]`` scores for the item after the last input, asked at ``next_times[:, -1]``."""
        hidden = self(batch["items"], batch["times"], batch["next_times"])
        scores = self.score(hidden[:, -1])
        extra = self.excitation(batch, hidden[:, -1:])
        return scores if extra is None else add_to_scores(scores, batch["items"], extra[:, -1])

    def training_loss(self, batch: dict[str, torch.Tensor], loss: str = "ce") -> torch.Tensor:
        """Next-item loss at every position with a target (full softmax CE by default)."""
        hidden = self(batch["items"], batch["times"], batch["next_times"])
        return self.position_loss(batch, hidden, loss)

    def position_loss(self, batch: dict[str, torch.Tensor], hidden: torch.Tensor, loss: str) -> torch.Tensor:
        """The next-item loss of representations ``hidden [B, L, D]`` at every position with a target."""
        targets = batch["targets"]
        extra = self.excitation(batch, hidden)
        memory = None
        if extra is not None:  # [B, L, L]: position p's additions on the window's items
            memory = (batch["items"][:, None, :].expand_as(extra), extra)
        if hidden.is_cuda:  # a boolean-mask selection would wait for the GPU: score every position
            memory = None if memory is None else tuple(m.flatten(0, 1) for m in memory)
            return next_item_loss(self, hidden.flatten(0, 1), targets.flatten(), loss, memory)
        real = targets > 0  # on CPU, skipping the padded positions is cheaper
        memory = None if memory is None else tuple(m[real] for m in memory)
        return next_item_loss(self, hidden[real], targets[real], loss, memory)


def next_item_loss(
    net: SequentialRecommender,
    hidden: torch.Tensor,
    targets: torch.Tensor,
    loss: str,
    memory: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Mean loss of representations ``[M, D]`` against target items ``[M]`` (0 = no target, ignored).

    ``ce``: full softmax cross-entropy over items 1..N; ``bpr``: one uniform negative per
    target (it may rarely equal the target; at realistic N that is noise). ``memory`` = (items,
    values), each ``[M, L]``: additions to those items' scores (:meth:`SequentialRecommender.excitation`).
    """
    if loss == "ce":
        if memory is None:
            logits = hidden @ net.item_embedding.weight[1:].T
        else:
            logits = add_to_scores(hidden @ net.item_embedding.weight.T, *memory)[:, 1:]
        return F.cross_entropy(logits, targets - 1, ignore_index=-1)
    if loss == "bpr":
        negatives = torch.randint(1, net.num_items + 1, targets.shape, device=targets.device)
        pos = (hidden * net.item_embedding(targets)).sum(-1)
        neg = (hidden * net.item_embedding(negatives)).sum(-1)
        if memory is not None:
            items, values = memory
            pos = pos + (values * (items == targets[:, None])).sum(-1)
            neg = neg + (values * (items == negatives[:, None])).sum(-1)
        real = (targets > 0).to(hidden.dtype)
        return -(F.logsigmoid(pos - neg) * real).sum() / real.sum().clamp(min=1.0)
    raise ValueError(f"unknown loss {loss!r}; expected 'ce' or 'bpr'")
