"""Full-ranking metrics by direct rank computation (docs/protocol.md, "Ranking").

``rank`` counts the other candidate items scoring **>=** the target (pessimistic ties: a
constant model ranks every target last). Excluded items (padding, and the user's history
when asked) are not candidates; the target always is. NaN is never in the target's favour:
a NaN target score ranks last, and a candidate with a NaN score counts as scoring above it.

History exclusion is only sound for a target that is not itself a history item (see
``docs/protocol.md``, "Ranking"): :class:`RankMetrics` reports such *repeat* targets as their
own slice and keeps them out of the headline number when the history is excluded.

>>> import torch
>>> scores = torch.tensor([[0.0, 0.9, 0.5, 0.5, 0.1]])  # column 0 is padding
>>> target_ranks(scores, torch.tensor([2])).tolist()
[2]
>>> {k: round(v.item(), 4) for k, v in ranking_metrics(torch.tensor([2]), ks=(5,)).items()}
{'hr@5': 1.0, 'ndcg@5': 0.5, 'mrr@5': 0.3333}
"""

from __future__ import annotations

import torch
from torchmetrics import Metric

DEFAULT_KS = (5, 10, 20)
# full: rank every item (the headline). sampled: additionally rank the target among stored
# negatives, logged under `sampled_*` names beside the full-ranking metrics, never instead.
EVAL_MODES = ("full", "sampled")


