"""The experiment suite end to end on TinySource: every study file, resumability, failure isolation."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

from deepm3.data.datamodule import SequenceDataModule
from deepm3.errors import ConfigError
from deepm3.phase2.main_table import display
from deepm3.phase2.pipeline import run_phase2
from deepm3.phase2.plan import make_plan, plan_from_config
from deepm3.phase2.sensitivity import BASE, ShuffledGapsDataModule, sensitivity_models
from tests.helpers.config import CONF_DIR
from tests.helpers.tiny_study import phase2_config

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
STUDY_FILES = [
    "main_table.csv",
    "main_table.md",
    "significance.csv",
    "significance.md",
    "target_kinds.csv",
    "target_kinds.md",
    "irregularity_tertiles.csv",
    "irregularity_tertiles.md",
    "irregularity_lifts.csv",
    "irregularity_lifts.md",
    "irregularity_lifts.png",
    "robustness.csv",
    "robustness.md",
    "robustness_runs.csv",
    "robustness_curves.png",
    "robustness_entropy.csv",
    "robustness_entropy.md",
    "efficiency.csv",
    "efficiency.md",
    "efficiency_bench.json",
    "README.md",
]


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("phase2")
    cfg = phase2_config(
        root / "results",
        root / "data",
        "studies=[train,main_table,significance,target_kinds,irregularity,robustness,efficiency,report]",
        "extra_references=[gru4rec]",
    )
    cfg.preset.efficiency = [
        "hidden=8",
        "threads=1",
        "batch_size=8",
        "train_warmup=1",
        "train_steps=2",
        "latency_warmup=1",
        "latency_calls=3",
        "throughput_batches=1",
        "measure_memory=false",
    ]
    outcome = run_phase2(cfg, "python -m deepm3.phase2 (test)")
    return {**outcome, "cfg": cfg, "root": root, "out": root / "results" / "tiny"}


def test_every_study_file_is_written(study: dict) -> None:
    missing = [name for name in STUDY_FILES if not (study["out"] / name).is_file()]
    assert missing == []


def test_every_csv_parses_with_rows(study: dict) -> None:
    for path in study["out"].glob("*.csv"):
        assert len(pd.read_csv(path)) > 0, path.name


def test_plots_are_png_files(study: dict) -> None:
    for path in study["out"].glob("*.png"):
        assert path.read_bytes()[:8] == PNG_SIGNATURE, path.name


def test_main_table_has_mean_and_std_per_trained_model(study: dict) -> None:
    table = pd.read_csv(study["out"] / "main_table.csv")
    assert table["model"].tolist() == ["deepm3-euler", "gru4rec", "pop"]
    assert (table["seeds"] == 2).all()
    assert {"hr@5", "ndcg@10", "mrr@20", "ndcg@10_std", "params", "train_seconds"} <= set(table.columns)


def test_the_markdown_main_table_shows_train_seconds_at_one_decimal() -> None:
    table = pd.DataFrame(
        {"model": ["m"], "seeds": [2], "params": [10], "train_seconds": [8.94], "ndcg@10": [0.1], "ndcg@10_std": [0.01]}
    )
    shown = display(table)
    assert shown.loc[0, "train_seconds"] == "8.9"
    assert shown.loc[0, "ndcg@10"] == "0.1000 ± 0.0100"


def test_target_kinds_split_each_models_headline_by_kind_of_target(study: dict) -> None:
    kinds = pd.read_csv(study["out"] / "target_kinds.csv").set_index("model")
    main = pd.read_csv(study["out"] / "main_table.csv").set_index("model")
    assert kinds.index.tolist() == main.index.tolist()
    np.testing.assert_allclose(kinds["ndcg@10"], main.loc[kinds.index, "ndcg@10"], rtol=1e-6)  # float32 runs
    assert {"ndcg@10_latest", "ndcg@10_earlier_std", "hit@1_novel"} <= set(kinds.columns)
    assert "Kinds of target" in (study["out"] / "README.md").read_text()


def test_significance_compares_the_reference_with_each_trained_model(study: dict) -> None:
    table = pd.read_csv(study["out"] / "significance.csv")
    assert table["baseline"].tolist() == ["gru4rec", "pop"]
    assert table["t_pvalue_holm"].between(0, 1).all()


def test_an_extra_reference_gets_its_own_significance_table_in_the_report(study: dict) -> None:
    table = pd.read_csv(study["out"] / "significance_gru4rec.csv")
    assert set(table["reference"]) == {"gru4rec"}
    assert table["baseline"].tolist() == ["deepm3-euler", "pop"]
    assert "## Significance (gru4rec as reference)" in (study["out"] / "README.md").read_text()


def test_clean_robustness_reproduces_the_tested_metrics(study: dict) -> None:
    """Reloading each checkpoint and ranking the clean test inputs gives metrics.json's number."""
    runs = pd.read_csv(study["out"] / "robustness_runs.csv")
    clean = runs[runs["noise"] == "clean"]
    for row in clean.itertuples():
        metrics = json.loads((study["out"] / "runs" / f"{row.model}-seed{row.seed}" / "metrics.json").read_text())
        assert clean.loc[row.Index, "ndcg@10"] == pytest.approx(metrics["test"]["ndcg@10"], abs=1e-5)


