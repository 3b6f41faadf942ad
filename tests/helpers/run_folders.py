"""Finished runs written by hand: the files a phase-2 study reads, with values a test chose."""

from __future__ import annotations

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
