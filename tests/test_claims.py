"""``claims.md``: each original claim beside our number, its file and a verdict by a written rule.

Every test writes the few CSV rows a claim reads, by hand, and checks one branch of one rule. Unless
a test says otherwise, every model passes the budget check and every seed-level test agrees with
the per-user one (``converged``, ``SEEDS_AGREE``)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from deepm3.phase2.claims import FAILS, HOLDS, INCONCLUSIVE, UNTESTABLE, Study, check_claims, write_claims
from deepm3.phase2.plan import make_plan
from deepm3.phase2.report import write_report


def write(out: Path, stem: str, rows: list[dict]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(out / f"{stem}.csv", index=False)


def verdict(out: Path, dataset: str, claim: int, budget: bool = True):
    """Claim ``claim``'s finding; ``budget``: first write a budget table every model passes."""
    if budget and not (out / "budget.csv").is_file():
        converged(out)
    return check_claims(Study(out, dataset))[claim - 1]


MODELS = [
    "deepm3-euler",
    "deepm3-rk4",
    "sasrec",
    "sasrec-matched",
    "sasrec_large",
    "gru_dt",
    "tisasrec",
    "gru4rec",
    "pop",
]


def converged(out: Path, capped: dict[str, tuple[int, int]] | None = None) -> None:
    """``budget.csv``: 10 trained runs per model, none at the cap, except ``capped`` (model -> (at cap, runs))."""
    rows = []
    for model in MODELS:
        at_cap, runs = (capped or {}).get(model, (0, 10))
        share = at_cap / runs
        status = "at the cap" if share > 0.10 else "early stopping"
        rows.append({"model": model, "trained_runs": runs, "at_cap": at_cap, "at_cap_share": share, "status": status})
    write(out, "budget", rows)


def seeds(out: Path, rows: dict[str, tuple[float, float]], stem: str = "significance_seeds", group: str | None = None):
    """A seed-level table: baseline -> (t statistic, p) over 3 shared seeds."""
    records = [
        {"reference": "deepm3-euler", "baseline": b, "shared_seeds": 3, "seed_t_statistic": t, "seed_t_pvalue": p}
        for b, (t, p) in rows.items()
    ]
    if group is not None:
        records = [{**r, "group": group} for r in records]
    write(out, stem, records)


def sampled_table(out: Path, ndcg: float) -> None:
    write(
        out,
        "main_table_sampled",
        [{"model": "deepm3-rk4", "seeds": 3, "params": 1, "train_seconds": 1.0, "ndcg@10": ndcg, "ndcg@10_std": 0.01}],
    )


def lifts(out: Path, high: dict[str, tuple[float, float, float]]) -> None:
    rows = [
        {
            "reference": "deepm3-euler",
            "baseline": b,
            "group": "high",
            "metric": "ndcg@10",
            "lift": lift,
            "ci_low": low,
            "ci_high": up,
            "n_users": 300,
        }
        for b, (lift, low, up) in high.items()
    ]
    rows.append(
        {
            "reference": "deepm3-euler",
            "baseline": "sasrec",
            "group": "low",
            "metric": "ndcg@10",
            "lift": -0.5,
            "ci_low": -0.6,
            "ci_high": -0.4,
            "n_users": 300,
        }
    )
    write(out, "irregularity_lifts", rows)
    seeds(out, {b: (5.0, 0.01) for b in high}, stem="irregularity_seeds", group="high")


def robustness(out: Path, drops: dict[str, float], level: float = 1.0) -> None:
    write(
        out,
        "robustness",
        [
            {
                "noise": "jitter",
                "level": level,
                "model": m,
                "metric": "ndcg@10",
                "seeds": 3,
                "mean": 0.1,
                "std": 0.0,
                "relative_drop": d,
                "relative_drop_std": 0.0,
            }
            for m, d in drops.items()
        ],
    )


def significance(out: Path, rows: dict[str, tuple[float, float]], stem: str = "significance") -> None:
    """Per-user rows (baseline -> (mean difference, Holm p)) and a seed-level table that agrees with them."""
    write(
        out,
        stem,
        [
            {"reference": "deepm3-euler", "baseline": b, "metric": "ndcg@10", "mean_difference": d, "t_pvalue_holm": p}
            for b, (d, p) in rows.items()
        ],
    )
    seeds(out, {b: (5.0 if d > 0 else -5.0, p) for b, (d, p) in rows.items()}, stem=f"{stem}_seeds")