def test_robustness_covers_clean_and_every_level_of_each_sweep(study: dict) -> None:
    table = pd.read_csv(study["out"] / "robustness.csv")
    levels = {noise: sorted(set(group["level"])) for noise, group in table.groupby("noise")}
    assert levels == {"clean": [0.0], "jitter": [0.1, 0.5, 1.0, 2.0], "item_dropout": [0.1, 0.25, 0.5]}
    assert (table.loc[table["noise"] == "clean", "relative_drop"] == 0).all()


def test_entropy_is_reported_for_both_measures_at_every_level(study: dict) -> None:
    table = pd.read_csv(study["out"] / "robustness_entropy.csv")
    assert set(table["measure"]) == {"topological", "shannon"}
    assert len(table) == 2 * 2 * (1 + 4 + 3)  # channels x measures x (clean + levels)
    assert table["entropy_rate"].notna().all()


def test_efficiency_names_the_device_and_measures_every_bench_model(study: dict) -> None:
    table = pd.read_csv(study["out"] / "efficiency.csv")
    assert table["device"].str.startswith("CPU").all()
    assert {"deepm3-euler@hidden8", "deepm3-rk4@hidden8", "gru4rec@hidden8", "tisasrec@hidden8"} <= set(table["model"])
    assert (table[["params", "latency_ms", "throughput_users_s", "train_step_ms"]] > 0).all().all()
    trained = table.set_index("model")["trained_seconds_per_epoch"]
    assert trained["deepm3-euler"] > 0 and pd.isna(trained["deepm3-rk4@hidden8"])  # a bench row, not a run


def test_efficiency_times_the_trained_models_at_their_own_size(study: dict) -> None:
    """Claim 4's latency comes from the networks the study trained (hidden 16 here), not the bench's width."""
    table = pd.read_csv(study["out"] / "efficiency.csv").set_index("model")
    mine = table[table["size"] == "trained"]
    assert list(mine.index) == ["deepm3-euler", "gru4rec"]  # pop trains nothing; broken has no run
    params = pd.read_csv(study["out"] / "main_table.csv").set_index("model")["params"]
    assert mine["params"].to_dict() == {m: params[m] for m in mine.index}
    assert set(table.loc[table["size"] != "trained", "size"]) == {"hidden 8"}


def test_a_failing_run_is_recorded_and_the_others_complete(study: dict) -> None:
    assert sorted(study["train"].failed) == ["broken-seed0", "broken-seed1"]
    assert len(study["train"].trained) == 6
    error = json.loads((study["out"] / "runs" / "broken-seed0" / "error.json").read_text())
    assert "no_such_module" in error["error"]


def test_report_lists_missing_runs_with_their_error_and_the_files(study: dict) -> None:
    report = (study["out"] / "README.md").read_text()
    assert "## Missing runs" in report and "`broken-seed1`" in report and "no_such_module" in report
    assert "Report written at code version `" in report and "python -m deepm3.phase2 (test)" in report
    for name in ["main_table.csv", "robustness_curves.png", "irregularity_lifts.png"]:
        assert f"`{name}`" in report


def test_a_second_invocation_trains_nothing_already_complete(study: dict) -> None:
    before = {p: p.stat().st_mtime_ns for p in study["out"].glob("runs/*/metrics.json")}
    cfg = study["cfg"].copy()
    cfg.studies = ["train"]
    again = run_phase2(cfg)
    assert again["train"].trained == []
    assert len(again["train"].skipped) == 6
    assert {p: p.stat().st_mtime_ns for p in study["out"].glob("runs/*/metrics.json")} == before


