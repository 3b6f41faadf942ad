"""Target kinds: each test target is the latest item again, an earlier item again, or new; and
each model's score per kind (analysis/target_kinds.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from deepm3.analysis.target_kinds import kind_shares, kind_table, target_kinds
from deepm3.data.samples import SampleArrays


def samples(windows: list[list[int]], targets: list[int], histories: list[list[int]], positions=None) -> SampleArrays:
    """Left-padded windows (width 3) with the target on the last column, as eval_samples builds them."""
    items = np.array([[0] * (3 - len(w)) + w for w in windows], dtype=np.int64)
    target_rows = np.zeros_like(items)
    target_rows[:, -1] = targets
    sizes = [len(h) for h in histories]
    return SampleArrays(
        items=items,
        times=np.zeros_like(items),
        next_times=np.zeros_like(items),
        targets=target_rows,
        users=np.arange(len(windows), dtype=np.int64),
        history_offsets=np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64),
        history_items=np.array([i for h in histories for i in h], dtype=np.int64),
        positions=None if positions is None else np.asarray(positions, dtype=np.int64),
    )


def test_the_latest_items_repeat_an_earlier_items_repeat_and_a_new_item_are_told_apart() -> None:
    data = samples([[1, 2], [1, 2], [1, 2]], targets=[2, 1, 5], histories=[[1, 2], [1, 2], [1, 2]])
    kinds = target_kinds(data, np.array(["a", "b", "c"]))
    assert kinds["kind"].tolist() == ["latest", "earlier", "novel"]
    assert kinds["user"].tolist() == ["a", "b", "c"]


def test_an_item_outside_the_window_but_in_the_history_is_an_earlier_repeat() -> None:
    data = samples([[2, 3, 4]], targets=[1], histories=[[1, 2, 3, 4]])
    assert target_kinds(data, np.array(["u"]))["kind"].tolist() == ["earlier"]


def test_under_a_split_by_time_the_key_names_sequence_and_position() -> None:
    data = samples([[7], [7, 8]], targets=[7, 9], histories=[[7], [7, 8]], positions=[1, 2])
    data.users = np.array([0, 0])
    kinds = target_kinds(data, np.array([42]))
    assert kinds["user"].tolist() == ["42/1", "42/2"]
    assert kinds["kind"].tolist() == ["latest", "novel"]


def test_kinds_need_the_history() -> None:
    data = samples([[1]], targets=[1], histories=[[1]])
    data.history_offsets = None
    with pytest.raises(ValueError, match="history"):
        target_kinds(data, np.array(["u"]))


def rows(model: str, seed: int, ranks: list[int], ndcg: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"model": model, "seed": seed, "user": ["a", "b", "c"], "rank": ranks, "ndcg@10": ndcg})


KINDS = pd.DataFrame({"user": ["a", "b", "c"], "kind": ["latest", "latest", "novel"]})


def test_the_table_averages_each_kind_per_seed_then_over_seeds() -> None:
    per_user = pd.concat([rows("m", 0, [0, 3, 20], [1.0, 0.5, 0.0]), rows("m", 1, [0, 0, 20], [1.0, 1.0, 0.0])])
    table = kind_table(per_user, KINDS, "ndcg@10").set_index("model")
    assert table.loc["m", "ndcg@10_latest"] == pytest.approx((0.75 + 1.0) / 2)
    assert table.loc["m", "ndcg@10_latest_std"] == pytest.approx(np.std([0.75, 1.0], ddof=1))
    assert table.loc["m", "hit@1_latest"] == pytest.approx((0.5 + 1.0) / 2)
    assert table.loc["m", "ndcg@10_novel"] == 0.0
    assert table.loc["m", "ndcg@10"] == pytest.approx((0.5 + 2 / 3) / 2)
    assert np.isnan(table.loc["m", "ndcg@10_earlier"])


def test_the_table_keeps_the_given_model_order() -> None:
    per_user = pd.concat([rows("b", 0, [0, 0, 0], [1.0] * 3), rows("a", 0, [1, 1, 1], [0.6] * 3)])
    assert kind_table(per_user, KINDS, "ndcg@10", order=["b", "a"])["model"].tolist() == ["b", "a"]


def test_a_test_row_that_is_not_a_sample_of_the_split_is_an_error() -> None:
    per_user = rows("m", 0, [0, 0, 0], [1.0] * 3).assign(user=["a", "b", "z"])
    with pytest.raises(ValueError, match="user 'z'"):
        kind_table(per_user, KINDS, "ndcg@10")


def test_the_shares_name_each_kind_with_its_count() -> None:
    assert kind_shares(KINDS) == "latest 66.7% (2), earlier 0.0% (0), novel 33.3% (1)"
