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
    Ranks are ``cat``-reduced and, given each sample's index (``samples``), de-duplicated by it after
    the gather: a distributed sampler pads the last shard with repeated samples, which must not count
    twice, so the numbers under DDP equal one process's.
    """

    full_state_update = False

    def __init__(self, ks: tuple[int, ...] = DEFAULT_KS, headline_novel_only: bool = False) -> None:
        super().__init__()
        self.ks = tuple(ks)
        self.headline_novel_only = headline_novel_only
        self.add_state("ranks", default=[], dist_reduce_fx="cat")
        self.add_state("repeat", default=[], dist_reduce_fx="cat")
        self.add_state("samples", default=[], dist_reduce_fx="cat")

    def update(
        self, ranks: torch.Tensor, repeat: torch.Tensor | None = None, samples: torch.Tensor | None = None
    ) -> None:
        """``samples``: each rank's row in its split (pass it for every batch or for none)."""
        self.ranks.append(ranks.detach().long())
        self.repeat.append(torch.zeros_like(ranks, dtype=torch.bool) if repeat is None else repeat.detach().bool())
        if samples is not None:
            self.samples.append(samples.detach().long().to(self.ranks[-1].device))

    def values(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Every kept rank and repeat flag (gathered across processes), once per sample and in sample
        order when the samples were given."""
        ranks, repeat, samples = (_cat(x, dtype, self.device) for x, dtype in self._columns())
        if len(samples) != len(ranks):  # no sample indices: every update is its own samples
            return ranks, repeat
        samples, ranks, repeat = unique_by_sample(samples, ranks, repeat)
        return ranks, repeat

    def _columns(self) -> list[tuple[list[torch.Tensor] | torch.Tensor, torch.dtype]]:
        return [(self.ranks, torch.long), (self.repeat, torch.bool), (self.samples, torch.long)]

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


def _cat(values: list[torch.Tensor] | torch.Tensor, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A metric state as one tensor: still a list of batches before a sync, one tensor after."""
    if isinstance(values, torch.Tensor):
        return values
    return torch.cat(values) if values else torch.zeros(0, dtype=dtype, device=device)


def unique_by_sample(samples: torch.Tensor, *columns: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``samples`` and each aligned column, keeping one row per sample index, sorted by it.

    A distributed sampler pads the last shard with repeats of the first samples; gathered
    evaluation rows must count each sample once, as one process does, and in its order.

    >>> unique_by_sample(torch.tensor([2, 0, 1, 0]), torch.tensor([7, 5, 6, 5]))
    (tensor([0, 1, 2]), tensor([5, 6, 7]))
    """
    order = torch.argsort(samples, stable=True)
    ordered = samples[order]
    first = torch.ones_like(ordered, dtype=torch.bool)
    first[1:] = ordered[1:] != ordered[:-1]
    keep = order[first]
    return (samples[keep], *(c[keep.to(c.device)] for c in columns))