def efficiency(out: Path, euler_ms: float, rk4_ms: float, stand_in: tuple[float, float] | None = None) -> None:
    """The trained models' latencies (``size`` = trained); ``stand_in``: hidden-64 rows beside them."""
    rows = [
        {"device": "CPU", "model": "deepm3-euler", "size": "trained", "latency_ms": euler_ms},
        {"device": "CPU", "model": "deepm3-rk4", "size": "trained", "latency_ms": rk4_ms},
    ]
    if stand_in is not None:
        rows += [
            {"device": "CPU", "model": "deepm3-euler@hidden64", "size": "hidden 64", "latency_ms": stand_in[0]},
            {"device": "CPU", "model": "deepm3-rk4@hidden64", "size": "hidden 64", "latency_ms": stand_in[1]},
        ]
    write(out, "efficiency", rows)


def main_table(
    out: Path, deepm3_params: int = 800_000, large_params: int = 2_600_000, sasrec_params: int | None = None
) -> None:
    """DeepM3 and SASRec-large (and plain SASRec when ``sasrec_params`` is given)."""
    rows = [
        {"model": "deepm3-euler", "seeds": 3, "params": deepm3_params, "ndcg@10": 0.2},
        {"model": "sasrec_large", "seeds": 3, "params": large_params, "ndcg@10": 0.19},
    ]
    if sasrec_params is not None:
        rows.append({"model": "sasrec", "seeds": 3, "params": sasrec_params, "ndcg@10": 0.21})
    write(out, "main_table", rows)


def tuned(out: Path, scores: dict[str, float], lrs: tuple[float, ...] = (0.001, 0.003, 0.01)) -> None:
    """``tune.csv``: each model's lr grid, the last point winning with validation ``scores[model]``."""
    rows = [
        {
            "model": model,
            "point": k,
            "overrides": f"optim.lr={lr}",
            "val/ndcg@10": score - 0.01 * (len(lrs) - 1 - k),
            "selected": k == len(lrs) - 1,
            "extension": 0,
            "grid_points": len(lrs),
            "prior_choices": "model.net.field.kind x4" if model.startswith("deepm3") else None,
            "configurations": len(lrs) * (4 if model.startswith("deepm3") else 1),
            "status": "winner on the edge: extension cap reached",
        }
        for model, score in scores.items()
        for k, lr in enumerate(lrs)
    ]
    write(out, "tune", rows)


# -- claim 1: an absolute number, only on ML-1M ----------------------------------------------------


@pytest.mark.parametrize("ndcg, expected", [(0.40, HOLDS), (0.4078 * 1.049, HOLDS), (0.30, FAILS), (0.45, FAILS)])
def test_claim1_holds_within_five_percent_of_the_number_on_ml1m(tmp_path: Path, ndcg: float, expected: str) -> None:
    sampled_table(tmp_path, ndcg)
    finding = verdict(tmp_path, "ml1m", 1)
    assert finding.verdict == expected and finding.source == "main_table_sampled.csv"
    assert f"{ndcg:.4f}" in finding.measured


def test_claim1_on_ml100k_shows_the_number_and_says_it_is_not_ml1m(tmp_path: Path) -> None:
    sampled_table(tmp_path, 0.41)
    finding = verdict(tmp_path, "ml100k", 1)
    assert finding.verdict == UNTESTABLE
    assert "0.4100" in finding.measured and "ML-100k, not ML-1M" in finding.measured


def test_a_missing_table_is_not_testable_and_names_the_file(tmp_path: Path) -> None:
    finding = verdict(tmp_path, "ml1m", 1)
    assert (finding.verdict, finding.reason) == (UNTESTABLE, "main_table_sampled.csv missing")


# -- claim 2: the lift on the most irregular tertile of the dense dataset ---------------------------


def test_claim2_holds_when_the_lift_over_the_strongest_baseline_has_a_ci_above_zero(tmp_path: Path) -> None:
    lifts(tmp_path, {"sasrec": (0.30, 0.2, 0.4), "gru_dt": (0.03, 0.01, 0.05), "deepm3-none": (-0.1, -0.2, 0.0)})
    finding = verdict(tmp_path, "ml100k", 2)
    assert finding.verdict == HOLDS
    assert "gru_dt: +3.00%" in finding.measured and "ML-100k, not ML-1M" in finding.measured  # DeepM3 variants aside


def test_claim2_does_not_hold_when_the_ci_reaches_zero(tmp_path: Path) -> None:
    lifts(tmp_path, {"sasrec": (0.30, 0.2, 0.4), "gru_dt": (0.02, -0.01, 0.05)})
    assert verdict(tmp_path, "ml1m", 2).verdict == FAILS


def test_claim2_is_about_the_dense_dataset(tmp_path: Path) -> None:
    lifts(tmp_path, {"gru_dt": (0.03, 0.01, 0.05)})
    finding = verdict(tmp_path, "amazon_toys", 2)
    assert finding.verdict == UNTESTABLE and "dense" in finding.reason and "+3.00%" in finding.measured