def test_a_study_without_its_reference_is_skipped_with_a_note(tmp_path: Path) -> None:
    cfg = phase2_config(tmp_path / "results", tmp_path / "data", "studies=[significance,report]")
    outcome = run_phase2(cfg)
    assert "reference model 'deepm3-euler' has no complete run" in outcome["notes"][0]
    report = (tmp_path / "results" / "tiny" / "README.md").read_text()
    assert "study `significance` skipped" in report and "not run yet" in report


def test_unknown_study_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown"):
        run_phase2(phase2_config(tmp_path, tmp_path, "studies=[train,plots]"))


def test_plan_lays_out_one_folder_per_model_and_seed(tmp_path: Path) -> None:
    plan = make_plan("ml1m", {"a": ["model=pop"], "b": []}, [0, 3], tmp_path)
    assert [r.directory.relative_to(tmp_path).as_posix() for r in plan.runs] == [
        "ml1m/runs/a-seed0",
        "ml1m/runs/a-seed3",
        "ml1m/runs/b-seed0",
        "ml1m/runs/b-seed3",
    ]


@pytest.mark.parametrize("models, seeds", [({}, [0]), ({"a": []}, []), ({"../x": []}, [0])])
def test_plan_rejects_empty_or_unsafe_input(tmp_path: Path, models: dict, seeds: list) -> None:
    with pytest.raises(ConfigError):
        make_plan("ml1m", models, seeds, tmp_path)


def test_full_preset_trains_every_model_over_five_seeds(tmp_path: Path) -> None:
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose(config_name="phase2", overrides=["preset=full", "dataset=ml1m", f"results_dir={tmp_path}"])
    GlobalHydra.instance().clear()
    plan = plan_from_config(cfg)
    expected = {"deepm3-euler", "deepm3-rk4", "deepm3-none", "gru4rec", "gru_dt", "sasrec", "tisasrec", "pop"}
    assert expected <= set(plan.models)
    assert len(plan.runs) == 5 * len(plan.models)


def test_seeds_on_the_command_line_replace_the_presets(tmp_path: Path) -> None:
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose(config_name="phase2", overrides=["seeds=[7]", f"results_dir={tmp_path}"])
    GlobalHydra.instance().clear()
    assert {run.seed for run in plan_from_config(cfg).runs} == {7}


SENSITIVITY = {
    "base": ["model=deepm3", "model.net.hidden=16", "model.net.field.width=16"],
    "factors": {
        "ode_steps": {"1": [], "2": ["solver.steps=2"]},
        "gaps": {"real": [], "shuffled": ["dataset._target_=deepm3.phase2.sensitivity.ShuffledGapsDataModule"]},
    },
}


def test_sensitivity_trains_each_variant_once_and_plots_each_factor(tmp_path: Path) -> None:
    cfg = phase2_config(
        tmp_path / "results",
        tmp_path / "data",
        "studies=[train,sensitivity,report]",
        "seeds=[0]",
        models={"pop": ["model=pop"]},
    )
    cfg.preset.sensitivity = SENSITIVITY
    outcome = run_phase2(cfg)
    assert outcome["train"].trained == [
        "pop-seed0",
        "sens-base-seed0",
        "sens-ode_steps-2-seed0",
        "sens-gaps-shuffled-seed0",
    ]
    out = tmp_path / "results" / "tiny"
    table = pd.read_csv(out / "sensitivity.csv", dtype={"value": str})
    assert list(zip(table["factor"], table["value"])) == [
        ("ode_steps", "1"),
        ("ode_steps", "2"),
        ("gaps", "real"),
        ("gaps", "shuffled"),
    ]
    assert (out / "sensitivity.png").read_bytes()[:8] == PNG_SIGNATURE
    assert "## Sensitivity of DeepM3" in (out / "README.md").read_text()
    cfg.studies = ["report"]  # a report written on its own still counts the sensitivity runs
    run_phase2(cfg)
    assert "Runs: 4 of 4 complete" in (out / "README.md").read_text()


