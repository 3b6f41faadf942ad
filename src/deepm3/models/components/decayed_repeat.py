"""Decayed repeat: the history's items scored by a sum of exponentially decayed memories, then popularity.

Each earlier interaction with item ``i`` at ``t_j`` adds ``exp(-(t_query - t_j) / tau)`` to
``i``'s memory (an EdgeBank-like memory with forgetting). ``tau`` (seconds) spans the repeat
baselines: a small ``tau`` ranks the history by recency ("last item first"), a large one by
frequency (the ``repeat`` scorer). It is chosen on validation like a learning rate.

Scores: history items rank above every other item, by their memory (compared as
``logsumexp(-(t_query - t_j) / tau)`` in float64, so memories too small for a float still keep
their order); every other item by its training popularity, as :class:`~.pop.PopNet` counts
it (one epoch). Nothing is learned but those counts.
"""

from __future__ import annotations

import torch

from deepm3.errors import ConfigError
from deepm3.models.components.pop import PopNet


class DecayedRepeatNet(PopNet):
    uses_time = True

    def __init__(self, num_items: int, tau: float = 3600.0) -> None:
        super().__init__(num_items)
        if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not tau > 0:
            raise ConfigError(f"model.net.tau={tau!r}; expected a positive number of seconds")
        self.tau = float(tau)

    def memory(self, items: torch.Tensor, times: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        """``[B, L]`` log-memory of each window event's item at ``query [B]`` (``-inf`` on padding)."""
        real = items > 0
        decay = -(query[:, None] - times).clamp(min=0).to(torch.float64) / self.tau
        same = (items[:, :, None] == items[:, None, :]) & real[:, None, :]
        log_memory = torch.logsumexp(torch.where(same, decay[:, None, :], -torch.inf), dim=-1)
        return torch.where(real, log_memory, -torch.inf)

    def predict(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        items = batch["items"]
        batch_size = items.shape[0]
        log_memory = self.memory(items, batch["times"], batch["next_times"][:, -1])
        # order among the history's items: how many window events have a smaller memory (float-exact),
        # over the real events only, so more left padding changes nothing
        real = items > 0
        smaller = (log_memory[:, None, :] < log_memory[:, :, None]) & real[:, None, :]
        order = smaller.sum(-1).to(torch.float32) / (real.sum(-1, keepdim=True) + 1)
        popularity = self.counts.float() / (self.counts.max().float() + 1.0)
        scores = popularity.expand(batch_size, -1).clone()
        seen = torch.zeros_like(scores).scatter_reduce_(1, items, torch.where(real, 1.0 + order, 0.0), reduce="amax")
        scores = torch.where(seen > 0, seen, scores)
        scores[:, 0] = 0.0  # padding (never ranked)
        return scores
