"""Numbers that cannot be fooled: repeat-safe ranking, the same time information for every
model, NaN never in the target's favour, noise that never inserts the answer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

from deepm3.analysis.noise import ItemReplacement, PredictionInputs
from deepm3.data.datamodule import SequenceDataModule
from deepm3.data.sources.synthetic import SyntheticSource
from deepm3.metrics import RankMetrics, ranking_metrics, repeat_targets, target_ranks
from deepm3.models.components.bert4rec import BERT4RecNet
from deepm3.models.components.deepm3 import DeepM3Net
from deepm3.models.components.gru4rec import GRU4RecNet
from deepm3.models.components.gru_dt import GRUDtNet
from deepm3.models.components.repeat import RepeatNet
from deepm3.models.components.sasrec import SASRecNet
from deepm3.models.components.time import visible_inputs
from deepm3.models.components.tisasrec import TiSASRecNet
from deepm3.models.module import RecModule

N = 12


# --- repeat-safe ranking -------------------------------------------------------------------


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


# --- the same time information for every model ---------------------------------------------


def _nets() -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    field = {"width": 16, "zero_init": False}  # a zero field would hide any use of time
    nets = {
        "deepm3-euler": lambda q: DeepM3Net(
            N, hidden=8, dropout=0.0, field=field, time={"query": q}, solver={"method": "euler", "steps": 2}
        ),
        "deepm3-rk4": lambda q: DeepM3Net(
            N, hidden=8, dropout=0.0, field=field, time={"query": q}, solver={"method": "rk4", "steps": 1}
        ),
        "tisasrec": lambda q: TiSASRecNet(N, hidden=8, heads=2, dropout=0.0, max_len=5, clip=16),
        "gru_dt": lambda q: GRUDtNet(N, hidden=8, gru_hidden=8, dropout=0.0, time={"query": q}),
        "sasrec": lambda q: SASRecNet(N, hidden=8, heads=2, dropout=0.0, max_len=5),
        "gru4rec": lambda q: GRU4RecNet(N, hidden=8, gru_hidden=8, dropout=0.0),
        "bert4rec": lambda q: BERT4RecNet(N, hidden=8, heads=2, dropout=0.0, max_len=5),
    }
    return nets


TIME_AWARE = ["deepm3-euler", "deepm3-rk4", "tisasrec", "gru_dt"]


def _module(name: str, query: str) -> RecModule:
    torch.manual_seed(0)
    module = RecModule({"_target_": "deepm3.models.components.pop.PopNet"}, num_items=N, query=query)
    module.net = _nets()[name](query).eval()  # the network under test, behind the module's input rule
    return module


def _window(target_time: int) -> dict[str, torch.Tensor]:
    items = torch.tensor([[0, 3, 5, 7, 2], [4, 4, 9, 1, 6]])
    times = torch.tensor([[0, 100, 4000, 90000, 90500], [10, 20, 7200, 7300, 400000]])
    next_times = torch.cat([times[:, 1:], torch.full((2, 1), 0)], dim=1)
    next_times[0, 0] = 0
    next_times[:, -1] = times[:, -1] + target_time
    targets = torch.zeros_like(items)
    targets[:, -1] = torch.tensor([8, 10])
    return {"items": items, "times": times, "next_times": next_times, "targets": targets}


@pytest.mark.parametrize("name", list(_nets()))
def test_under_query_last_the_target_timestamp_changes_no_score(name: str) -> None:
    module = _module(name, "last")
    with torch.no_grad():
        soon, late = module(_window(60)), module(_window(3 * 86400))
    torch.testing.assert_close(soon, late, rtol=0, atol=0)


@pytest.mark.parametrize("name", TIME_AWARE)
def test_under_query_target_every_time_aware_model_reads_the_target_timestamp(name: str) -> None:
    module = _module(name, "target")
    with torch.no_grad():
        soon, late = module(_window(60)), module(_window(3 * 86400))
    assert not torch.allclose(soon, late)


@pytest.mark.parametrize("name", ["deepm3-euler", "deepm3-rk4"])
def test_under_query_last_deepm3_still_flows_between_observed_events(name: str) -> None:
    module = _module(name, "last")
    moved = _window(60)
    moved["times"][1, 3] += 20000  # a history event later: the gaps around it change
    moved["next_times"][1, 2] += 20000
    with torch.no_grad():
        assert not torch.allclose(module(_window(60))[1], module(moved)[1])


def test_under_query_last_the_training_loss_ignores_the_targets_timestamps() -> None:
    module = _module("deepm3-euler", "last")
    batch = _window(60)
    batch["targets"] = torch.tensor([[0, 5, 7, 2, 8], [4, 9, 1, 6, 10]])
    later = {**batch, "next_times": batch["next_times"] + 5000 * (batch["items"] > 0)}
    assert module.training_step(batch, 0).item() == module.training_step(later, 0).item()


def test_visible_inputs_hide_the_query_time_only_under_last() -> None:
    batch = _window(60)
    assert visible_inputs(batch, "target")["next_times"] is batch["next_times"]
    assert torch.equal(visible_inputs(batch, "last")["next_times"], batch["times"])


# --- NaN and noise ---------------------------------------------------------------------------


def test_a_nan_competitor_counts_against_the_target() -> None:
    scores = torch.tensor([[0.0, 0.5, float("nan"), 0.1]])
    assert target_ranks(scores, torch.tensor([1])).tolist() == [1]


def test_item_replacement_never_puts_the_target_into_the_input() -> None:
    items = np.tile(np.array([[1, 2, 1, 2, 1, 2]]), (50, 1))
    times = np.cumsum(np.ones_like(items), axis=1)
    inputs = PredictionInputs(items, times, times + 1, num_items=3, targets=np.full(50, 3))
    noisy = ItemReplacement(level=1.0)(inputs, seed=0)
    assert (noisy.items != 3).all() and set(np.unique(noisy.items)) == {1, 2}


def test_seed_level_view_tests_the_per_seed_means_with_a_paired_t_test() -> None:
    import pandas as pd

    from deepm3.analysis.significance import compare_seeds

    rows = pd.DataFrame(
        {
            "model": ["a"] * 6 + ["b"] * 6,
            "seed": [0, 0, 1, 1, 2, 2] * 2,
            "user": ["u", "v"] * 6,
            "ndcg@10": [0.2, 0.4, 0.5, 0.3, 0.1, 0.1, 0.1, 0.1, 0.2, 0.2, 0.0, 0.1],
        }
    )
    table = compare_seeds(rows, "a", "ndcg@10")
    reference, baseline = [0.3, 0.4, 0.1], [0.1, 0.2, 0.05]
    assert table.loc[0, "reference_mean"] == pytest.approx(np.mean(reference))
    assert table.loc[0, "baseline_std"] == pytest.approx(np.std(baseline, ddof=1))
    assert table.loc[0, "seed_t_pvalue"] == pytest.approx(stats.ttest_rel(reference, baseline).pvalue)
    assert table.loc[0, "shared_seeds"] == 3


def test_ranking_metrics_of_the_headline_match_a_hand_count() -> None:
    # kept as an anchor for RankMetrics: ndcg of rank 1 at K=10 is 1/log2(3)
    assert ranking_metrics(torch.tensor([1]), (10,))["ndcg@10"].item() == pytest.approx(1 / np.log2(3))


@pytest.mark.parametrize("query", ["target", "last"])
def test_deepm3_event_by_event_state_reproduces_the_window_forward(query: str) -> None:
    """What a stateful server relies on: advance() per event + readout() == forward()."""
    torch.manual_seed(1)
    net = DeepM3Net(
        N,
        hidden=8,
        dropout=0.0,
        field={"width": 16, "zero_init": False},
        time={"query": query},
        solver={"method": "rk4", "steps": 2},
    ).eval()
    window = _window(5000)
    batch = visible_inputs(window, query)
    with torch.no_grad():
        expected = net.predict(batch)
        h = net.initial_state(2)
        previous = torch.zeros(2, dtype=torch.long)
        for i in range(window["items"].shape[1]):
            items, times = window["items"][:, i], window["times"][:, i]
            gap = torch.where(previous > 0, times - previous, torch.zeros_like(times))
            h = net.advance(h, items, gap)
            previous = torch.where(items > 0, times, previous)
        scores = net.readout(h, window["next_times"][:, -1] - window["times"][:, -1])
    torch.testing.assert_close(scores, expected, rtol=1e-5, atol=1e-6)
