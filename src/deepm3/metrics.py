"""Full-ranking metrics by direct rank computation (protocol §3).

``rank`` counts the other candidate items scoring **>=** the target (pessimistic ties: a
constant model ranks every target last). Excluded items (padding, and the user's history
when asked) are not candidates; the target always is. NaN scores rank the target last.

>>> import torch
>>> scores = torch.tensor([[0.0, 0.9, 0.5, 0.5, 0.1]])  # column 0 is padding
>>> target_ranks(scores, torch.tensor([2])).tolist()
[2]
>>> {k: round(v.item(), 4) for k, v in ranking_metrics(torch.tensor([2]), ks=(5,)).items()}
{'hr@5': 1.0, 'ndcg@5': 0.5, 'mrr@5': 0.3333}
"""

from __future__ import annotations

import torch

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
    ranks = (scores >= target_scores[:, None]).sum(dim=1)
    worst = (scores > float("-inf")).sum(dim=1)
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
    ranks = (negative_scores >= target_scores).sum(dim=1)
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

