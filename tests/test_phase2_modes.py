"""The suite in both query modes, with fair tuning, provenance and a recompute check."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from deepm3.errors import DataError
from deepm3.phase2.main_table import check_modes
from deepm3.phase2.pipeline import run_phase2
from deepm3.phase2.plan import expand_query_modes, make_plan, mode_view
from tests.helpers.tiny_study import phase2_config

MODELS = {
    "deepm3-euler": ["model=deepm3", "model.net.hidden=16", "model.net.field.width=16"],
    "gru4rec": ["model=gru4rec", "model.net.hidden=16", "model.net.gru_hidden=16"],
    "pop": ["model=pop"],
}
STUDIES = "studies=[tune,train,main_table,significance,report]"


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("modes")
    cfg = phase2_config(root / "results", root / "data", STUDIES, models=MODELS)
    cfg.query_modes = ["target", "last"]
    cfg.time_blind = ["gru4rec", "pop"]
    cfg.preset.tune = {"gru4rec": {"optim.lr": [0.001, 0.003]}}
    outcome = run_phase2(cfg, "python -m deepm3.phase2 (test)")
    return {**outcome, "cfg": cfg, "out": root / "results" / "tiny"}


def _metrics(study: dict, run: str) -> dict:
    return json.loads((study["out"] / "runs" / run / "metrics.json").read_text())


def test_time_aware_models_run_in_each_mode_and_time_blind_ones_once(study: dict) -> None:
    assert set(study["plan"].models) >= {"deepm3-euler", "deepm3-euler@last", "gru4rec", "pop"}
    assert "gru4rec@last" not in study["plan"].models
    assert _metrics(study, "deepm3-euler@last-seed0")["protocol"]["query"] == "last"
    assert _metrics(study, "deepm3-euler-seed0")["protocol"]["query"] == "target"


def test_each_mode_has_its_own_main_table_and_significance_with_every_model(study: dict) -> None:
    for suffix in ("", "_last"):
        table = pd.read_csv(study["out"] / f"main_table{suffix}.csv")
        assert set(table["model"]) == {"deepm3-euler", "gru4rec", "pop"}
        assert (study["out"] / f"significance{suffix}.csv").is_file()
        assert (study["out"] / f"significance{suffix}_seeds.csv").is_file()
    assert "time.query=last" in (study["out"] / "main_table_last.md").read_text()
    report = (study["out"] / "README.md").read_text()
    assert "## Main table (full ranking), time.query=last" in report
    assert "## Significance, time.query=last" in report


def test_the_winning_tuning_run_is_reused_as_the_seed_0_run(study: dict) -> None:
    reused = _metrics(study, "gru4rec-seed0")
    assert Path(reused["reused_from"]).name.startswith("tune-gru4rec-")
    assert "gru4rec-seed0" not in study["train"].trained
    assert "gru4rec-seed1" in study["train"].trained


def test_every_run_records_its_provenance(study: dict) -> None:
    records = [_metrics(study, run)["provenance"] for run in ("deepm3-euler-seed0", "pop-seed1")]
    for record in records:
        assert {"commit", "dirty", "code_version", "versions", "device", "command", "data_fingerprint"} <= set(record)
        assert record["versions"]["torch"] and record["versions"]["torchdiffeq"]
        assert record["device"].startswith("cpu")
        assert record["command"].startswith("python -m deepm3.train ")
    assert records[0]["data_fingerprint"] == records[1]["data_fingerprint"]
    report = (study["out"] / "README.md").read_text()
    assert f"Code version of every run: `{records[0]['code_version']}`" in report


def test_verify_passes_on_the_tables_the_runs_produced(study: dict, capsys: pytest.CaptureFixture) -> None:
    cfg = study["cfg"].copy()
    cfg.studies = ["verify"]
    run_phase2(cfg)
    assert "tables match their recomputation" in capsys.readouterr().out


def test_verify_names_the_table_that_differs(study: dict, tmp_path: Path) -> None:
    path = study["out"] / "main_table_last.csv"
    original = path.read_text()
    table = pd.read_csv(path)
    table.loc[0, "ndcg@10"] += 0.01
    table.to_csv(path, index=False)
    cfg = study["cfg"].copy()
    cfg.studies = ["verify"]
    try:
        with pytest.raises(DataError, match=r"main_table_last\.csv differs .* column 'ndcg@10'"):
            run_phase2(cfg)
    finally:
        path.write_text(original)


def test_report_warns_loudly_when_runs_come_from_different_code_versions(study: dict) -> None:
    path = study["out"] / "runs" / "pop-seed1" / "metrics.json"
    original = path.read_text()
    metrics = json.loads(original)
    metrics["provenance"]["code_version"] = "0123abc-older"
    path.write_text(json.dumps(metrics))
    cfg = study["cfg"].copy()
    cfg.studies = ["report"]
    try:
        run_phase2(cfg)
        report = (study["out"] / "README.md").read_text()
        assert "**Warning: these tables mix runs of 2 code versions.**" in report
        assert "`0123abc-older`" in report
    finally:
        path.write_text(original)
        run_phase2(cfg)


def test_a_time_aware_run_of_another_mode_cannot_enter_a_modes_table() -> None:
    runs = [{"model": "tisasrec", "seed": 0, "uses_time": True, "protocol": {"query": "target"}}]
    with pytest.raises(DataError, match="time.query=target and uses time"):
        check_modes(runs, "last")
    check_modes([{**runs[0], "uses_time": False}], "last")  # a time-blind run stands in every mode


def test_mode_view_relabels_the_modes_runs_and_borrows_the_time_blind_ones(tmp_path: Path) -> None:
    models = expand_query_modes({"a": ["x"], "b": ["y"]}, ["target", "last"], time_blind=["b"])
    assert models == {
        "a": ["x", "time.query=target"],
        "b": ["y", "time.query=target"],
        "a@last": ["x", "time.query=last"],
    }
    plan = make_plan("d", models, [0], tmp_path)
    last = mode_view(plan, ["target", "last"], "last")
    assert [(r.model, r.directory.name) for r in last.runs] == [("b", "b-seed0"), ("a", "a@last-seed0")]
    assert [r.model for r in mode_view(plan, ["target", "last"], "target").runs] == ["a", "b"]


def test_verify_recomputes_nothing_for_a_study_that_cannot_run_yet(monkeypatch: pytest.MonkeyPatch) -> None:
    """A partial study (e.g. no reference run in one mode yet) verifies the tables it has."""
    from deepm3.phase2 import pipeline

    def cannot_run(plan, out, cfg):
        raise DataError("phase2: reference model 'x' has no complete run")

    monkeypatch.setitem(pipeline.STUDIES, "significance", cannot_run)
    assert pipeline._try_study("significance", None, Path("."), None) == []


def test_a_one_mode_study_names_its_query_mode_on_each_table(study: dict) -> None:
    cfg = study["cfg"].copy()
    cfg.studies = ["irregularity"]
    run_phase2(cfg)
    for name in ("irregularity_tertiles", "irregularity_lifts"):
        title = (study["out"] / f"{name}.md").read_text().splitlines()[0]
        assert title.endswith("[time.query=target, this study's only query mode]")


def test_tables_of_both_modes_carry_no_single_mode_note(study: dict) -> None:
    assert "this study's only query mode" not in (study["out"] / "main_table.md").read_text()


def test_a_trained_run_names_its_paths_relative_to_the_study_folder(study: dict) -> None:
    metrics = _metrics(study, "deepm3-euler-seed1")
    assert metrics["best_checkpoint"].startswith("runs/deepm3-euler-seed1/checkpoints/")
    assert "paths.output_dir=runs/deepm3-euler-seed1" in metrics["provenance"]["command"]
    assert _metrics(study, "gru4rec-seed0")["reused_from"].startswith("runs/tune-gru4rec-")
    assert metrics["provenance"]["allow_dirty"] is True  # the tiny studies train from this checkout


def test_verify_recomputes_the_budget_and_claims_of_a_study_under_the_rules(
    study: dict, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    shutil.copytree(study["out"].parent, tmp_path / "results")
    cfg = study["cfg"].copy()
    cfg.results_dir = str(tmp_path / "results")
    cfg.studies = ["irregularity", "budget", "claims"]
    run_phase2(cfg)
    cfg.studies = ["verify"]
    run_phase2(cfg)
    out = capsys.readouterr().out
    matched = out.split("tables match their recomputation: ")[1].splitlines()[0]
    for table in ("budget.csv", "claims.csv", "irregularity_seeds.csv", "tune.csv", "significance_last_seeds.csv"):
        assert table in matched
    assert "written before" not in out
