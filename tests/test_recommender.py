"""The Python serving API (deepm3.recommender) on tiny in-memory networks: the query time under
``time.query=last`` and ``target``, and an empty list that says why."""

from __future__ import annotations

import pytest

from tests.helpers.tiny_recommenders import DAY, ITEM_IDS, ITEMS, TIMES, N, gru_net, next_times_reader, recommender


@pytest.mark.parametrize("kind", ["gru_dt", "tisasrec"])
def test_under_query_last_the_query_time_changes_nothing(kind: str) -> None:
    rec = next_times_reader(kind, "last")
    soon = rec.recommend(ITEMS, TIMES, at=TIMES[-1] + 60, k=None)
    later = rec.recommend(ITEMS, TIMES, at=TIMES[-1] + 90 * DAY, k=None)
    assert soon == later


@pytest.mark.parametrize("kind", ["gru_dt", "tisasrec"])
def test_under_query_target_the_same_models_do_see_the_query_time(kind: str) -> None:
    """The control: the model above is not time-blind, so an equal ranking under last means something."""
    rec = next_times_reader(kind, "target")
    soon = rec.recommend(ITEMS, TIMES, at=TIMES[-1] + 60, k=None)
    later = rec.recommend(ITEMS, TIMES, at=TIMES[-1] + 90 * DAY, k=None)
    assert [score for _, score in soon] != pytest.approx([score for _, score in later], rel=1e-4)


def test_a_history_holding_every_item_gets_an_empty_list_with_its_reason(caplog) -> None:
    rec = recommender(gru_net())
    with caplog.at_level("WARNING", logger="deepm3.recommender"):
        result = rec.recommend(ITEM_IDS, list(range(N)), at=N, k=5)
    assert list(result) == [] and result.source == "model"
    assert "exclude_seen=false" in result.reason and "hold every item" in caplog.text
    assert rec.recommend(ITEM_IDS, list(range(N)), at=N, k=5, exclude_seen=False).reason is None
    assert rec.recommend(ITEM_IDS[:3], [1, 2, 3], at=N, k=5).reason is None
