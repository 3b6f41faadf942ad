"""Phase-2 numbers against answers known in advance: hand-written run folders whose p-values,
means and timings are computed here, independently of the study code (not "a p-value in [0, 1]",
"a time > 0")."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from deepm3 import bench
from deepm3.phase2.irregularity_study import group_seed_tests
from deepm3.phase2.main_table import write_main_table
from deepm3.phase2.plan import make_plan
from deepm3.phase2.significance_study import write_significance
from tests.helpers.run_folders import write_run_folder

USERS = ["u1", "u2", "u3", "u4", "u5", "u6", "u7", "u8"]
# per-user NDCG@10 per (model, seed); many zeros and ties, as real per-user NDCG has
PER_USER = {
    ("deepm3", 0): [0.0, 1.0, 0.5, 0.0, 0.631, 0.0, 0.387, 0.5],
    ("deepm3", 1): [0.0, 0.631, 0.5, 0.333, 0.631, 0.0, 0.5, 0.289],
    ("gru4rec", 0): [0.0, 1.0, 0.5, 0.0, 0.289, 0.0, 0.5, 0.5],
    ("gru4rec", 1): [0.0, 0.631, 0.0, 0.5, 0.631, 0.0, 0.5, 0.5],
    ("pop", 0): [0.0, 0.0, 0.289, 0.0, 0.0, 0.0, 0.0, 0.0],
    ("pop", 1): [0.0, 0.0, 0.289, 0.0, 0.0, 0.0, 0.0, 0.0],
}


def write_study(root: Path):
    """Two seeds of three models; each file lists its users in a different order."""
    plan = make_plan("tiny", {"deepm3": [], "gru4rec": [], "pop": []}, [0, 1], root)
    for n, spec in enumerate(plan.runs):
        values = PER_USER[(spec.model, spec.seed)]
        order = np.random.default_rng(n).permutation(len(USERS))
        write_run_folder(
            spec.directory,
            {USERS[i]: values[i] for i in order},
            {"ndcg@10": float(np.mean(values)), "hr@10": 0.1 * (n + 1)},
            num_params=1000 + n,
            train_seconds=10.0 * (n + 1),
        )
    return plan


def seed_mean(model: str) -> np.ndarray:
    return (np.array(PER_USER[(model, 0)]) + np.array(PER_USER[(model, 1)])) / 2


def test_significance_p_values_are_scipys_on_seed_averaged_users_with_holm_over_the_baselines(tmp_path: Path) -> None:
    plan = write_study(tmp_path)
    write_significance(plan, tmp_path / "out", "deepm3")
    table = pd.read_csv(tmp_path / "out" / "significance.csv").set_index("baseline")
    ref = seed_mean("deepm3")
    t = {b: stats.ttest_rel(ref, seed_mean(b)).pvalue for b in ("gru4rec", "pop")}
    w = {b: stats.wilcoxon(ref - seed_mean(b), zero_method="pratt").pvalue for b in ("gru4rec", "pop")}
    assert list(table.index) == ["gru4rec", "pop"]
    for baseline in ("gru4rec", "pop"):
        row = table.loc[baseline]
        assert row["n_users"] == len(USERS)
        assert row["mean_difference"] == pytest.approx(np.mean(ref - seed_mean(baseline)))
        assert row["t_pvalue"] == pytest.approx(t[baseline], rel=1e-9)
        assert row["wilcoxon_pvalue"] == pytest.approx(w[baseline], rel=1e-9)
    for name, p in (("t_pvalue_holm", t), ("wilcoxon_pvalue_holm", w)):  # Holm over m = 2 baselines
        low, high = sorted(p, key=p.get)
        assert table.loc[low, name] == pytest.approx(min(2 * p[low], 1.0), rel=1e-9)
        assert table.loc[high, name] == pytest.approx(min(max(2 * p[low], p[high]), 1.0), rel=1e-9)
    assert 0 < t["pop"] < 0.05 < t["gru4rec"]  # the data tell the two baselines apart


def test_main_table_is_the_mean_and_sample_std_over_seeds_of_what_each_run_wrote(tmp_path: Path) -> None:
    plan = write_study(tmp_path)
    write_main_table(plan, tmp_path / "out")
    table = pd.read_csv(tmp_path / "out" / "main_table.csv").set_index("model")
    for k, model in enumerate(["deepm3", "gru4rec", "pop"]):
        first, second = 2 * k, 2 * k + 1  # the run indices of its seeds 0 and 1
        ndcg = [np.mean(PER_USER[(model, 0)]), np.mean(PER_USER[(model, 1)])]
        assert table.loc[model, "seeds"] == 2
        assert table.loc[model, "ndcg@10"] == pytest.approx((ndcg[0] + ndcg[1]) / 2)
        assert table.loc[model, "ndcg@10_std"] == pytest.approx(abs(ndcg[0] - ndcg[1]) / np.sqrt(2))
        assert table.loc[model, "hr@10"] == pytest.approx(0.1 * (first + second + 2) / 2)
        assert table.loc[model, "train_seconds"] == pytest.approx(10.0 * (first + second + 2) / 2)
        assert table.loc[model, "params"] == int(np.median([1000 + first, 1000 + second]))


def test_bench_times_are_the_median_of_the_timed_calls_with_warm_up_excluded(monkeypatch) -> None:
    """A fake clock advanced by known amounts by each call: the reported seconds are exact."""
    now = [0.0]
    durations = {"a": iter([100.0, 3.0, 1.0, 2.0]), "b": iter([100.0, 10.0, 30.0, 20.0])}  # first: warm-up

    def task(name: str):
        def call() -> None:
            now[0] += next(durations[name])

        return call

    monkeypatch.setattr(bench.time, "perf_counter", lambda: now[0])
    medians = bench._round_robin({"a": task("a"), "b": task("b")}, warmup=1, calls=3, device=torch.device("cpu"))
    assert medians == {"a": 2.0, "b": 20.0}
    assert all(next(rest, None) is None for rest in durations.values())  # every planned call was made


def test_the_seed_level_test_per_tertile_uses_only_that_tertiles_users() -> None:
    """Six users, gap CVs 1..6: tertiles {1,2}, {3,4}, {5,6}. In the high tertile DeepM3 leads by
    0.1, 0.2, 0.3 on seeds 0-2 (its per-seed means); elsewhere the models tie."""
    records = []
    for seed, lead in enumerate([0.1, 0.2, 0.3]):
        for user, cv in enumerate([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]):
            base = 0.2 + 0.01 * seed
            records.append({"model": "gru4rec", "seed": seed, "user": f"u{user}", "gap_cv": cv, "ndcg@10": base})
            mine = base + (lead if cv > 4 else 0.0)
            records.append({"model": "deepm3", "seed": seed, "user": f"u{user}", "gap_cv": cv, "ndcg@10": mine})
    table = group_seed_tests(pd.DataFrame(records), "deepm3", "ndcg@10").set_index("group")
    assert list(table.index) == ["low", "mid", "high", "all"]
    high = stats.ttest_rel([0.3, 0.41, 0.52], [0.2, 0.21, 0.22])
    assert table.loc["high", "seed_t_pvalue"] == pytest.approx(high.pvalue, rel=1e-9)
    assert table.loc["low", "seed_t_pvalue"] == 1.0  # no difference at all: p = 1
