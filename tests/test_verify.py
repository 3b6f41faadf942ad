"""``studies=[verify]``: every table that needs no training or re-testing is recomputed from the
per-run files and must equal the committed one -- the claims page included. A study written
before the budget and seed-level rules still verifies what it has and says what it lacks."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from deepm3.errors import DataError
from deepm3.phase2.budget import write_budget
from deepm3.phase2.claims import write_claims
from deepm3.phase2.main_table import write_main_table
from deepm3.phase2.plan import Plan, make_plan
from deepm3.phase2.significance_study import write_significance
from deepm3.phase2.verify import SKIPPED, robustness_from_runs, verify_study
from tests.helpers.run_folders import write_run_folder

PER_USER = {  # per-user NDCG@10 of seed 0; seed k adds 0.01 * k (DeepM3: 0.03 * k)
    "deepm3-euler": [0.5, 0.0, 1.0, 0.3, 0.6],
    "gru4rec": [0.4, 0.0, 0.5, 0.3, 0.2],
    "pop": [0.0, 0.0, 0.3, 0.0, 0.1],
}


def study(root: Path) -> tuple[Plan, dict[str, Callable[[Path], object]], Callable[[Path], object]]:
    """Three models x 3 seeds of hand-written runs, and the steps that recompute their tables."""
    plan = make_plan("ml100k", {model: [] for model in PER_USER}, [0, 1, 2], root)
    for spec in plan.runs:
        step = 0.03 if spec.model == "deepm3-euler" else 0.01
        values = [v + step * spec.seed for v in PER_USER[spec.model]]
        write_run_folder(spec.directory, {f"u{i}": v for i, v in enumerate(values)}, {"ndcg@10": sum(values) / 5})
    steps = {
        "main_table": lambda out: write_main_table(plan, out),
        "significance": lambda out: write_significance(plan, out, "deepm3-euler"),
        "budget": lambda out: write_budget(plan, out),
    }
    return plan, steps, lambda out: write_claims(out, "ml100k")


def committed(root: Path, *, before_rules: bool = False) -> tuple[Path, dict, Callable]:
    """The study written into its folder as its stages would (``before_rules``: without budget.csv)."""
    plan, steps, claims = study(root)
    for step in steps.values():
        step(plan.dataset_dir)
    claims(plan.dataset_dir)
    if before_rules:
        (plan.dataset_dir / "budget.csv").unlink()
    return plan.dataset_dir, steps, claims


def test_every_recomputable_table_and_the_claims_page_match(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out, steps, claims = committed(tmp_path)
    result = verify_study(out, steps, claims)
    assert {"main_table.csv", "significance.csv", "significance_seeds.csv", "budget.csv", "claims.csv"} <= set(
        result.matched
    )
    assert "tables match their recomputation" in capsys.readouterr().out


def test_a_changed_verdict_on_the_claims_page_is_named(tmp_path: Path) -> None:
    out, steps, claims = committed(tmp_path)
    page = pd.read_csv(out / "claims.csv")
    page.loc[3, "verdict"] = "holds"
    page.to_csv(out / "claims.csv", index=False)
    with pytest.raises(DataError, match=r"claims\.csv differs from its recomputation at row 3, column 'verdict'"):
        verify_study(out, steps, claims)


def test_a_changed_seed_level_p_value_is_named(tmp_path: Path) -> None:
    out, steps, claims = committed(tmp_path)
    seeds = pd.read_csv(out / "significance_seeds.csv")
    seeds.loc[0, "seed_t_pvalue"] *= 2
    seeds.to_csv(out / "significance_seeds.csv", index=False)
    with pytest.raises(DataError, match=r"significance_seeds\.csv differs .* column 'seed_t_pvalue'"):
        verify_study(out, steps, claims)


def test_a_table_of_a_stage_the_study_did_not_run_is_named_not_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out, steps, claims = committed(tmp_path)
    (out / "claims.csv").unlink()
    assert verify_study(out, steps, claims).absent == ["claims.csv"]
    assert "not in this study (stages it did not run): claims.csv" in capsys.readouterr().out


def test_the_output_says_which_studies_are_not_recomputed_and_why(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out, steps, claims = committed(tmp_path)
    verify_study(out, steps, claims)
    text = capsys.readouterr().out
    assert all(f"{stage} ({why})" in text for stage, why in SKIPPED.items())


def test_the_claims_page_is_recomputed_with_the_committed_robustness_table(tmp_path: Path) -> None:
    """Robustness is not re-tested; the claims page still reads its committed numbers."""
    out, steps, claims = committed(tmp_path)
    pd.DataFrame([{"noise": "jitter", "level": 1.0, "model": "deepm3-euler", "relative_drop": 0.2}]).to_csv(
        out / "robustness.csv", index=False
    )
    with pytest.raises(DataError, match=r"claims\.csv differs"):  # claim 3 now finds its table
        verify_study(out, steps, claims)
    claims(out)
    assert "robustness.csv" not in verify_study(out, steps, claims).matched  # carried in, not compared


def test_a_study_written_before_the_rules_verifies_what_it_has(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out, steps, claims = committed(tmp_path, before_rules=True)
    page = pd.read_csv(out / "claims.csv").drop(columns=["budget"])  # the older page: other verdicts, no column
    page["verdict"] = "holds"
    page.to_csv(out / "claims.csv", index=False)
    result = verify_study(out, steps, claims)
    assert "main_table.csv" in result.matched and result.absent == ["budget.csv"]
    assert "claims.csv" in result.not_compared
    text = capsys.readouterr().out
    assert "written before the budget and seed-level rules (no budget.csv)" in text
    assert "claims.csv not compared" in text


def test_a_study_before_the_rules_is_compared_without_the_columns_they_add(tmp_path: Path) -> None:
    out, steps, claims = committed(tmp_path, before_rules=True)
    table = pd.read_csv(out / "significance_seeds.csv")
    table.drop(columns=["seed_t_statistic"]).to_csv(out / "significance_seeds.csv", index=False)
    result = verify_study(out, steps, claims)
    assert result.new_columns == {"significance_seeds.csv": ["seed_t_statistic"]}
    assert "significance_seeds.csv" in result.matched


def test_a_study_before_the_rules_still_fails_on_a_wrong_number(tmp_path: Path) -> None:
    out, steps, claims = committed(tmp_path, before_rules=True)
    table = pd.read_csv(out / "main_table.csv")
    table.loc[0, "ndcg@10"] += 0.01
    table.to_csv(out / "main_table.csv", index=False)
    with pytest.raises(DataError, match=r"main_table\.csv differs .* column 'ndcg@10'"):
        verify_study(out, steps, claims)


def test_a_claims_page_from_before_the_tuning_and_cross_check_columns_is_named_not_failed(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """A study under the budget rule whose page predates the lines naming tuning and cross-check."""
    out, steps, claims = committed(tmp_path)
    page = pd.read_csv(out / "claims.csv").drop(columns=["tuning", "cross_check"])
    page["verdict"] = "holds"  # claims 4 and 5 were judged by other rules then
    page.to_csv(out / "claims.csv", index=False)
    result = verify_study(out, steps, claims)
    assert "claims.csv" not in result.matched and "written before these rules" in result.not_compared["claims.csv"]
    assert "verify: claims.csv not compared: its verdicts were written before these rules" in capsys.readouterr().out


def test_a_tuning_table_from_before_bracketing_is_compared_on_its_own_columns(tmp_path: Path) -> None:
    from deepm3.phase2.tune import tune_plan, write_tuning

    out, steps, claims = committed(tmp_path)
    models, grids = {"gru4rec": []}, {"gru4rec": {"optim.lr": [0.001, 0.003]}}
    tuning = tune_plan(make_plan("ml100k", models, [0], tmp_path), models, grids, 0)
    for spec in tuning.runs:
        write_run_folder(spec.directory, {"u0": 0.5}, {"ndcg@10": 0.5})
    steps["tune"] = lambda into: write_tuning(tuning, models, grids, into)
    steps["tune"](out)
    table = pd.read_csv(out / "tune.csv")
    table[["model", "point", "overrides", "val/ndcg@10", "selected"]].to_csv(out / "tune.csv", index=False)
    result = verify_study(out, steps, claims)
    assert "tune.csv" in result.matched and "status" in result.new_columns["tune.csv"]


# -- robustness: what needs no re-testing is still checked --------------------------------------------


def robustness_runs(plan: Plan, out: Path, clean_ndcg: dict[tuple[str, int], float] | None = None) -> None:
    """``robustness_runs.csv`` whose clean rows repeat each run's metrics.json, and one jitter level."""
    rows = []
    for spec in plan.runs:
        step = 0.03 if spec.model == "deepm3-euler" else 0.01
        own = sum(v + step * spec.seed for v in PER_USER[spec.model]) / 5  # what write_run_folder recorded
        clean = (clean_ndcg or {}).get((spec.model, spec.seed), own)
        rows.append({"noise": "clean", "level": 0.0, "model": spec.model, "seed": spec.seed, "ndcg@10": clean})
        rows.append({"noise": "jitter", "level": 1.0, "model": spec.model, "seed": spec.seed, "ndcg@10": clean * 0.9})
    pd.DataFrame(rows).to_csv(out / "robustness_runs.csv", index=False)


def test_robustness_csv_is_recomputed_from_the_committed_per_run_table(tmp_path: Path) -> None:
    plan, steps, claims = study(tmp_path)
    out = plan.dataset_dir
    robustness_runs(plan, out)
    robustness_from_runs(plan, out, out)  # what the robustness stage wrote from the same numbers
    table = pd.read_csv(out / "robustness.csv")
    assert table.loc[table["noise"] == "jitter", "relative_drop"].to_numpy() == pytest.approx(0.1)
    table.loc[0, "mean"] += 0.01
    table.to_csv(out / "robustness.csv", index=False)
    with pytest.raises(DataError, match=r"robustness\.csv differs .* column 'mean'"):
        verify_study(out, {"robustness": lambda into: robustness_from_runs(plan, out, into)})


def test_a_clean_robustness_row_that_is_not_the_runs_own_number_is_named(tmp_path: Path) -> None:
    plan, _, _ = study(tmp_path)
    robustness_runs(plan, plan.dataset_dir, clean_ndcg={("gru4rec", 1): 0.9})
    with pytest.raises(DataError, match=r"clean row of gru4rec seed 1 has ndcg@10 0\.9, its metrics\.json"):
        robustness_from_runs(plan, plan.dataset_dir, tmp_path / "scratch")