# -- claim 3: robustness to time noise on the sparse dataset ---------------------------------------


def test_claim3_holds_when_deepm3_barely_moves_and_the_time_aware_baselines_collapse(tmp_path: Path) -> None:
    robustness(tmp_path, {"deepm3-euler": 0.004, "tisasrec": 0.2, "gru_dt": 0.15, "sasrec": 0.0})
    finding = verdict(tmp_path, "amazon_toys", 3)
    assert finding.verdict == HOLDS and "Amazon Toys & Games, not Amazon Books" in finding.measured


@pytest.mark.parametrize(
    "drops",
    [{"deepm3-euler": 0.05, "tisasrec": 0.2, "gru_dt": 0.3}, {"deepm3-euler": 0.0, "tisasrec": 0.2, "gru_dt": 0.02}],
)
def test_claim3_does_not_hold_if_deepm3_drops_or_a_baseline_survives(tmp_path: Path, drops: dict) -> None:
    robustness(tmp_path, drops)
    assert verdict(tmp_path, "amazon_books", 3).verdict == FAILS


def test_claim3_needs_a_time_aware_baseline_and_the_sparse_dataset(tmp_path: Path) -> None:
    robustness(tmp_path, {"deepm3-euler": 0.0, "sasrec": 0.0})
    assert "no time-aware baseline" in verdict(tmp_path, "amazon_books", 3).reason
    assert verdict(tmp_path, "ml100k", 3).verdict == UNTESTABLE
    robustness(tmp_path, {"deepm3-euler": 0.0, "tisasrec": 0.5}, level=0.5)
    assert verdict(tmp_path, "amazon_books", 3).reason == "no jitter level 1.0 rows in robustness.csv"


# -- claim 4: Euler's latency and its lead ---------------------------------------------------------


def test_claim4_holds_when_euler_is_twice_as_fast_and_beats_every_baseline(tmp_path: Path) -> None:
    efficiency(tmp_path, 40.0, 100.0)
    significance(tmp_path, {"sasrec": (0.02, 0.001), "gru_dt": (0.01, 0.03), "deepm3-rk4": (-0.01, 0.2)})
    significance(tmp_path, {"sasrec": (0.02, 0.001), "gru_dt": (-0.01, 0.5)}, stem="significance_last")
    finding = verdict(tmp_path, "ml100k", 4)
    assert finding.verdict == HOLDS and "= 0.40" in finding.measured
    assert "leads 2 of 2 baselines" in finding.measured and "1 of 2 under time.query=last" in finding.measured


@pytest.mark.parametrize("euler_ms, gru_dt", [(80.0, (0.01, 0.001)), (40.0, (0.01, 0.2)), (40.0, (-0.01, 0.001))])
def test_claim4_does_not_hold_when_slow_or_one_lead_is_not_significant(
    tmp_path: Path, euler_ms: float, gru_dt: tuple
) -> None:
    efficiency(tmp_path, euler_ms, 100.0)
    significance(tmp_path, {"sasrec": (0.02, 0.001), "gru_dt": gru_dt})
    assert verdict(tmp_path, "ml100k", 4).verdict == FAILS


def test_claim4_without_the_efficiency_table_is_not_testable(tmp_path: Path) -> None:
    significance(tmp_path, {"sasrec": (0.02, 0.001)})
    assert verdict(tmp_path, "ml100k", 4).reason == "efficiency.csv missing"


# -- claim 5: small DeepM3 against large SASRec ----------------------------------------------------


@pytest.mark.parametrize("difference, p, expected", [(0.01, 0.001, HOLDS), (-0.01, 0.4, HOLDS), (-0.01, 0.01, FAILS)])
def test_claim5_holds_unless_deepm3_is_significantly_worse(
    tmp_path: Path, difference: float, p: float, expected: str
) -> None:
    main_table(tmp_path)
    significance(tmp_path, {"sasrec_large": (difference, p)})
    assert verdict(tmp_path, "ml100k", 5).verdict == expected


def test_claim5_without_a_sasrec_of_matched_or_larger_size_is_not_testable(tmp_path: Path) -> None:
    main_table(tmp_path, deepm3_params=3_000_000)  # SASRec-large's 2.6M is under 90% of 3M
    significance(tmp_path, {"sasrec_large": (0.01, 0.001)})
    finding = verdict(tmp_path, "amazon_toys", 5)
    assert finding.verdict == UNTESTABLE and "at least 90% of the reference's parameters" in finding.reason


def test_claim5_needs_a_sasrec_row(tmp_path: Path) -> None:
    write(tmp_path, "main_table", [{"model": "deepm3-euler", "seeds": 3, "params": 1, "ndcg@10": 0.2}])
    reason = "no SASRec row (`sasrec`, `sasrec-matched`, `sasrec_large`) in main_table.csv"
    assert verdict(tmp_path, "amazon_toys", 5).reason == reason


