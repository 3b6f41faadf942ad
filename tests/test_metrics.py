"""docs/protocol.md, "Ranking": full-ranking metrics by direct rank computation, checked against torchmetrics."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
import torch
from torchmetrics.retrieval import RetrievalHitRate, RetrievalMRR, RetrievalNormalizedDCG

import deepm3.metrics
from deepm3.metrics import RankMetrics, metric_names, ranking_metrics, repeat_targets, target_ranks

REFERENCES = {"hr": RetrievalHitRate, "ndcg": RetrievalNormalizedDCG, "mrr": RetrievalMRR}


def untied_scores(batch: int, items: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``[batch, items + 1]`` scores with distinct values per row (column 0 = padding) and targets.

    Scores are strictly positive: torchmetrics 1.9's ``RetrievalMRR`` treats a relevant item
    scored <= 0 as not relevant, which would make the reference, not ours, differ.
    """
    generator = torch.Generator().manual_seed(seed)
    scores = (torch.stack([torch.randperm(items + 1, generator=generator) for _ in range(batch)]).float() + 1) / items
    targets = torch.randint(1, items + 1, (batch,), generator=generator)
    return scores, targets


def torchmetrics_reference(scores, targets, k, candidates=None) -> dict[str, float]:
    """Mean HR/NDCG/MRR@k from torchmetrics, one query per row over that row's candidate items."""
    preds, relevant, indexes = [], [], []
    for row in range(len(targets)):
        items = candidates[row] if candidates is not None else torch.arange(1, scores.shape[1])
        preds.append(scores[row, items])
        relevant.append(items == targets[row])
        indexes.append(torch.full((len(items),), row))
    preds, relevant, indexes = torch.cat(preds), torch.cat(relevant), torch.cat(indexes)
    return {name: float(cls(top_k=k)(preds, relevant, indexes=indexes)) for name, cls in REFERENCES.items()}


@pytest.mark.parametrize("batch, items", [(1, 3), (6, 12), (17, 40), (8, 200)])
@pytest.mark.parametrize("k", [1, 5, 10, 20])
def test_metrics_equal_torchmetrics_retrieval_classes(batch, items, k):
    scores, targets = untied_scores(batch, items, seed=batch * 1000 + items + k)
    ours = ranking_metrics(target_ranks(scores, targets), ks=(k,))
    reference = torchmetrics_reference(scores, targets, k)
    for name in REFERENCES:
        assert ours[f"{name}@{k}"].mean().item() == pytest.approx(reference[name], abs=1e-6), name


@pytest.mark.parametrize("k", [5, 10])
def test_history_exclusion_equals_torchmetrics_over_the_remaining_candidates(k):
    batch, items = 9, 30
    scores, targets = untied_scores(batch, items, seed=k)
    generator = torch.Generator().manual_seed(100 + k)
    rows, excluded, candidates = [], [], []
    for row in range(batch):
        others = torch.tensor([i for i in range(1, items + 1) if i != targets[row]])
        history = others[torch.randperm(len(others), generator=generator)[: 3 + row]]
        rows += [row] * len(history)
        excluded += history.tolist()
        candidates.append(torch.tensor([i for i in range(1, items + 1) if i not in history.tolist()]))
    ranks = target_ranks(scores, targets, torch.tensor(rows), torch.tensor(excluded))
    ours = ranking_metrics(ranks, ks=(k,))
    reference = torchmetrics_reference(scores, targets, k, candidates)
    for name in REFERENCES:
        assert ours[f"{name}@{k}"].mean().item() == pytest.approx(reference[name], abs=1e-6), name


def test_constant_scores_rank_every_target_last_and_score_zero():
    items = 50
    scores = torch.zeros(4, items + 1)
    ranks = target_ranks(scores, torch.tensor([1, 7, 25, 50]))
    assert ranks.tolist() == [items - 1] * 4
    for name, values in ranking_metrics(ranks).items():
        assert values.sum().item() == 0.0, name


def test_ties_with_the_target_count_against_it():
    scores = torch.tensor([[0.0, 0.9, 0.9, 0.9, 0.1]])
    assert target_ranks(scores, torch.tensor([2])).tolist() == [2]


def test_history_items_are_not_ranked():
    scores = torch.tensor([[0.0, 0.9, 0.8, 0.7, 0.5, 0.1]])
    target = torch.tensor([4])
    assert target_ranks(scores, target).tolist() == [3]
    assert target_ranks(scores, target, torch.tensor([0, 0]), torch.tensor([1, 3])).tolist() == [1]


