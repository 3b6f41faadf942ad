"""Finished runs written by hand: the files a phase-2 study reads, with values a test chose."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from deepm3.run_dir import write_metrics, write_user_rows


def write_run_folder(
    directory: Path,
    per_user: dict[str, float],
    test: dict[str, float],
    *,
    metric: str = "ndcg@10",
    num_params: int = 100,
    train_seconds: float = 1.0,
) -> None:
    """``test_users.csv`` (one row per user, in the given order) and ``metrics.json`` (which marks
    the run complete) in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    write_user_rows(directory, pd.DataFrame({"user": list(per_user), metric: list(per_user.values())}))
    write_metrics(
        directory,
        {
            "test": test,
            "num_params": num_params,
            "train_seconds": train_seconds,
            "seconds_per_epoch": train_seconds,
            "epochs": 1,
        },
    )


def fake_training(
    monkeypatch, fail: set[str] = frozenset(), during: Callable[[Path], None] | None = None, seconds: float = 5.0
) -> list[str]:
    """``train_all`` with its ``run`` replaced by one that writes ``metrics.json`` (or raises for
    the folder names in ``fail``; ``during`` runs first, as if another process acted meanwhile).
    Returns the folder names trained, in order."""
    import deepm3.phase2.train_all as train_all_module

    trained: list[str] = []

    def fake_run(cfg: object, output_dir: Path, overrides: list[str]) -> dict:
        if during is not None:
            during(Path(output_dir))
        if Path(output_dir).name in fail:
            raise RuntimeError("boom")
        write_metrics(output_dir, {"train_seconds": seconds, "test": {}})
        trained.append(Path(output_dir).name)
        return {}

    monkeypatch.setattr(train_all_module, "run", fake_run)
    monkeypatch.setattr(train_all_module, "compose_run", lambda overrides: None)
    return trained
