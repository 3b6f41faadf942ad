"""The study report names the runs that trained for their whole epoch budget, and ``budget.csv``
counts them per model for the claims page (at most 10% at the cap, exactly 10% passing)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

from deepm3.phase2.budget import CAPPED, CONVERGED, EXEMPT, RULE, UNKNOWN, budget_table, write_budget
from deepm3.phase2.plan import Plan, RunSpec
from deepm3.phase2.report import budget
from deepm3.run_dir import CONFIG_FILE, write_metrics


def finished(root: Path, label: str, seed: int, epochs: int, max_epochs: int, model: str = "sasrec") -> RunSpec:
    """A complete run folder of ``label`` that trained ``epochs`` epochs under ``trainer.max_epochs``."""
    directory = root / f"{label}-seed{seed}"
    (directory / CONFIG_FILE).parent.mkdir(parents=True)
    OmegaConf.save(OmegaConf.create({"trainer": {"max_epochs": max_epochs}}), directory / CONFIG_FILE)
    write_metrics(directory, {"test": {}, "epochs": epochs, "model": model})
    return RunSpec(label, seed, (), directory)


def test_runs_at_their_epoch_budget_are_listed_per_model(tmp_path: Path) -> None:
    runs = (
        finished(tmp_path, "sasrec", 0, 20, 20),
        finished(tmp_path, "sasrec", 1, 12, 20),
        finished(tmp_path, "gru4rec", 0, 9, 20),
    )
    lines = budget(Plan("ml100k", tmp_path, runs))
    assert "| sasrec | 1: seed 0 | 2 |" in lines
    assert not any(line.startswith("| gru4rec") for line in lines)


def test_a_study_stopped_early_everywhere_says_so(tmp_path: Path) -> None:
    runs = (finished(tmp_path, "sasrec", 0, 7, 20),)
    assert budget(Plan("ml100k", tmp_path, runs))[0].startswith("Every run was ended by early stopping")


def test_a_one_epoch_budget_is_not_a_cap(tmp_path: Path) -> None:
    """Popularity trains one epoch by design."""
    runs = (finished(tmp_path, "pop", 0, 1, 1),)
    assert budget(Plan("ml100k", tmp_path, runs))[0].startswith("Every run was ended by early stopping")


# -- budget.{csv,md}: the per-model table the claims page reads ----------------------------------


def table_of(*runs: RunSpec) -> pd.DataFrame:
    return budget_table(Plan("ml100k", Path("."), runs)).set_index("model")


def test_the_budget_table_counts_each_models_trained_runs_at_the_cap(tmp_path: Path) -> None:
    table = table_of(
        finished(tmp_path, "sasrec", 0, 20, 20),
        finished(tmp_path, "sasrec", 1, 12, 20),
        finished(tmp_path, "gru4rec", 0, 9, 20),
    )
    assert table.loc["sasrec", ["trained_runs", "at_cap", "max_epochs"]].tolist() == [2, 1, "20"]
    assert table.loc["sasrec", "at_cap_share"] == 0.5 and table.loc["sasrec", "status"] == CAPPED
    assert table.loc["gru4rec", "status"] == CONVERGED


def test_one_run_in_ten_at_the_cap_is_still_converged(tmp_path: Path) -> None:
    """The rule's boundary: at most 10% at the cap passes, so exactly 10% does."""
    runs = [finished(tmp_path, "sasrec", seed, 20 if seed == 0 else 11, 20) for seed in range(10)]
    assert table_of(*runs).loc["sasrec", "status"] == CONVERGED


@pytest.mark.parametrize("model", ["pop", "repeat", "decayed_repeat"])
def test_models_with_nothing_to_train_are_exempt_whatever_their_cap(tmp_path: Path, model: str) -> None:
    table = table_of(finished(tmp_path, model, 0, 20, 20, model=model))
    assert table.loc[model, ["status", "trained_runs"]].tolist() == [EXEMPT, 0]


def test_a_run_whose_config_gives_one_epoch_is_exempt(tmp_path: Path) -> None:
    assert table_of(finished(tmp_path, "other", 0, 1, 1)).loc["other", "status"] == EXEMPT


def test_the_cap_is_read_from_the_recorded_command_when_the_config_is_gone(tmp_path: Path) -> None:
    spec = finished(tmp_path, "sasrec", 0, 8, 20)
    (spec.directory / CONFIG_FILE).unlink()
    command = "python -m deepm3.train model=sasrec trainer.max_epochs=20 trainer.max_epochs=8"
    write_metrics(spec.directory, {"test": {}, "epochs": 8, "provenance": {"command": command}})
    assert table_of(spec).loc["sasrec", ["max_epochs", "status"]].tolist() == ["8", CAPPED]  # the last one wins


def test_a_run_with_no_cap_recorded_anywhere_leaves_its_model_unknown(tmp_path: Path) -> None:
    spec = finished(tmp_path, "sasrec", 0, 8, 20)
    (spec.directory / CONFIG_FILE).unlink()
    assert table_of(spec).loc["sasrec", "status"] == UNKNOWN


def test_write_budget_writes_the_csv_and_a_markdown_table_naming_the_rule(tmp_path: Path) -> None:
    runs = (finished(tmp_path / "runs", "sasrec", 0, 20, 20),)
    written = write_budget(Plan("ml100k", tmp_path, runs), tmp_path / "out")
    assert [p.name for p in written] == ["budget.csv", "budget.md"]
    assert RULE in (tmp_path / "out" / "budget.md").read_text()
    assert pd.read_csv(tmp_path / "out" / "budget.csv")["status"].tolist() == [CAPPED]
