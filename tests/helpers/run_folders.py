"""Finished runs written by hand: the files a phase-2 study reads, with values a test chose."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd


def write_run_folder(directory: Path, per_user: dict[str, float], test: dict[str, float], *,
                     metric: str = "ndcg@10", num_params: int = 100, train_seconds: float = 1.0) -> None:
    """``test_users.csv`` (one row per user, in the given order) and ``metrics.json`` (which marks
    the run complete) in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"user": list(per_user), metric: list(per_user.values())}).to_csv(
        directory / "test_users.csv", index=False)
    metrics = {"test": test, "num_params": num_params, "train_seconds": train_seconds,
               "seconds_per_epoch": train_seconds, "epochs": 1}
    (directory / "metrics.json").write_text(json.dumps(metrics))