def test_sensitivity_runs_as_the_tuned_reference_and_its_base_is_the_reference_run(tmp_path: Path) -> None:
    cfg = phase2_config(
        tmp_path / "results",
        tmp_path / "data",
        "studies=[tune,train,sensitivity]",
        "seeds=[0]",
        "reference=pop",
        models={"pop": ["model=pop"]},
    )
    cfg.preset.tune = {"pop": {"optim.lr": [0.001, 0.1]}}
    cfg.preset.sensitivity = {"base": ["model=pop"], "factors": {"epochs": {"1": [], "2": ["trainer.max_epochs=2"]}}}
    outcome = run_phase2(cfg)
    out = tmp_path / "results" / "tiny"
    winner = json.loads((out / "tuned.json").read_text())["pop"]
    assert outcome["train"].trained == ["tune-pop-0-seed0", "tune-pop-1-seed0", "sens-epochs-2-seed0"]
    base = json.loads((out / "runs" / "sens-base-seed0" / "metrics.json").read_text())
    assert Path(base["reused_from"]).name == "pop-seed0"
    variant = [r for r in outcome["plan"].runs if r.model == "sens-epochs-2"][0]
    assert variant.overrides[-len(winner) :] == tuple(winner)


def test_as_reference_appends_the_primary_query_mode_then_the_tuned_overrides(tmp_path: Path) -> None:
    from deepm3.phase2.pipeline import as_reference

    plan = make_plan("tiny", {"sens-base": ["model=deepm3"]}, [0], tmp_path)
    runs = as_reference(plan, ["optim.lr=0.003"], ["last", "target"]).runs
    assert runs[0].overrides == ("model=deepm3", "time.query=last", "optim.lr=0.003")


def test_sensitivity_values_without_overrides_are_the_base_run() -> None:
    models = sensitivity_models(SENSITIVITY)
    assert list(models) == [BASE, "sens-ode_steps-2", "sens-gaps-shuffled"]
    assert models["sens-ode_steps-2"] == [*SENSITIVITY["base"], "solver.steps=2"]


def test_shuffled_gaps_permute_training_gaps_and_keep_test_inputs(tmp_path: Path) -> None:
    from tests.helpers.spine_fixtures import TinySource

    def module(cls):
        dm = cls(TinySource(tmp_path / "raw"), tmp_path / "cache", max_len=8, seed=3)
        dm.setup()
        return dm

    plain, shuffled = module(SequenceDataModule), module(ShuffledGapsDataModule)

    def gaps(samples):
        return np.where(samples.items != 0, samples.next_times - samples.times, 0)

    before, after = gaps(plain.splits["train"]), gaps(shuffled.splits["train"])
    assert np.array_equal(np.sort(before, axis=1), np.sort(after, axis=1))
    assert not np.array_equal(before, after)
    assert np.array_equal(plain.splits["train"].items, shuffled.splits["train"].items)
    assert np.array_equal(plain.splits["test"].times, shuffled.splits["test"].times)


