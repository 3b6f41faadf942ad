"""Ranking with the history excluded (``RecModule(exclude_history=True)``): a repeat target is
ranked among every item, never for free; the repeat baseline's order."""

from __future__ import annotations

from pathlib import Path

import torch

from deepm3.data.datamodule import SequenceDataModule
from deepm3.data.sources.synthetic import SyntheticSource
from deepm3.metrics import RankMetrics, repeat_targets
from deepm3.models.components.repeat import RepeatNet
from deepm3.models.module import RecModule


def _batch(items: list[list[int]], targets: list[int]) -> dict[str, torch.Tensor]:
    item_rows = torch.tensor(items)
    times = torch.cumsum(torch.full_like(item_rows, 3600), dim=1) * (item_rows > 0)
    rows = torch.cat([torch.full((int((r > 0).sum()),), i) for i, r in enumerate(item_rows)])
    target_col = torch.zeros_like(item_rows)
    target_col[:, -1] = torch.tensor(targets)
    return {
        "items": item_rows,
        "times": times,
        "next_times": times + 60 * (item_rows > 0),
        "targets": target_col,
        "history_rows": rows,
        "history_items": item_rows[item_rows > 0],
    }


def test_exclusion_ranks_a_repeat_target_over_every_item() -> None:
    module = RecModule({"_target_": "deepm3.models.components.repeat.RepeatNet"}, num_items=6, exclude_history=True)
    batch = _batch([[1, 2, 2], [0, 3, 4]], targets=[1, 5])
    ranks = module.ranks(batch)
    # user 0 repeats item 1: ranked among all items, behind 2 (seen twice) -> 1, not a free 0
    # user 1 is novel: its history (3, 4) leaves the candidates; 1, 2 and 6 tie with it at 0 -> 3
    assert ranks.tolist() == [1, 3]


def test_history_scorer_gains_nothing_from_exclusion_on_the_synthetic_world(tmp_path: Path) -> None:
    """The audit's reproduction: a scorer that learns nothing beat every model under the old
    exclusion. Its novel-item number with exclusion must not exceed its all-items number."""
    source = SyntheticSource(users=300, items=120, events_per_user=30, seed=0)
    datamodule = SequenceDataModule(source, tmp_path / "cache", max_len=30, name="synthetic-small")
    datamodule.setup()
    scores = {}
    for exclude in (False, True):
        module = RecModule(
            {"_target_": "deepm3.models.components.repeat.RepeatNet"},
            num_items=datamodule.num_items,
            exclude_history=exclude,
            ks=(10,),
        )
        metric = RankMetrics((10,), headline_novel_only=exclude)
        for batch in datamodule.test_dataloader():
            ranks = module.ranks(batch)
            metric.update(ranks, repeat_targets(batch["targets"][:, -1], batch["history_rows"], batch["history_items"]))
        out = metric.compute()
        assert out["repeat_share"].item() > 0.05  # the world really repeats items
        scores[exclude] = out["ndcg@10"].item()
    assert scores[True] <= scores[False]


def test_repeat_baseline_ranks_history_by_frequency_then_recency_then_popularity() -> None:
    net = RepeatNet(num_items=6)
    net.counts[:] = torch.tensor([0, 1, 1, 1, 1, 9, 4])  # item 5 most popular, then 6
    scores = net.predict(_batch([[0, 3, 1, 4, 1]], targets=[2]))
    order = torch.argsort(scores[0, 1:], descending=True, stable=True) + 1
    assert order.tolist()[:5] == [1, 4, 3, 5, 6]  # 1 twice; 4 more recent than 3; then popularity
