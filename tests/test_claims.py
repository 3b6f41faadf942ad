"""``claims.md``: each original claim beside our number, its file and a verdict by a written rule.

Every test writes the few CSV rows a claim reads, by hand, and checks one branch of one rule."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from deepm3.phase2.claims import FAILS, HOLDS, UNTESTABLE, Study, check_claims, write_claims
from deepm3.phase2.plan import make_plan
from deepm3.phase2.report import write_report


def write(out: Path, stem: str, rows: list[dict]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(out / f"{stem}.csv", index=False)


def verdict(out: Path, dataset: str, claim: int):
    return check_claims(Study(out, dataset))[claim - 1]


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
    write(
        out,
        stem,
        [
            {"reference": "deepm3-euler", "baseline": b, "metric": "ndcg@10", "mean_difference": d, "t_pvalue_holm": p}
            for b, (d, p) in rows.items()
        ],
    )


def efficiency(out: Path, euler_ms: float, rk4_ms: float) -> None:
    write(
        out,
        "efficiency",
        [
            {"device": "CPU", "model": "deepm3-euler", "latency_ms": euler_ms},
            {"device": "CPU", "model": "deepm3-rk4", "latency_ms": rk4_ms},
        ],
    )


def main_table(out: Path, deepm3_params: int = 800_000, large_params: int = 2_600_000) -> None:
    write(
        out,
        "main_table",
        [
            {"model": "deepm3-euler", "seeds": 3, "params": deepm3_params, "ndcg@10": 0.2},
            {"model": "sasrec_large", "seeds": 3, "params": large_params, "ndcg@10": 0.19},
        ],
    )


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


def test_claim5_needs_fewer_parameters_and_a_sasrec_large_row(tmp_path: Path) -> None:
    main_table(tmp_path, deepm3_params=3_000_000)
    significance(tmp_path, {"sasrec_large": (0.01, 0.001)})
    assert verdict(tmp_path, "amazon_toys", 5).verdict == FAILS
    write(tmp_path, "main_table", [{"model": "deepm3-euler", "seeds": 3, "params": 1, "ndcg@10": 0.2}])
    assert verdict(tmp_path, "amazon_toys", 5).reason == "no `sasrec_large` row in main_table.csv"


# -- the page ------------------------------------------------------------------------------------


def test_claims_md_lists_every_claim_its_file_and_the_rules_and_the_report_links_it_first(tmp_path: Path) -> None:
    out = tmp_path / "ml100k"
    sampled_table(out, 0.3)
    lifts(out, {"gru_dt": (0.03, 0.01, 0.05)})
    written = write_claims(out, "ml100k")
    assert [p.name for p in written] == ["claims.csv", "claims.md"]
    text = (out / "claims.md").read_text()
    assert text.startswith("# The original claims, checked on ML-100k")
    assert "**1 holds, 0 do not hold, 4 not testable here.**" in text
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
    outcome = run_phase2(cfg, "python -m deepm3.phase2 (test)")
    assert [p.name for p in outcome["written"]["claims"]] == ["claims.csv", "claims.md"]
    assert "[claims.md](claims.md)" in (tmp_path / "ml100k" / "README.md").read_text().splitlines()[2]