def test_the_target_is_ranked_even_when_it_is_in_the_history():
    scores = torch.tensor([[0.0, 0.9, 0.8, 0.7, 0.5, 0.1]])
    target = torch.tensor([4])
    without = target_ranks(scores, target, torch.tensor([0]), torch.tensor([1]))
    with_target = target_ranks(scores, target, torch.tensor([0, 0]), torch.tensor([1, 4]))
    assert with_target.tolist() == without.tolist() == [2]


def test_history_of_one_row_does_not_affect_another():
    scores = torch.tensor([[0.0, 0.9, 0.8, 0.1], [0.0, 0.9, 0.8, 0.1]])
    ranks = target_ranks(scores, torch.tensor([3, 3]), torch.tensor([0, 0]), torch.tensor([1, 2]))
    assert ranks.tolist() == [0, 2]


def test_padding_column_is_never_ranked():
    high_padding = torch.tensor([[1e9, 0.2, 0.9, 0.4]])
    assert target_ranks(high_padding, torch.tensor([2])).tolist() == [0]
    tied_padding = torch.zeros(1, 4)
    assert target_ranks(tied_padding, torch.tensor([1])).tolist() == [2]


def test_nan_target_score_ranks_last_among_the_candidates():
    scores = torch.tensor([[0.0, float("nan"), -5.0, -6.0, -7.0, -8.0]])
    assert target_ranks(scores, torch.tensor([1])).tolist() == [4]
    assert target_ranks(scores, torch.tensor([1]), torch.tensor([0]), torch.tensor([3])).tolist() == [3]


def test_ranking_leaves_the_scores_untouched():
    scores, targets = untied_scores(3, 10, seed=0)
    before = scores.clone()
    target_ranks(scores, targets, torch.tensor([0, 1]), torch.tensor([2, 3]))
    assert torch.equal(scores, before)


def test_metric_names_list_every_metric_at_every_k():
    assert metric_names((5, 10)) == ["hr@5", "ndcg@5", "mrr@5", "hr@10", "ndcg@10", "mrr@10"]
    assert sorted(ranking_metrics(torch.tensor([0]), ks=(5, 10))) == sorted(metric_names((5, 10)))


def test_module_docstring_examples_run():
    results = doctest.testmod(deepm3.metrics)
    assert results.attempted >= 2
    assert results.failed == 0


def test_repeat_targets_are_the_samples_whose_target_is_a_history_item() -> None:
    targets = torch.tensor([3, 7, 5])
    # sample 0 saw 1, 3; sample 1 saw 2; sample 2 saw 5, 5, 6
    rows, items = torch.tensor([0, 0, 1, 2, 2, 2]), torch.tensor([1, 3, 2, 5, 5, 6])
    assert repeat_targets(targets, rows, items).tolist() == [True, False, True]


def test_rank_metrics_keep_repeat_targets_out_of_the_headline_when_history_is_excluded() -> None:
    metric = RankMetrics(ks=(1,), headline_novel_only=True)
    metric.update(torch.tensor([0, 5, 0, 0]), torch.tensor([True, False, True, False]))
    out = metric.compute()
    assert out["hr@1"].item() == pytest.approx(0.5)  # novel users: ranks 5 and 0
    assert out["repeat_share"].item() == pytest.approx(0.5)  # 2 of 4 targets repeat
    assert out["repeat/hr@1"].item() == pytest.approx(1.0)
    assert out["novel/hr@1"].item() == pytest.approx(0.5)


def test_rank_metrics_without_exclusion_average_every_user() -> None:
    metric = RankMetrics(ks=(1,))
    metric.update(torch.tensor([0, 5, 0, 0]), torch.tensor([True, False, True, False]))
    assert metric.compute()["hr@1"].item() == pytest.approx(0.75)


def test_no_repeat_slices_when_no_target_repeats() -> None:
    metric = RankMetrics(ks=(1,))
    metric.update(torch.tensor([0, 2]), torch.tensor([False, False]))
    assert sorted(metric.compute()) == ["hr@1", "mrr@1", "ndcg@1"]


def test_a_nan_competitor_counts_against_the_target() -> None:
    scores = torch.tensor([[0.0, 0.5, float("nan"), 0.1]])
    assert target_ranks(scores, torch.tensor([1])).tolist() == [1]


def test_ranking_metrics_of_the_headline_match_a_hand_count() -> None:
    # kept as an anchor for RankMetrics: ndcg of rank 1 at K=10 is 1/log2(3)
    assert ranking_metrics(torch.tensor([1]), (10,))["ndcg@10"].item() == pytest.approx(1 / np.log2(3))