def test_command_line_forwards_the_dataset_choice_and_its_overrides(tmp_path: Path) -> None:
    """``python -m deepm3.phase2`` itself (report only: nothing is trained)."""
    import subprocess
    import sys

    cmd = [
        sys.executable,
        "-m",
        "deepm3.phase2",
        "dataset=synthetic",
        "dataset.source.users=60",
        "seeds=[4]",
        "studies=[report]",
        f"results_dir={tmp_path}",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    report = (tmp_path / "synthetic" / "README.md").read_text()
    assert "python -m deepm3.phase2 dataset=synthetic dataset.source.users=60" in report
    assert "python -m deepm3.train dataset=synthetic model=gru4rec" in report
    assert "seed=4 dataset.source.users=60" in report and "`pop-seed4` | not run yet" in report


def test_robustness_refuses_runs_tested_on_different_windows(tmp_path: Path) -> None:
    from deepm3.errors import DataError
    from deepm3.phase2.robustness import write_robustness

    plan = make_plan("tiny", {"a": [], "b": []}, [0], tmp_path)
    for spec, max_len in zip(plan.runs, [8, 10]):
        (spec.directory / ".hydra").mkdir(parents=True)
        (spec.directory / ".hydra" / "config.yaml").write_text(f"dataset: {{name: tiny, max_len: {max_len}}}\n")
        (spec.directory / "metrics.json").write_text("{}")
    with pytest.raises(DataError, match="max_len"):
        write_robustness(plan, tmp_path / "out", ["jitter"])


def test_robustness_logs_one_progress_line_per_condition(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from types import SimpleNamespace

    from deepm3.phase2 import robustness

    monkeypatch.setattr(robustness, "perturb_samples", lambda test, *_: test)
    monkeypatch.setattr(robustness, "evaluate", lambda *_: {"ndcg@10": 0.5})
    plan = make_plan("tiny", {"a": [], "b": []}, [0], tmp_path)
    runs = [robustness.LoadedRun(spec, None) for spec in plan.runs]  # type: ignore[arg-type]
    operators = [("clean", SimpleNamespace(level=0.0))] + [("jitter", SimpleNamespace(level=v)) for v in (0.5, 1.0)]
    with caplog.at_level("INFO", logger="deepm3.phase2.robustness"):
        table = robustness.perturbed_metrics(runs, None, operators, 10, 0, 8, None)  # type: ignore[arg-type]
    lines = [r.getMessage() for r in caplog.records if "conditions" in r.getMessage()]
    assert len(table) == 6
    assert [line.split(" (")[0] for line in lines] == [f"robustness: {k} of 3 conditions" for k in (1, 2, 3)]
    assert "jitter level 1, 2 runs" in lines[-1] and "left" in lines[-1]


def compose_train_with(*overrides: str) -> DictConfig:
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
            return compose(config_name="train", overrides=list(overrides), return_hydra_config=True)
    finally:
        GlobalHydra.instance().clear()


def test_ddp_trainer_composes_to_a_data_parallel_gpu_trainer() -> None:
    trainer = compose_train_with("trainer=ddp").trainer
    assert (trainer.strategy, trainer.accelerator, trainer.devices, trainer.num_nodes) == ("ddp", "gpu", -1, 1)
    assert trainer._target_ == "lightning.Trainer"


def test_joblib_launcher_composes_with_threads_capped_per_job() -> None:
    import hydra_plugins.hydra_joblib_launcher  # noqa: F401  (a dev dependency: missing fails here, never skips)

    cfg = compose_train_with("+launcher=joblib", "model=gru4rec")
    assert cfg.hydra.launcher._target_.endswith("JoblibLauncher") and cfg.hydra.launcher.n_jobs == 2
    assert cfg.hydra.job.env_set.OMP_NUM_THREADS == "1"
    assert cfg.model.name == "gru4rec"  # the launcher changes how runs start, not what they train


def test_slurm_launcher_composes_one_job_per_run_with_ddp() -> None:
    import hydra_plugins.hydra_submitit_launcher  # noqa: F401  (a dev dependency: missing fails here, never skips)

    cfg = compose_train_with("+launcher=slurm", "hydra.launcher.partition=gpu")
    assert cfg.hydra.launcher._target_.endswith("SlurmLauncher") and cfg.hydra.launcher.partition == "gpu"
    assert cfg.trainer.strategy == "ddp"
    assert cfg.hydra.launcher.tasks_per_node == cfg.hydra.launcher.gpus_per_node == cfg.trainer.devices


def test_time_signal_preset_pairs_deepm3_with_its_shuffled_gap_twin(tmp_path: Path) -> None:
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose(
            config_name="phase2", overrides=["preset=time_signal", "dataset=synthetic", f"results_dir={tmp_path}"]
        )
    GlobalHydra.instance().clear()
    models = {k: list(v) for k, v in cfg.preset.models.items()}
    assert models["deepm3-shuffled"] == [
        *models["deepm3-euler"],
        "dataset._target_=deepm3.phase2.sensitivity.ShuffledGapsDataModule",
    ]
    assert {"gru4rec", "gru_dt"} <= set(models)


def test_tuning_trains_every_grid_point_and_the_plan_uses_the_validation_winner(tmp_path: Path) -> None:
    from deepm3.phase2.tune import grid_points

    grid = {"optim.lr": [0.001, 0.1]}
    cfg = phase2_config(
        tmp_path / "results", tmp_path / "data", "studies=[tune,report]", "seeds=[0]", models={"pop": ["model=pop"]}
    )
    cfg.preset.tune = {"pop": grid}
    outcome = run_phase2(cfg)
    assert outcome["train"].trained == ["tune-pop-0-seed0", "tune-pop-1-seed0"]
    out = tmp_path / "results" / "tiny"
    table = pd.read_csv(out / "tune.csv")
    assert table["overrides"].tolist() == [" ".join(p) for p in grid_points(grid)]
    assert table["selected"].sum() == 1
    winner = table.loc[table["selected"], "overrides"].item().split()
    assert json.loads((out / "tuned.json").read_text()) == {"pop": winner}
    assert outcome["plan"].runs[0].overrides == ("model=pop", *winner)
    assert "## Tuning of the baselines" in (out / "README.md").read_text()


def test_grid_points_are_every_combination_in_order() -> None:
    from deepm3.phase2.tune import grid_points

    assert grid_points({"a": [1, 2], "b": ["x", "y"]}) == [
        ["a=1", "b=x"],
        ["a=1", "b=y"],
        ["a=2", "b=x"],
        ["a=2", "b=y"],
    ]


def test_tuning_a_model_outside_the_plan_is_a_config_error() -> None:
    from deepm3.phase2.tune import tune_models

    with pytest.raises(ConfigError, match="not in preset.models"):
        tune_models({"pop": []}, {"sasrec": {"optim.lr": [0.1]}})


def test_one_entry_point_runs_the_stages_studies_names(tmp_path: Path) -> None:
    """``python -m deepm3.phase2 'studies=[report]'`` runs the report alone, with the suite's overrides."""
    import subprocess
    import sys

    cmd = [
        sys.executable,
        "-m",
        "deepm3.phase2",
        "studies=[report]",
        "dataset=synthetic",
        "seeds=[2]",
        f"results_dir={tmp_path}",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    report = (tmp_path / "synthetic" / "README.md").read_text()
    whole, invocation = report.split("This report was written by:")
    assert f"python -m deepm3.phase2 dataset=synthetic 'seeds=[2]' results_dir={tmp_path}\n" in whole
    assert "python -m deepm3.phase2 'studies=[report]' dataset=synthetic 'seeds=[2]'" in invocation
    assert not (tmp_path / "synthetic" / "runs" / "pop-seed2").exists()  # nothing trained


def test_no_stage_module_is_an_entry_point_of_its_own() -> None:
    """One entry point: no ``python -m deepm3.phase2.<stage>``, no ``sys.argv`` rewriting."""
    import deepm3.phase2

    folder = Path(deepm3.phase2.__file__).parent
    for path in folder.glob("*.py"):
        text = path.read_text()
        assert ("__main__" in text) == (path.name == "__main__.py"), path.name
        assert "sys.argv" not in text, path.name


def test_peer_preset_trains_every_model_three_times_in_both_query_modes(tmp_path: Path) -> None:
    from deepm3.phase2.train_all import run_overrides

    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose(config_name="phase2", overrides=["preset=peer", f"results_dir={tmp_path}"])
    GlobalHydra.instance().clear()
    plan = plan_from_config(cfg)
    blind = {"deepm3-none", "gru4rec", "sasrec", "bert4rec", "pop"}
    timed = {"deepm3-euler", "deepm3-rk4", "deepm3-matched", "gru_dt", "tisasrec"}
    expected = blind | timed | {f"{label}@last" for label in timed}
    assert set(plan.models) == expected
    assert len(plan.runs) == 3 * len(expected)
    last = next(spec for spec in plan.runs if spec.model == "tisasrec@last")
    assert "time.query=last" in last.overrides
    assert set(cfg.preset.tune) == (blind | timed) - {"pop"}  # the same grid for every trained model
    assert {str(g) for g in cfg.preset.tune.values()} == {str(cfg.preset.tune["deepm3-euler"])}
    train = compose_train_with(*run_overrides(plan, plan.runs[0], list(cfg.preset.overrides), "cpu")[:-1])
    assert (train.dataset.user_core, train.dataset.item_core, train.dataset.max_len) == (0, 0, 50)
    assert train.eval.exclude_history is False


def compose_phase2(*overrides: str) -> DictConfig:
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
            return compose(config_name="phase2", overrides=list(overrides))
    finally:
        GlobalHydra.instance().clear()


@pytest.mark.parametrize(
    "preset, dataset, epochs, patience", [("study_cpu", "ml100k", 100, 5), ("study_cpu_sparse", "amazon_toys", 50, 3)]
)
def test_cpu_presets_plan_the_whole_study_the_same_way_for_both_datasets(
    tmp_path: Path, preset: str, dataset: str, epochs: int, patience: int
) -> None:
    from deepm3.phase2.plan import plan_seeds
    from deepm3.phase2.tune import tune_plan

    cfg = compose_phase2(f"preset={preset}", f"dataset={dataset}", f"results_dir={tmp_path}")
    plan = plan_from_config(cfg)
    models = {k: list(v) for k, v in cfg.preset.models.items()}
    timed = {"deepm3-euler", "deepm3-rk4", "deepm3-matched", "gru_dt", "tisasrec"}
    assert set(models) == timed | set(cfg.preset.time_blind)
    assert {"sasrec_large", "sasrec-matched", "deepm3-matched", "bert4rec", "pop"} <= set(models)
    assert "repeat" not in models
    assert plan_seeds(cfg) == [0, 1, 2, 3, 4] and list(cfg.preset.query_modes) == ["target", "last"]
    assert len(plan.runs) == 5 * (2 * len(timed) + len(cfg.preset.time_blind)) == 85
    assert set(cfg.preset.tune) == set(models) - {"pop"}  # every trained model, DeepM3 included ...
    assert {str(g) for g in cfg.preset.tune.values()} == {str({"optim.lr": [0.001, 0.003, 0.01]})}  # ... on one grid
    assert len(tune_plan(plan, models, cfg.preset.tune, 0).runs) == 33
    overrides = list(cfg.preset.overrides)
    assert f"trainer.max_epochs={epochs}" in overrides and "eval.mode=sampled" in overrides
    assert f"callbacks.early_stopping.patience={patience}" in overrides
    assert "shuffled" in cfg.preset.sensitivity.factors.gaps and cfg.preset.estimate_seconds > 0
    assert set(cfg.preset.tune_prior) == {"deepm3-euler", "deepm3-rk4", "deepm3-matched"}  # the flow, chosen among 4
    assert dict(cfg.preset.cross_checks) == {"ml100k": "results/peer/ml100k"}


@pytest.mark.parametrize(
    "preset, dataset, epochs, folder, extensions",
    [("study_cpu", "ml100k", 100, "ml100k", 3), ("study_cpu_sparse_v1", "amazon_toys", 8, "amazon_toys", 0)],
)
def test_the_presets_are_those_the_committed_studies_ran(
    tmp_path: Path, preset: str, dataset: str, epochs: int, folder: str, extensions: int
) -> None:
    """``verify`` of results/ml100k and results/amazon_toys needs the plan they were trained with
    (ML-100k was re-run with ``study_cpu``, whose grid grew past the edges its winners sat on;
    Toys' committed study is still the frozen one, without extensions)."""
    from deepm3.phase2.tune import tune_plan

    repo = Path(__file__).resolve().parents[1]
    cfg = compose_phase2(f"preset={preset}", f"dataset={dataset}", f"results_dir={repo / 'results'}")
    plan = plan_from_config(cfg)
    models = {k: list(v) for k, v in cfg.preset.models.items()}
    assert f"trainer.max_epochs={epochs}" in list(cfg.preset.overrides)
    assert {spec.directory.name for spec in plan.runs} == {
        p.name
        for p in (repo / "results" / folder / "runs").glob("*-seed*")
        if not p.name.startswith(("tune-", "sens-"))
    }
    grid = {spec.directory.name for spec in tune_plan(plan, models, cfg.preset.tune, 0, max_extensions=extensions).runs}
    assert grid == {p.name for p in (repo / "results" / folder / "runs").glob("tune-*")}


def test_make_amazon_composes_the_identical_study_on_amazon_books(tmp_path: Path) -> None:
    import shlex
    import subprocess

    repo = Path(__file__).resolve().parents[1]
    for preset in ("full", "study_cpu_sparse"):
        done = subprocess.run(  # ARGS= and no MAKEFLAGS: under `make test ARGS=...` both would leak in
            ["make", "-n", "amazon", f"PRESET={preset}", "DEVICE=cpu", "ARGS="],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=60,
            env={k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")},
        )
        assert done.returncode == 0, done.stderr
        line = next(line for line in done.stdout.splitlines() if "-m deepm3.phase2 " in line)
        args = shlex.split(line.split("-m deepm3.phase2 ", 1)[1])
        assert args[:2] == ["dataset=amazon_books", f"preset={preset}"]
        books = plan_from_config(compose_phase2(*args, f"results_dir={tmp_path}"))
        toys = plan_from_config(compose_phase2("dataset=amazon_toys", f"preset={preset}", f"results_dir={tmp_path}"))
        assert books.dataset == "amazon_books" and [r.name for r in books.runs] == [r.name for r in toys.runs]
