"""The study report names the runs that trained for their whole epoch budget."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from deepm3.phase2.plan import Plan, RunSpec
from deepm3.phase2.report import budget
from deepm3.run_dir import CONFIG_FILE, write_metrics


def finished(root: Path, model: str, seed: int, epochs: int, max_epochs: int) -> RunSpec:
    directory = root / f"{model}-seed{seed}"
    (directory / CONFIG_FILE).parent.mkdir(parents=True)
    OmegaConf.save(OmegaConf.create({"trainer": {"max_epochs": max_epochs}}), directory / CONFIG_FILE)
    write_metrics(directory, {"test": {}, "epochs": epochs})
    return RunSpec(model, seed, (), directory)


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