def test_claim5_faces_the_stronger_sasrec_on_validation(tmp_path: Path) -> None:
    """Plain SASRec wins validation (SASRec-large is weak on ML-100k): DeepM3 must not be worse than it."""
    main_table(tmp_path, sasrec_params=900_000)
    tuned(tmp_path, {"sasrec": 0.07, "sasrec_large": 0.06})
    significance(tmp_path, {"sasrec": (-0.01, 0.01), "sasrec_large": (0.02, 0.001)})
    finding = verdict(tmp_path, "ml100k", 5)
    assert finding.verdict == FAILS and finding.measured.startswith("opponent sasrec, the stronger on validation")
    assert "sasrec 0.0700, sasrec_large 0.0600" in finding.measured


def test_claim5_faces_sasrec_large_when_it_is_the_stronger_on_validation(tmp_path: Path) -> None:
    main_table(tmp_path, sasrec_params=900_000)
    tuned(tmp_path, {"sasrec": 0.06, "sasrec_large": 0.07})
    significance(tmp_path, {"sasrec": (-0.01, 0.01), "sasrec_large": (0.02, 0.001)})
    finding = verdict(tmp_path, "ml100k", 5)
    assert finding.verdict == HOLDS and finding.measured.startswith("opponent sasrec_large")


def test_claim5_ignores_a_stronger_sasrec_that_is_smaller_than_deepm3(tmp_path: Path) -> None:
    main_table(tmp_path, sasrec_params=700_000)  # 87.5% of DeepM3's 800k: not matched
    tuned(tmp_path, {"sasrec": 0.07, "sasrec_large": 0.06})
    significance(tmp_path, {"sasrec": (-0.01, 0.01), "sasrec_large": (0.02, 0.001)})
    finding = verdict(tmp_path, "ml100k", 5)
    assert finding.verdict == HOLDS and "the only SASRec at matched or larger size" in finding.measured


@pytest.mark.parametrize("sasrec_params, opponent", [(720_000, "sasrec"), (719_999, "sasrec_large")])
def test_claim5_a_sasrec_of_exactly_90_percent_of_deepm3s_size_is_matched(
    tmp_path: Path, sasrec_params: int, opponent: str
) -> None:
    main_table(tmp_path, sasrec_params=sasrec_params)
    tuned(tmp_path, {"sasrec": 0.07, "sasrec_large": 0.06})
    significance(tmp_path, {"sasrec": (0.01, 0.01), "sasrec_large": (0.02, 0.001)})
    assert verdict(tmp_path, "ml100k", 5).measured.startswith(f"opponent {opponent},")


def test_claim5_with_two_matched_sasrecs_chooses_on_tune_csv_or_is_not_testable(tmp_path: Path) -> None:
    main_table(tmp_path, sasrec_params=900_000)
    significance(tmp_path, {"sasrec": (0.01, 0.01), "sasrec_large": (0.02, 0.001)})
    finding = verdict(tmp_path, "ml100k", 5)
    assert (finding.verdict, finding.reason) == (UNTESTABLE, "tune.csv missing")


# -- the page ------------------------------------------------------------------------------------


def test_claims_md_lists_every_claim_its_file_and_the_rules_and_the_report_links_it_first(tmp_path: Path) -> None:
    out = tmp_path / "ml100k"
    sampled_table(out, 0.3)
    lifts(out, {"gru_dt": (0.03, 0.01, 0.05)})
    converged(out)
    written = write_claims(out, "ml100k")
    assert [p.name for p in written] == ["claims.csv", "claims.md"]
    text = (out / "claims.md").read_text()
    assert text.startswith("# The original claims, checked on ML-100k")
    assert "**1 holds, 0 do not hold, 0 inconclusive (budget), 4 not testable here.**" in text
    assert "`irregularity_lifts.csv`" in text and "## Verdict rules" in text and "Holm" in text
    assert len(pd.read_csv(out / "claims.csv")) == 5
    report = write_report(make_plan("ml100k", {"a": []}, [0], tmp_path), out, ["python -m deepm3.phase2"])
    head = report.read_text().splitlines()[:4]
    assert any("[claims.md](claims.md)" in line and "1 holds" in line for line in head)


