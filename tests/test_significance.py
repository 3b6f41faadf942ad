"""Paired tests, Holm correction and effect sizes give known answers on constructed inputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from deepm3.analysis.per_user import seed_average
from deepm3.analysis.significance import (
    cohens_dz,
    compare_seeds,
    compare_to_reference,
    holm_bonferroni,
    paired_comparison,
    rank_biserial,
)
from deepm3.errors import ConfigError, DataError


def per_user_rows(models: dict[str, np.ndarray], seeds: int = 2, seed_noise: float = 0.01) -> pd.DataFrame:
    """Rows like test_users.csv + model/seed; seed noise is +-seed_noise and cancels over 2 seeds."""
    frames = []
    for model, values in models.items():
        for seed in range(seeds):
            offset = seed_noise * (1 if seed % 2 == 0 else -1) if seeds % 2 == 0 else 0.0
            frames.append(
                pd.DataFrame(
                    {
                        "model": model,
                        "seed": seed,
                        "user": [f"u{i}" for i in range(len(values))],
                        "ndcg@10": values + offset,
                    }
                )
            )
    return pd.concat(frames, ignore_index=True)


def sparse_ndcg(users: int = 300, seed: int = 0) -> np.ndarray:
    """Per-user NDCG@10-like values: about 60% exact zeros, the rest in (0, 1]."""
    rng = np.random.default_rng(seed)
    return np.where(rng.random(users) < 0.6, 0.0, rng.uniform(0.2, 1.0, users))


def test_identical_models_give_p_equal_one_and_zero_effects() -> None:
    values = sparse_ndcg()
    result = paired_comparison(values, values.copy())
    assert (result.t_pvalue, result.wilcoxon_pvalue) == (1.0, 1.0)
    assert (result.mean_difference, result.cohens_dz, result.rank_biserial) == (0.0, 0.0, 0.0)


def test_a_shifted_model_gives_tiny_p_values_and_a_positive_effect() -> None:
    baseline = sparse_ndcg()
    noise = np.random.default_rng(1).normal(0, 0.05, len(baseline))
    result = paired_comparison(baseline + 0.05 + noise, baseline)
    assert result.t_pvalue < 1e-6 and result.wilcoxon_pvalue < 1e-6
    assert result.mean_difference == pytest.approx(0.05, abs=0.01)
    assert result.cohens_dz == pytest.approx(1.0, abs=0.2)  # shift 0.05 / sd 0.05
    assert result.rank_biserial > 0.6


def test_the_direction_of_the_effect_is_reference_minus_baseline() -> None:
    baseline = np.linspace(0.0, 1.0, 9)  # multiples of 1/8: every difference is exactly -0.5
    result = paired_comparison(baseline, baseline + 0.5)
    assert result.mean_difference == -0.5
    assert result.cohens_dz == -np.inf and result.rank_biserial == -1.0 and result.t_pvalue == 0.0


def test_p_values_are_scipys_paired_tests() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.random(40), rng.random(40)
    result = paired_comparison(a, b, zero_method="wilcox")
    assert result.t_pvalue == pytest.approx(stats.ttest_rel(a, b).pvalue)
    assert result.wilcoxon_pvalue == pytest.approx(stats.wilcoxon(a, b).pvalue)


def test_holm_on_a_textbook_family() -> None:
    # sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 = 0.02, 0.03, 0.06, 0.04 -> running max
    adjusted = holm_bonferroni([0.01, 0.04, 0.03, 0.005])
    assert adjusted.tolist() == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert (adjusted < 0.05).tolist() == [True, False, False, True]


def test_holm_caps_at_one_and_leaves_a_single_test_alone() -> None:
    assert holm_bonferroni([0.5, 0.6]).tolist() == [1.0, 1.0]
    assert holm_bonferroni([0.2]).tolist() == [0.2]


def test_holm_rejects_nan_p_values() -> None:
    with pytest.raises(ValueError, match="p-values"):
        holm_bonferroni([0.1, float("nan")])


def test_cohens_dz_is_mean_over_sd_of_differences() -> None:
    assert cohens_dz(np.array([1.0, 2.0, 3.0])) == pytest.approx(2.0)


@pytest.mark.parametrize(
    "diff, zero_method, expected",
    [
        ([1, -2, 3, 4], "wilcox", (8 - 2) / 10),  # ranks 1..4, R+ = 1 + 3 + 4, R- = 2
        ([0, 1, -2], "wilcox", (1 - 2) / 3),  # zero dropped: ranks 1, 2
        ([0, 1, -2], "pratt", (2 - 3) / 5),  # zero ranked 1 then dropped: ranks 2, 3
        ([0, 1, -2], "zsplit", (2.5 - 3.5) / 6),  # zero's rank split half/half
    ],
)
def test_rank_biserial_by_zero_policy(diff: list[float], zero_method: str, expected: float) -> None:
    assert rank_biserial(np.array(diff, dtype=float), zero_method) == pytest.approx(expected)


def test_unknown_zero_policy_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="pratt"):
        paired_comparison(np.ones(3), np.zeros(3), zero_method="drop")


def test_compare_to_reference_averages_seeds_and_corrects_over_baselines() -> None:
    ref = sparse_ndcg()
    rows = per_user_rows({"deepm3": ref, "same": ref.copy(), "worse": np.clip(ref - 0.2, 0, None)})
    table = compare_to_reference(rows, "deepm3").set_index("baseline")
    assert list(table.index) == ["same", "worse"]
    assert table.loc["same", "t_pvalue"] == pytest.approx(1.0)  # the +-seed noise averaged out
    assert table.loc["same", "wilcoxon_pvalue_holm"] == pytest.approx(1.0)
    assert table.loc["worse", "wilcoxon_pvalue_holm"] < 1e-6
    assert table.loc["worse", "t_pvalue_holm"] == pytest.approx(2 * table.loc["worse", "t_pvalue"])
    assert table.loc["worse", "reference_mean"] == pytest.approx(ref.mean())
    assert (table["reference_seeds"] == 2).all() and (table["n_users"] == len(ref)).all()


def test_seed_average_is_the_per_user_mean_over_seeds() -> None:
    rows = per_user_rows({"a": np.array([0.1, 0.5])}, seeds=2, seed_noise=0.05)
    assert seed_average(rows, "ndcg@10")["a"].tolist() == pytest.approx([0.1, 0.5])


def test_users_missing_from_one_model_are_a_data_error() -> None:
    rows = per_user_rows({"a": sparse_ndcg(10), "b": sparse_ndcg(10)})
    with pytest.raises(DataError, match="'b' lacks 1 of 10 users"):
        compare_to_reference(rows[~((rows.model == "b") & (rows.user == "u3"))], "a")


def test_a_seed_missing_users_is_a_data_error() -> None:
    rows = per_user_rows({"a": sparse_ndcg(10), "b": sparse_ndcg(10)})
    with pytest.raises(DataError, match="'a' has seeds covering different users"):
        compare_to_reference(rows[~((rows.model == "a") & (rows.seed == 1) & (rows.user == "u3"))], "a")


def test_duplicate_rows_and_missing_columns_are_data_errors() -> None:
    rows = per_user_rows({"a": sparse_ndcg(5), "b": sparse_ndcg(5)})
    with pytest.raises(DataError, match="more than once"):
        compare_to_reference(pd.concat([rows, rows.iloc[:1]]), "a")
    with pytest.raises(DataError, match="missing column"):
        compare_to_reference(rows.drop(columns="seed"), "a")
    with pytest.raises(DataError, match="reference model 'c' not found"):
        compare_to_reference(rows, "c")


# --- the seed-level test the claims page requires beside the per-user one ------------------------


def per_seed_rows(means: dict[str, list[float]]) -> pd.DataFrame:
    """Two users per (model, seed) whose mean is the given per-seed mean."""
    return pd.DataFrame(
        [
            {"model": model, "seed": seed, "user": user, "ndcg@10": mean + offset}
            for model, values in means.items()
            for seed, mean in enumerate(values)
            for user, offset in (("a", -0.01), ("b", 0.01))
        ]
    )


def test_the_seed_level_test_is_a_paired_t_test_over_per_seed_means_computed_by_hand() -> None:
    """Per-seed differences 0.01, 0.02, 0.03: mean 0.02, sd 0.01, t = 0.02 / (0.01 / sqrt 3) = 2 sqrt 3.
    With 2 degrees of freedom the two-sided p has a closed form, 1 - |t| / sqrt(t^2 + 2) = 1 - sqrt(12/14)."""
    rows = per_seed_rows({"deepm3": [0.11, 0.22, 0.33], "gru4rec": [0.10, 0.20, 0.30]})
    row = compare_seeds(rows, "deepm3").iloc[0]
    assert row["shared_seeds"] == 3
    assert row["seed_t_statistic"] == pytest.approx(2 * np.sqrt(3), rel=1e-9)
    assert row["seed_t_pvalue"] == pytest.approx(1 - np.sqrt(12 / 14), rel=1e-9)  # 0.0742: not significant


def test_the_seed_level_test_pairs_only_the_seeds_both_models_ran() -> None:
    rows = per_seed_rows({"deepm3": [0.11, 0.22, 0.33], "gru4rec": [0.10, 0.20]})
    row = compare_seeds(rows, "deepm3").iloc[0]
    assert row["shared_seeds"] == 2 and row["seed_t_pvalue"] == pytest.approx(
        stats.ttest_rel([0.11, 0.22], [0.10, 0.20]).pvalue
    )


def test_the_seed_level_test_needs_two_shared_seeds() -> None:
    rows = per_seed_rows({"deepm3": [0.11], "gru4rec": [0.10]})
    assert np.isnan(compare_seeds(rows, "deepm3").iloc[0]["seed_t_pvalue"])


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
