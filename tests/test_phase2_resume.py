"""A run folder is complete for a plan only when the run in it trained what the plan asks for;
tables come from the runs of one plan; the smoke preset never writes into the committed results/."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import DictConfig, open_dict

import deepm3.phase2.train_all as train_all_module
from deepm3.errors import ConfigError
from deepm3.phase2.pipeline import run_phase2
from deepm3.phase2.plan import Plan, RunSpec, make_plan, plan_from_config
from deepm3.phase2.train_all import compose_run, run_overrides, train_all
from deepm3.run.identity import training_key
from deepm3.run_dir import read_metrics, save_config, write_metrics
from tests.helpers.config import compose
from tests.helpers.run_folders import write_run_folder
from tests.helpers.tiny_study import phase2_config

REPO = Path(__file__).resolve().parents[1]
PLANNED = ["trainer.max_epochs=3"]  # the shared overrides of the plan under test
OTHER = ["trainer.max_epochs=20"]  # ... and of the study that left its runs in the same folder


def finished_run(directory: Path, overrides: list[str]) -> None:
    """What training leaves for the checks: the composed config and a metrics.json with its key."""
    cfg = compose_run(overrides)
    directory.mkdir(parents=True, exist_ok=True)
    save_config(directory, cfg)
    write_metrics(directory, {"training_key": training_key(cfg), "train_seconds": 1.0, "test": {}})


@pytest.fixture
def trained(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """``train_all``'s ``run`` replaced by :func:`finished_run`'s files; the folder names trained."""
    names: list[str] = []

    def fake_run(cfg: object, output_dir: Path, overrides: list[str]) -> dict:
        finished_run(Path(output_dir), overrides)
        names.append(Path(output_dir).name)
        return {}

    monkeypatch.setattr(train_all_module, "run", fake_run)
    return names


def one_run_plan(root: Path) -> tuple[Plan, RunSpec]:
    plan = make_plan("ml100k", {"pop": ["model=pop"]}, [0], root)
    return plan, plan.runs[0]


def test_a_folder_holding_a_run_of_another_config_stops_training_before_any_run(
    tmp_path: Path, trained: list[str]
) -> None:
    plan, spec = one_run_plan(tmp_path)
    finished_run(spec.directory, run_overrides(plan, spec, OTHER, "cpu"))
    with pytest.raises(ConfigError) as error:
        train_all(plan, PLANNED, "cpu", bar=False)
    line = str(error.value)
    assert "\n" not in line
    assert f"{spec.directory} holds a complete run of another config" in line
    assert "trainer.max_epochs=20 there, 3 in this plan" in line
    assert "results_dir=" in line and "overwrite=true" in line
    assert trained == []


def test_a_complete_run_of_the_planned_config_is_skipped(tmp_path: Path, trained: list[str]) -> None:
    plan, spec = one_run_plan(tmp_path)
    finished_run(spec.directory, run_overrides(plan, spec, PLANNED, "cpu"))
    summary = train_all(plan, PLANNED, "cpu", bar=False)
    assert trained == [] and summary.skipped == [spec.name]


def test_overwrite_retrains_a_run_of_another_config_in_place(tmp_path: Path, trained: list[str]) -> None:
    plan, spec = one_run_plan(tmp_path)
    finished_run(spec.directory, run_overrides(plan, spec, OTHER, "cpu"))
    (spec.directory / "checkpoints").mkdir()
    (spec.directory / "checkpoints" / "best-old.ckpt").write_text("the replaced run's weights")
    train_all(plan, PLANNED, "cpu", bar=False, overwrite=True)
    assert trained == [spec.name]
    assert not (spec.directory / "checkpoints" / "best-old.ckpt").exists()
    planned = training_key(compose_run(run_overrides(plan, spec, PLANNED, "cpu")))
    assert read_metrics(spec.directory)["training_key"] == planned


def test_a_run_of_another_config_is_not_copied_as_the_same_run(tmp_path: Path, trained: list[str]) -> None:
    plan, spec = one_run_plan(tmp_path)
    source = tmp_path / "ml100k" / "runs" / "tune-pop-0-seed0"
    finished_run(source, run_overrides(plan, spec, OTHER, "cpu"))
    same = tuple(run_overrides(plan, spec, PLANNED, "cpu")[:-1])  # what same_run_key makes of it
    train_all(plan, PLANNED, "cpu", {same: source}, bar=False)
    assert trained == [spec.name]
    assert "reused_from" not in read_metrics(spec.directory)


def test_a_hand_written_run_without_a_recorded_config_counts_as_complete(tmp_path: Path, trained: list[str]) -> None:
    plan, spec = one_run_plan(tmp_path)
    write_run_folder(spec.directory, {"u1": 0.5}, {"ndcg@10": 0.5})
    assert train_all(plan, PLANNED, "cpu", bar=False).skipped == [spec.name]


def tiny_study(tmp_path: Path, *overrides: str) -> tuple[DictConfig, Plan, RunSpec, list[str]]:
    """A one-run tiny study (pop, seed 0) in ``tmp_path``: its config, plan, run and shared overrides."""
    cfg = phase2_config(tmp_path / "results", tmp_path / "data", "seeds=[0]", *overrides, models={"pop": ["model=pop"]})
    plan = plan_from_config(cfg)
    shared = [*cfg.dataset_overrides, *cfg.preset.get("overrides", []), *cfg.train_overrides]
    return cfg, plan, plan.runs[0], shared


def recorded_run(spec: RunSpec, overrides: list[str], drop: str | None = None) -> None:
    """A finished run with test rows (the main table reads them) and the config ``overrides``
    compose, without the setting ``drop`` (a run trained before that setting existed)."""
    write_run_folder(spec.directory, {"u1": 0.5, "u2": 0.25}, {"ndcg@10": 0.375})
    cfg = compose_run(overrides)
    if drop is not None:
        section, key = drop.rsplit(".", 1)
        with open_dict(cfg):
            del cfg[section][key]
    save_config(spec.directory, cfg)
    write_metrics(spec.directory, {**read_metrics(spec.directory), "training_key": training_key(cfg)})


def test_tables_refuse_a_run_of_another_preset_in_the_plans_folder(tmp_path: Path) -> None:
    cfg, plan, spec, shared = tiny_study(tmp_path, "studies=[main_table]")
    recorded_run(spec, [*run_overrides(plan, spec, shared, "cpu"), "trainer.max_epochs=7"])
    with pytest.raises(ConfigError, match=r"phase2 tables: .*pop-seed0 holds a complete run of another config"):
        run_phase2(cfg)
    assert not (plan.dataset_dir / "main_table.md").exists()


def test_tables_are_rebuilt_from_runs_trained_before_a_setting_was_added(tmp_path: Path) -> None:
    cfg, plan, spec, shared = tiny_study(tmp_path, "studies=[main_table]")
    recorded_run(spec, run_overrides(plan, spec, shared, "cpu"), drop="trainer.deterministic")
    run_phase2(cfg)
    assert (plan.dataset_dir / "main_table.md").is_file()


def test_tables_are_rebuilt_from_runs_trained_on_another_device(tmp_path: Path) -> None:
    cfg, plan, spec, shared = tiny_study(tmp_path, "studies=[main_table]")
    recorded_run(spec, [*run_overrides(plan, spec, shared, "cpu"), "trainer.accelerator=gpu"])
    run_phase2(cfg)
    assert (plan.dataset_dir / "main_table.md").is_file()


def test_the_smoke_preset_writes_under_outputs_not_the_committed_results() -> None:
    results = plan_from_config(compose("phase2", ["preset=smoke", "dataset=ml100k"])).results_dir
    assert results == Path(os.environ["DEEPM3_OUTPUT_DIR"]) / "phase2" / "smoke"
    assert not results.resolve().is_relative_to(REPO / "results")


def test_a_study_preset_still_writes_into_results() -> None:
    assert plan_from_config(compose("phase2", ["preset=study_cpu", "dataset=ml100k"])).results_dir == Path("results")


def test_the_smoke_preset_trains_and_writes_its_tables_under_outputs(tmp_path: Path) -> None:
    cfg = phase2_config(
        None,
        tmp_path / "data",
        "preset=smoke",
        "studies=[train,main_table]",
        "seeds=[0]",
        models={"pop": ["model=pop"]},
    )
    outcome = run_phase2(cfg)
    assert outcome["train"].trained == ["pop-seed0"]
    written = [path for paths in outcome["written"].values() for path in paths]
    assert written and all(Path(p).resolve().is_relative_to(Path(os.environ["DEEPM3_OUTPUT_DIR"])) for p in written)


def test_the_smoke_preset_from_a_checkout_leaves_its_results_folder_as_committed(tmp_path: Path) -> None:
    """``make phase2 PRESET=smoke`` in a clone (here: a checkout with a committed results/, its
    report stage only) writes to outputs/phase2/smoke/ and leaves git status of results/ clean."""
    checkout = tmp_path / "checkout"
    (checkout / "results" / "synthetic").mkdir(parents=True)
    (checkout / "results" / "synthetic" / "README.md").write_text("the committed study\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(checkout)]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "results"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "committed study"], check=True)
    env = {k: v for k, v in os.environ.items() if k != "DEEPM3_OUTPUT_DIR"}  # the default, relative outputs/
    cmd = [sys.executable, "-m", "deepm3.phase2", "preset=smoke", "dataset=synthetic", "seeds=[2]", "studies=[report]"]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=checkout, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (checkout / "outputs" / "phase2" / "smoke" / "synthetic" / "README.md").is_file()
    status = subprocess.run([*git, "status", "--porcelain", "--", "results"], capture_output=True, text=True)
    assert status.stdout == ""


def test_a_run_trained_before_a_setting_existed_is_resumed_not_refused(tmp_path: Path, trained: list[str]) -> None:
    """A setting added to the config later (here: the dataset's split options) keeps the old
    behaviour at its default, so the older run still counts as this plan's."""
    plan, spec = one_run_plan(tmp_path)
    overrides = run_overrides(plan, spec, PLANNED, "cpu")
    cfg = compose_run(overrides)
    with open_dict(cfg):
        for key in ("split", "val_share", "test_share"):
            del cfg.dataset[key]
    spec.directory.mkdir(parents=True)
    save_config(spec.directory, cfg)
    write_metrics(spec.directory, {"training_key": training_key(cfg), "train_seconds": 1.0, "test": {}})
    summary = train_all(plan, PLANNED, "cpu", bar=False)
    assert trained == [] and summary.skipped == [spec.name]