def test_claims_is_a_default_stage_between_the_studies_and_the_report(tmp_path: Path) -> None:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from deepm3.phase2.pipeline import STAGES, run_phase2
    from tests.helpers.config import CONF_DIR

    assert STAGES.index("sensitivity") < STAGES.index("claims") < STAGES.index("report")
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
            cfg = compose(config_name="phase2", overrides=[f"results_dir={tmp_path}", "studies=[claims,report]"])
            default = compose(config_name="phase2")
    finally:
        GlobalHydra.instance().clear()
    assert list(default.studies)[-2:] == ["claims", "report"]
    lifts(tmp_path / "ml100k", {"gru_dt": (0.03, 0.01, 0.05)})  # what an earlier invocation's studies left
    converged(tmp_path / "ml100k")
    outcome = run_phase2(cfg, "python -m deepm3.phase2 (test)")
    assert [p.name for p in outcome["written"]["claims"]] == ["claims.csv", "claims.md"]
    assert "[claims.md](claims.md)" in (tmp_path / "ml100k" / "README.md").read_text().splitlines()[2]


# -- the budget check: a verdict rests only on runs that ended by early stopping ---------------------


def claim4_that_holds(out: Path) -> None:
    efficiency(out, 40.0, 100.0)
    significance(out, {"sasrec": (0.02, 0.001), "gru_dt": (0.01, 0.03)})


def test_a_claim_whose_model_hit_the_cap_in_over_10_percent_of_runs_is_inconclusive_not_holds(tmp_path: Path) -> None:
    claim4_that_holds(tmp_path)
    converged(tmp_path, capped={"sasrec": (2, 10)})
    finding = verdict(tmp_path, "ml100k", 4)
    assert finding.verdict == INCONCLUSIVE
    assert "sasrec 2 of 10 runs at the cap" in finding.budget and "'holds'" in finding.reason


def test_a_failing_claim_on_capped_runs_is_inconclusive_too(tmp_path: Path) -> None:
    efficiency(tmp_path, 80.0, 100.0)  # too slow: the numbers alone say "does not hold"
    significance(tmp_path, {"sasrec": (0.02, 0.001)})
    converged(tmp_path, capped={"deepm3-euler": (3, 3)})
    assert verdict(tmp_path, "ml100k", 4).verdict == INCONCLUSIVE


def test_exactly_10_percent_of_runs_at_the_cap_passes_the_budget_check(tmp_path: Path) -> None:
    """The boundary: 1 of 10 is not "more than 10%", so the claim holds."""
    claim4_that_holds(tmp_path)
    converged(tmp_path, capped={"sasrec": (1, 10)})
    finding = verdict(tmp_path, "ml100k", 4)
    assert finding.verdict == HOLDS and finding.budget.startswith("budget [met")


def test_one_run_over_10_percent_at_the_cap_fails_the_budget_check(tmp_path: Path) -> None:
    """Just over the boundary: 1 of 9 runs (11%) is more than 10%."""
    claim4_that_holds(tmp_path)
    converged(tmp_path, capped={"gru_dt": (1, 9)})
    assert verdict(tmp_path, "ml100k", 4).verdict == INCONCLUSIVE


def test_a_model_the_claim_does_not_rest_on_may_hit_the_cap(tmp_path: Path) -> None:
    claim4_that_holds(tmp_path)
    converged(tmp_path, capped={"tisasrec": (3, 3)})  # not in this significance table
    assert verdict(tmp_path, "ml100k", 4).verdict == HOLDS


def test_a_study_without_the_budget_table_never_holds(tmp_path: Path) -> None:
    claim4_that_holds(tmp_path)
    finding = verdict(tmp_path, "ml100k", 4, budget=False)
    assert finding.verdict == INCONCLUSIVE and "budget.csv missing" in finding.budget


def test_every_verdict_line_names_its_budget_check(tmp_path: Path) -> None:
    out = tmp_path / "ml100k"
    claim4_that_holds(out)
    converged(out)
    write_claims(out, "ml100k")
    table = pd.read_csv(out / "claims.csv")
    assert table["budget"].str.startswith("budget [met").sum() == 1  # the measured claim 4
    assert table["budget"].str.len().gt(0).all()  # every other line says why none applied
    assert "| budget check |" in (out / "claims.md").read_text()


# -- seed-level evidence: "holds" needs the per-user AND the seed-level test -------------------------


def test_claim4_does_not_hold_when_only_the_per_user_test_is_significant(tmp_path: Path) -> None:
    claim4_that_holds(tmp_path)
    seeds(tmp_path, {"sasrec": (5.0, 0.01), "gru_dt": (2.3, 0.12)})  # GRU-dt's lead is within the seed spread
    finding = verdict(tmp_path, "ml100k", 4)
    assert finding.verdict == FAILS and "seed-level: gru_dt" in finding.reason
    assert "gru_dt +0.0100 (Holm p 0.03; seeds p 0.12 over 3)" in finding.measured