def mask_history(scores: torch.Tensor, rows: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """Set ``scores[rows, items]`` to -inf (in place) and return ``scores``."""
    if rows.numel():
        scores[rows, items] = float("-inf")
    return scores


def target_ranks(
    scores: torch.Tensor,
    targets: torch.Tensor,
    history_rows: torch.Tensor | None = None,
    history_items: torch.Tensor | None = None,
) -> torch.Tensor:
    """0-based pessimistic rank of each target among the candidates.

    ``scores`` is ``[B, N + 1]`` with column ``i`` for item ``i`` (column 0 = padding, never
    ranked). ``history_rows``/``history_items`` list (sample, item) pairs to exclude.
    """
    scores = scores.detach().float().clone()
    batch = torch.arange(len(targets), device=scores.device)
    target_scores = scores[batch, targets].clone()
    scores[:, 0] = float("-inf")
    if history_rows is not None and history_items is not None:
        mask_history(scores, history_rows.to(scores.device), history_items.to(scores.device))
    scores[batch, targets] = float("-inf")  # the target is counted separately, never excluded
    # NaN >= x is False: a NaN competitor would silently count as below the target. Count it above.
    ranks = ((scores >= target_scores[:, None]) | torch.isnan(scores)).sum(dim=1)
    worst = ((scores > float("-inf")) | torch.isnan(scores)).sum(dim=1)
    return torch.where(torch.isnan(target_scores), worst, ranks)


def sampled_target_ranks(scores: torch.Tensor, targets: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
    """0-based pessimistic rank of each target among itself and its ``[B, n]`` sampled negatives.

    Same rule as :func:`target_ranks`: negatives scoring **>=** the target count against it;
    a NaN target score ranks last (``n``).

    >>> scores = torch.tensor([[0.0, 0.9, 0.5, 0.5, 0.1]])
    >>> sampled_target_ranks(scores, torch.tensor([2]), torch.tensor([[3, 4]])).tolist()
    [1]
    """
    scores = scores.detach().float()
    target_scores = scores.gather(1, targets[:, None])
    negative_scores = scores.gather(1, negatives.to(scores.device))
    ranks = ((negative_scores >= target_scores) | torch.isnan(negative_scores)).sum(dim=1)
    return torch.where(torch.isnan(target_scores[:, 0]), torch.full_like(ranks, negatives.shape[1]), ranks)


def ranking_metrics(ranks: torch.Tensor, ks: tuple[int, ...] = DEFAULT_KS) -> dict[str, torch.Tensor]:
    """Per-user HR@K, NDCG@K and MRR@K from 0-based ranks (one value per user)."""
    ranks = ranks.float()
    out: dict[str, torch.Tensor] = {}
    for k in ks:
        hit = (ranks < k).float()
        out[f"hr@{k}"] = hit
        out[f"ndcg@{k}"] = hit / torch.log2(ranks + 2.0)
        out[f"mrr@{k}"] = hit / (ranks + 1.0)
    return out


def metric_names(ks: tuple[int, ...] = DEFAULT_KS) -> list[str]:
    return [f"{m}@{k}" for k in ks for m in ("hr", "ndcg", "mrr")]


def repeat_targets(targets: torch.Tensor, history_rows: torch.Tensor, history_items: torch.Tensor) -> torch.Tensor:
    """``[B]`` bool: whether each sample's target already occurs in its history (a repeat).

    >>> repeat_targets(torch.tensor([3, 4]), torch.tensor([0, 0, 1]), torch.tensor([3, 5, 5])).tolist()
    [True, False]
    """
    repeat = torch.zeros(len(targets), dtype=torch.bool, device=targets.device)
    if history_rows.numel():
        rows, items = history_rows.to(targets.device), history_items.to(targets.device)
        repeat[rows[items == targets[rows]]] = True
    return repeat


SLICES = ("novel", "repeat")


class RankMetrics(Metric):
    """Keeps every sample's rank and repeat flag; computes the headline metrics and the slices.

    ``compute()`` returns ``<metric>`` (the headline) and, when some target repeats a history
    item, ``repeat_share`` (the fraction of such samples) and the ``novel/<metric>`` and
    ``repeat/<metric>`` slices. With ``headline_novel_only`` (history excluded from the ranking) the
    headline covers the novel-target samples only: excluding a history that contains the target
    would hand out free hits, so repeat targets are ranked over every item and reported apart.
    Ranks are ``cat``-reduced, so the numbers are exact under DDP too.
    """

    full_state_update = False

    def __init__(self, ks: tuple[int, ...] = DEFAULT_KS, headline_novel_only: bool = False) -> None:
        super().__init__()
        self.ks = tuple(ks)
        self.headline_novel_only = headline_novel_only
        self.add_state("ranks", default=[], dist_reduce_fx="cat")
        self.add_state("repeat", default=[], dist_reduce_fx="cat")

    def update(self, ranks: torch.Tensor, repeat: torch.Tensor | None = None) -> None:
        self.ranks.append(ranks.detach().long())
        self.repeat.append(torch.zeros_like(ranks, dtype=torch.bool) if repeat is None else repeat.detach().bool())

    def values(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Every kept rank and repeat flag, concatenated (gathered across processes)."""
        ranks, repeat = self.ranks, self.repeat
        if isinstance(ranks, list):  # not synced (one process): still a list of batches
            ranks = torch.cat(ranks) if ranks else torch.zeros(0, dtype=torch.long, device=self.device)
            repeat = torch.cat(repeat) if repeat else torch.zeros(0, dtype=torch.bool, device=self.device)
        return ranks, repeat

    def compute(self) -> dict[str, torch.Tensor]:
        ranks, repeat = self.values()
        headline = ~repeat if self.headline_novel_only else torch.ones_like(repeat)
        out = self._means(ranks[headline], "")
        if bool(repeat.any()):  # slices only where there is something to slice
            out["repeat_share"] = repeat.float().mean()
            out.update(self._means(ranks[~repeat], "novel/"))
            out.update(self._means(ranks[repeat], "repeat/"))
        return out

    def _means(self, ranks: torch.Tensor, prefix: str) -> dict[str, torch.Tensor]:
        if not len(ranks):
            return {prefix + name: torch.tensor(float("nan")) for name in metric_names(self.ks)}
        return {prefix + name: values.mean() for name, values in ranking_metrics(ranks, self.ks).items()}
