"""Gap-CV tertiles, per-tertile metrics and bootstrap lifts on hand-made users."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from deepm3.analysis import irregularity
from deepm3.analysis.irregularity import bootstrap_lift, cv_tertiles, tertile_lifts, tertile_metrics, user_groups
from deepm3.errors import DataError

# seven users: two regular, two middling, two bursty, one with undefined CV
CVS = [0.1, 0.2, 0.5, 0.6, 1.0, 2.0, float("nan")]
REFERENCE = [0.5, 0.3, 0.4, 0.2, 0.6, 0.4, 0.1]
BASELINE = [0.5, 0.3, 0.4, 0.2, 0.3, 0.2, 0.2]  # the reference doubles NDCG on bursty users only


def hand_made_rows(seeds: int = 2) -> pd.DataFrame:
    frames = []
    for model, values in (("deepm3", REFERENCE), ("gru4rec", BASELINE)):
        for seed in range(seeds):
            offset = 0.01 if seed % 2 == 0 else -0.01
            frames.append(
                pd.DataFrame(
                    {
                        "model": model,
                        "seed": seed,
                        "user": [f"u{i}" for i in range(len(CVS))],
                        "gap_cv": CVS,
                        "ndcg@10": np.array(values) + offset,
                        "hr@10": np.array(values) > 0.3,
                    }
                )
            )
    return pd.concat(frames, ignore_index=True)


def test_tertiles_split_defined_cvs_and_set_undefined_apart() -> None:
    labels, edges = cv_tertiles(np.array(CVS))
    assert labels.tolist() == ["low", "low", "mid", "mid", "high", "high", "undefined"]
    assert edges == pytest.approx((0.4, 0.6 + 0.4 / 3))


def test_tied_cvs_never_straddle_two_groups() -> None:
    labels, _ = cv_tertiles(np.array([1.0, 1.0, 1.0, 2.0, 2.0, 2.0]))
    assert labels.tolist() == ["low"] * 3 + ["mid"] * 3


def test_all_undefined_cvs_form_one_group() -> None:
    labels, edges = cv_tertiles(np.array([np.nan, np.nan]))
    assert labels.tolist() == ["undefined", "undefined"] and np.isnan(edges).all()


def test_user_groups_come_from_the_shared_gap_cv_column() -> None:
    groups = user_groups(hand_made_rows())
    assert groups.to_dict() == {
        "u0": "low",
        "u1": "low",
        "u2": "mid",
        "u3": "mid",
        "u4": "high",
        "u5": "high",
        "u6": "undefined",
    }


def test_a_user_with_different_cvs_in_different_runs_is_a_data_error() -> None:
    rows = hand_made_rows()
    rows.loc[(rows.model == "gru4rec") & (rows.user == "u2"), "gap_cv"] = 0.9
    with pytest.raises(DataError, match="'u2' has different gap_cv"):
        user_groups(rows)


def test_tertile_metrics_average_users_then_seeds() -> None:
    table = tertile_metrics(hand_made_rows(), ["ndcg@10", "hr@10"]).set_index(["group", "model"])
    assert list(table.index.get_level_values("group").unique()) == ["low", "mid", "high", "undefined", "all"]
    assert table.loc[("high", "deepm3"), "ndcg@10"] == pytest.approx(0.5)
    assert table.loc[("high", "gru4rec"), "ndcg@10"] == pytest.approx(0.25)
    assert table.loc[("all", "deepm3"), "ndcg@10"] == pytest.approx(np.mean(REFERENCE))
    assert table.loc[("high", "deepm3"), "ndcg@10_std"] == pytest.approx(0.02 / np.sqrt(2))
    assert table.loc[("undefined", "gru4rec"), "n_users"] == 1 and table.loc[("all", "gru4rec"), "n_users"] == 7
    assert table.loc[("low", "deepm3"), "hr@10"] == pytest.approx(0.5)


def test_an_exact_ratio_has_that_lift_and_a_degenerate_interval() -> None:
    baseline = np.random.default_rng(0).uniform(0.1, 1.0, 50)
    lift = bootstrap_lift(1.25 * baseline, baseline, n_boot=200)
    assert (lift.value, lift.ci_low, lift.ci_high) == pytest.approx((0.25, 0.25, 0.25))


def test_bootstrap_interval_covers_the_estimate_and_shrinks_with_more_users() -> None:
    rng = np.random.default_rng(1)
    widths = []
    for users in (100, 1600):
        baseline = rng.uniform(0, 1, users)
        reference = baseline * 1.1 + rng.normal(0, 0.2, users)
        lift = bootstrap_lift(reference, baseline, n_boot=500, seed=3)
        assert lift.ci_low < lift.value < lift.ci_high
        widths.append(lift.ci_high - lift.ci_low)
    assert widths[1] < widths[0] / 2  # ~ 1 / sqrt(16) = 1/4


def test_bootstrap_is_seeded_and_chunking_does_not_change_it(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(2)
    reference, baseline = rng.random(40), rng.random(40)
    whole = bootstrap_lift(reference, baseline, n_boot=300, seed=5)
    assert bootstrap_lift(reference, baseline, n_boot=300, seed=5) == whole
    assert bootstrap_lift(reference, baseline, n_boot=300, seed=6) != whole
    monkeypatch.setattr(irregularity, "BOOTSTRAP_CELLS", 40 * 7)  # 7 replicates per chunk
    assert bootstrap_lift(reference, baseline, n_boot=300, seed=5) == whole


def test_a_zero_baseline_mean_gives_an_undefined_lift() -> None:
    lift = bootstrap_lift(np.array([0.5, 0.0]), np.zeros(2), n_boot=50)
    assert np.isnan(lift.value) and np.isnan(lift.ci_low)


def test_tertile_lifts_show_where_the_reference_gains() -> None:
    table = tertile_lifts(hand_made_rows(), "deepm3", n_boot=200).set_index("group")
    assert table["baseline"].unique().tolist() == ["gru4rec"]
    assert table.loc["low", "lift"] == pytest.approx(0.0)
    assert table.loc["high", "lift"] == pytest.approx(1.0)
    assert table.loc["undefined", "lift"] == pytest.approx(-0.5)
    assert table.loc["all", "lift"] == pytest.approx(sum(REFERENCE) / sum(BASELINE) - 1)
    assert table.loc["all", "n_users"] == 7
    assert (table["ci_low"] <= table["lift"] + 1e-12).all() and (table["lift"] <= table["ci_high"] + 1e-12).all()