def test_claim4_does_not_hold_when_only_the_seed_level_test_is_significant(tmp_path: Path) -> None:
    claim4_that_holds(tmp_path)
    significance(tmp_path, {"sasrec": (0.02, 0.001), "gru_dt": (0.01, 0.2)})
    seeds(tmp_path, {"sasrec": (5.0, 0.01), "gru_dt": (5.0, 0.01)})
    assert "per-user: gru_dt" in verdict(tmp_path, "ml100k", 4).reason


def test_a_seed_level_p_below_alpha_with_the_wrong_sign_is_no_lead(tmp_path: Path) -> None:
    claim4_that_holds(tmp_path)
    seeds(tmp_path, {"sasrec": (5.0, 0.01), "gru_dt": (-5.0, 0.01)})
    assert verdict(tmp_path, "ml100k", 4).verdict == FAILS


def test_claim4_without_the_seed_level_table_is_not_testable(tmp_path: Path) -> None:
    claim4_that_holds(tmp_path)
    (tmp_path / "significance_seeds.csv").unlink()
    assert verdict(tmp_path, "ml100k", 4).reason == "significance_seeds.csv missing"


def test_claim5_does_not_hold_when_the_seed_level_test_finds_deepm3_worse(tmp_path: Path) -> None:
    main_table(tmp_path)
    significance(tmp_path, {"sasrec_large": (-0.01, 0.4)})
    seeds(tmp_path, {"sasrec_large": (-6.0, 0.02)})
    finding = verdict(tmp_path, "ml100k", 5)
    assert finding.verdict == FAILS and "significantly worse (over seeds)" in finding.reason


def test_claim2_needs_a_significant_seed_level_lead_on_the_high_tertile(tmp_path: Path) -> None:
    lifts(tmp_path, {"sasrec": (0.30, 0.2, 0.4), "gru_dt": (0.03, 0.01, 0.05)})
    seeds(tmp_path, {"sasrec": (5.0, 0.01), "gru_dt": (1.0, 0.4)}, stem="irregularity_seeds", group="high")
    finding = verdict(tmp_path, "ml100k", 2)
    assert finding.verdict == FAILS and "seed-level test [not met]" in finding.reason


# -- the rules at their exact thresholds (which side of each boundary holds) -------------------------


def test_claim2_a_ci_touching_zero_does_not_hold(tmp_path: Path) -> None:
    lifts(tmp_path, {"gru_dt": (0.02, 0.0, 0.05)})
    assert verdict(tmp_path, "ml100k", 2).verdict == FAILS


def test_claim2_a_ci_just_above_zero_holds(tmp_path: Path) -> None:
    lifts(tmp_path, {"gru_dt": (0.02, 1e-9, 0.05)})
    assert verdict(tmp_path, "ml100k", 2).verdict == HOLDS


def test_claim4_a_holm_p_of_exactly_0_05_is_not_significant(tmp_path: Path) -> None:
    efficiency(tmp_path, 40.0, 100.0)
    significance(tmp_path, {"sasrec": (0.02, 0.05)})
    seeds(tmp_path, {"sasrec": (5.0, 0.01)})
    assert verdict(tmp_path, "ml100k", 4).verdict == FAILS


def test_claim4_a_seed_level_p_of_exactly_0_05_is_not_significant(tmp_path: Path) -> None:
    efficiency(tmp_path, 40.0, 100.0)
    significance(tmp_path, {"sasrec": (0.02, 0.001)})
    seeds(tmp_path, {"sasrec": (5.0, 0.05)})
    assert verdict(tmp_path, "ml100k", 4).verdict == FAILS


def test_claim5_a_negative_difference_at_p_exactly_0_05_is_not_significantly_worse(tmp_path: Path) -> None:
    main_table(tmp_path)
    significance(tmp_path, {"sasrec_large": (-0.01, 0.05)})
    assert verdict(tmp_path, "ml100k", 5).verdict == HOLDS


@pytest.mark.parametrize("euler_ms, expected", [(55.0, HOLDS), (55.01, FAILS)])
def test_claim4_a_latency_ratio_of_exactly_0_55_holds(tmp_path: Path, euler_ms: float, expected: str) -> None:
    efficiency(tmp_path, euler_ms, 100.0)
    significance(tmp_path, {"sasrec": (0.02, 0.001)})
    assert verdict(tmp_path, "ml100k", 4).verdict == expected


@pytest.mark.parametrize("deepm3_drop, expected", [(0.01, HOLDS), (0.0101, FAILS)])
def test_claim3_a_drop_of_exactly_1_percent_is_still_small(tmp_path: Path, deepm3_drop: float, expected: str) -> None:
    robustness(tmp_path, {"deepm3-euler": deepm3_drop, "tisasrec": 0.2, "gru_dt": 0.2})
    assert verdict(tmp_path, "amazon_toys", 3).verdict == expected


