"""SLRC+ (Wang et al., WWW 2019): repeat consumption as a Hawkes process on a collaborative-filtering base.

The score of item ``i`` at the query time is its intensity

    lambda_i(t) = base_i + a_i * sum_{j: item_j = i, t_j <= t} k_i(t - t_j),
    k_i(d) = pi_i exp(-b_i d) + (1 - pi_i) N(d; mu_i, s_i)   (unnormalised Gaussian),

with item-specific excitation ``a_i``, decay ``b_i``, mixture ``pi_i`` and life cycle
``(mu_i, s_i)`` -- the kernel of :class:`~.excitation.ItemExcitation` (``exp_gauss``).

The base intensity is collaborative filtering on the sequence's own history: the paper's
user factor is replaced by the mean of the history items' factors (FISM-style), since session
data has no user ids and a test sequence is new. Its last coordinate is a constant 1, so the
item embedding's last coordinate is a learned item bias. Trained with the same next-item
loss as every model (full softmax by default) rather than the paper's BPR pairs.
"""

from __future__ import annotations

import torch
from torch import nn

from deepm3.errors import ConfigError
from deepm3.models.components.base import SequentialRecommender
from deepm3.models.components.excitation import ItemExcitation


class SLRCNet(SequentialRecommender):
    uses_time = True

    def __init__(
        self,
        num_items: int,
        hidden: int = 64,
        unit: str | float = "hours",
        init_amplitude: float = 1.0,
        init_rate: float = 1.0,
        init_lifetime: float = 24.0,
    ) -> None:
        if isinstance(hidden, bool) or not isinstance(hidden, int) or hidden < 2:
            raise ConfigError(f"model.net.hidden={hidden!r}; expected an integer >= 2")
        super().__init__(num_items, hidden)
        self.history_embedding = nn.Embedding(num_items + 1, hidden - 1, padding_idx=0)
        nn.init.normal_(self.history_embedding.weight, std=hidden**-0.5)
        with torch.no_grad():
            self.history_embedding.weight[0].zero_()
        self.repeat = ItemExcitation(
            num_items,
            "exp_gauss",
            unit,
            init_amplitude=init_amplitude,
            init_rate=init_rate,
            init_lifetime=init_lifetime,
        )

    def forward(self, items: torch.Tensor, times: torch.Tensor, next_times: torch.Tensor) -> torch.Tensor:
        """Position ``p``'s user factor: the mean history factor of the events up to ``p``, then a 1."""
        real = (items > 0).unsqueeze(-1).float()
        total = torch.cumsum(self.history_embedding(items), dim=1)
        mean = total / torch.cumsum(real, dim=1).clamp(min=1.0)
        return torch.cat([mean, torch.ones_like(mean[..., :1])], dim=-1)

    def excitation(self, batch: dict[str, torch.Tensor], hidden: torch.Tensor) -> torch.Tensor:
        queries = hidden.shape[1]
        return self.repeat(batch["items"], batch["times"], batch["next_times"][:, -queries:])