@pytest.mark.parametrize("baseline_drop, expected", [(0.10, HOLDS), (0.0999, FAILS)])
def test_claim3_a_baseline_drop_of_exactly_10_percent_is_a_collapse(
    tmp_path: Path, baseline_drop: float, expected: str
) -> None:
    robustness(tmp_path, {"deepm3-euler": 0.0, "tisasrec": baseline_drop, "gru_dt": 0.5})
    assert verdict(tmp_path, "amazon_toys", 3).verdict == expected


def test_a_model_whose_cap_is_unknown_fails_the_budget_check(tmp_path: Path) -> None:
    claim4_that_holds(tmp_path)
    write(tmp_path, "budget", [{"model": m, "trained_runs": 0, "at_cap": 0, "status": "cap unknown"} for m in MODELS])
    finding = verdict(tmp_path, "ml100k", 4)
    assert finding.verdict == INCONCLUSIVE and "deepm3-euler: cap unknown" in finding.budget


# -- claim 4's latency: the trained models, never a stand-in of another size -----------------------------


def test_claim4_reads_the_latency_of_the_trained_models_not_the_hidden64_rows(tmp_path: Path) -> None:
    efficiency(tmp_path, 47.0, 100.0, stand_in=(54.0, 100.0))  # the stand-in's 0.54 would hold too: 0.47 shown
    significance(tmp_path, {"sasrec": (0.02, 0.001)})
    finding = verdict(tmp_path, "ml100k", 4)
    assert "at the trained size deepm3-euler 47.00 ms / deepm3-rk4 100.00 ms = 0.47" in finding.measured


def test_claim4_does_not_hold_when_only_the_stand_in_is_fast_enough(tmp_path: Path) -> None:
    efficiency(tmp_path, 60.0, 100.0, stand_in=(50.0, 100.0))
    significance(tmp_path, {"sasrec": (0.02, 0.001)})
    assert verdict(tmp_path, "ml100k", 4).verdict == FAILS


def test_claim4_on_an_efficiency_table_of_stand_ins_only_is_not_testable(tmp_path: Path) -> None:
    write(
        tmp_path,
        "efficiency",
        [{"model": "deepm3-euler", "latency_ms": 4.0}, {"model": "deepm3-rk4", "latency_ms": 9.0}],
    )
    significance(tmp_path, {"sasrec": (0.02, 0.001)})
    finding = verdict(tmp_path, "ml100k", 4)
    assert finding.verdict == UNTESTABLE and "hidden-64 stand-in" in finding.reason


# -- every line names the tuning each side had ----------------------------------------------------------


def test_a_verdict_line_names_each_sides_grid_winner_and_configurations(tmp_path: Path) -> None:
    claim4_that_holds(tmp_path)
    tuned(tmp_path, {"deepm3-euler": 0.08, "sasrec": 0.07, "gru_dt": 0.07})
    tuning = verdict(tmp_path, "ml100k", 4).tuning
    assert tuning.startswith("tuning: deepm3-euler optim.lr {0.001, 0.003, 0.01} -> 0.01 (12 configurations incl. ")
    assert "model.net.field.kind x4; winner on the edge: extension cap reached)" in tuning
    assert "sasrec optim.lr {0.001, 0.003, 0.01} -> 0.01 (3 configurations;" in tuning


def test_a_model_without_tuning_points_is_named_untuned(tmp_path: Path) -> None:
    claim4_that_holds(tmp_path)
    tuned(tmp_path, {"deepm3-euler": 0.08, "sasrec": 0.07})
    assert "gru_dt not tuned (its preset settings)" in verdict(tmp_path, "ml100k", 4).tuning


def test_a_study_without_tune_csv_says_so_on_every_measured_line(tmp_path: Path) -> None:
    claim4_that_holds(tmp_path)
    assert "tune.csv missing" in verdict(tmp_path, "ml100k", 4).tuning


# -- the fairer-budget cross-check -----------------------------------------------------------------------


def cross(tmp_path: Path, peer: dict[str, tuple[float, float]]) -> tuple[Path, Path]:
    """This study (claim 4 holds) and a fairer-budget one whose per-user rows are ``peer``."""
    out, other = tmp_path / "ml100k", tmp_path / "peer" / "ml100k"
    claim4_that_holds(out)
    converged(out)
    significance(other, peer)
    return out, other


def test_a_cross_check_is_the_same_rule_on_the_fairer_budget_study(tmp_path: Path) -> None:
    out, other = cross(tmp_path, {"sasrec": (0.02, 0.001), "gru_dt": (0.005, 0.79)})
    finding = check_claims(Study(out, "ml100k", cross_check=str(other)))[3]
    assert f"cross-check at a fairer budget, `{other}`: by the same rule 'does not hold'" in finding.cross_check
    assert "gru_dt +0.0050 (Holm p 0.79" in finding.cross_check
    assert finding.verdict == HOLDS and "the fairer-budget cross-check says 'does not hold'" in finding.reason


def test_an_agreeing_cross_check_adds_nothing_to_why(tmp_path: Path) -> None:
    out, other = cross(tmp_path, {"sasrec": (0.02, 0.001), "gru_dt": (0.01, 0.01)})
    finding = check_claims(Study(out, "ml100k", cross_check=str(other)))[3]
    assert "by the same rule 'holds'" in finding.cross_check and "cross-check says" not in finding.reason


def test_a_claim_the_cross_check_did_not_measure_says_what_it_lacks(tmp_path: Path) -> None:
    out, other = cross(tmp_path, {"sasrec": (0.02, 0.001)})
    finding = check_claims(Study(out, "ml100k", cross_check=str(other)))[1]
    assert finding.cross_check.endswith("not measured there (irregularity_lifts.csv missing)")


def test_a_cross_check_folder_that_does_not_exist_is_named(tmp_path: Path) -> None:
    out, _ = cross(tmp_path, {"sasrec": (0.02, 0.001)})
    finding = check_claims(Study(out, "ml100k", cross_check="results/nowhere"))[3]
    assert finding.cross_check == "cross-check at a fairer budget, `results/nowhere`: folder not found"


def test_the_cross_check_comes_from_the_config_by_dataset_and_is_printed(tmp_path: Path) -> None:
    out, other = cross(tmp_path, {"sasrec": (0.02, 0.001), "gru_dt": (0.01, 0.01)})
    write_claims(out, "ml100k", cross_checks={"ml100k": str(other), "amazon_toys": "elsewhere"})
    page = pd.read_csv(out / "claims.csv")
    assert page["cross_check"].str.contains(str(other), regex=False).all()
    text = (out / "claims.md").read_text()
    assert "| tuning | fairer-budget cross-check |" in text and "cross_checks: {<dataset>: <folder>}" in text


def test_without_a_configured_cross_check_the_page_says_none(tmp_path: Path) -> None:
    out, _ = cross(tmp_path, {"sasrec": (0.02, 0.001)})
    write_claims(out, "ml100k", cross_checks={"amazon_toys": "elsewhere"})
    assert pd.read_csv(out / "claims.csv")["cross_check"].isna().all()
    assert "| none configured |" in (out / "claims.md").read_text()


def test_a_study_is_not_its_own_cross_check(tmp_path: Path) -> None:
    out, _ = cross(tmp_path, {"sasrec": (0.02, 0.001)})
    assert check_claims(Study(out, "ml100k", cross_check=str(out)))[3].cross_check == ""


def test_claim5_faces_a_sasrec_widened_to_deepm3s_size_when_it_is_the_stronger(tmp_path: Path) -> None:
    """Plain SASRec at its default size is smaller than DeepM3; the presets' `sasrec-matched` is not."""
    main_table(tmp_path, sasrec_params=140_000)
    rows = pd.read_csv(tmp_path / "main_table.csv").to_dict("records")
    rows.append({"model": "sasrec-matched", "seeds": 3, "params": 820_000, "ndcg@10": 0.21})
    write(tmp_path, "main_table", rows)
    tuned(tmp_path, {"sasrec": 0.08, "sasrec-matched": 0.07, "sasrec_large": 0.06})
    significance(tmp_path, {"sasrec-matched": (-0.01, 0.01), "sasrec_large": (0.02, 0.001)})
    finding = verdict(tmp_path, "ml100k", 5)
    assert finding.verdict == FAILS and finding.measured.startswith("opponent sasrec-matched, the stronger")


def test_the_claims_stage_reads_the_cross_check_from_the_preset(tmp_path: Path) -> None:
    """``cross_checks: {ml100k: <folder>}`` is a preset setting, not a path in the code."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from deepm3.phase2.pipeline import run_phase2
    from tests.helpers.config import CONF_DIR

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
            overrides = [f"results_dir={tmp_path}", "studies=[claims]", f"+preset.cross_checks.ml100k={tmp_path}/peer"]
            cfg = compose(config_name="phase2", overrides=overrides)
    finally:
        GlobalHydra.instance().clear()
    out, other = cross(tmp_path / "x", {"sasrec": (0.02, 0.001), "gru_dt": (0.005, 0.79)})
    for path in out.glob("*.csv"):
        (tmp_path / "ml100k").mkdir(exist_ok=True)
        path.rename(tmp_path / "ml100k" / path.name)
    cfg.preset.cross_checks.ml100k = str(other)
    run_phase2(cfg, "python -m deepm3.phase2 (test)")
    page = pd.read_csv(tmp_path / "ml100k" / "claims.csv")
    assert "by the same rule 'does not hold'" in page.loc[3, "cross_check"]
