"""Per-user test rows of many runs: the one input of the significance and irregularity studies.

A table has one row per ``(model, seed, user)``: ``train.py``'s ``test_users.csv`` (user,
history_length, gap_cv, rank, hr@K, ndcg@K, mrr@K) with ``model`` and ``seed`` columns
added. The *user* is the unit of every paired analysis, so each user's metric is first
averaged over the seeds of a model: seeds re-train the model, they do not add users.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from deepm3.errors import DataError

KEY_COLUMNS = ("model", "seed", "user")


def check_rows(rows: pd.DataFrame, columns: Iterable[str], source: str = "per-user rows") -> None:
    """Raise :class:`DataError` unless the key and ``columns`` are there, keys are unique and
    every model's seeds cover the same users (a missing user would silently bias a mean)."""
    needed = [*KEY_COLUMNS, *columns]
    missing = [c for c in needed if c not in rows.columns]
    if missing:
        raise DataError(f"{source}: missing column(s) {missing}; expected {needed}")
    if rows.empty:
        raise DataError(f"{source}: no rows")
    duplicated = rows.duplicated(list(KEY_COLUMNS))
    if duplicated.any():
        key = rows.loc[duplicated, list(KEY_COLUMNS)].iloc[0].tolist()
        raise DataError(f"{source}: (model, seed, user)={key} appears more than once")
    for model, group in rows.groupby("model", sort=True):
        per_user = group.groupby("user").size()
        if per_user.nunique() != 1:
            raise DataError(
                f"{source}: model {model!r} has seeds covering different users "
                f"({int((per_user < per_user.max()).sum())} users lack some seed)"
            )


def seed_average(rows: pd.DataFrame, metric: str, source: str = "per-user rows") -> pd.DataFrame:
    """``metric`` averaged over each model's seeds: index = user, one column per model.

    Every model must cover the same users: paired tests compare the same people.
    """
    check_rows(rows, [metric], source)
    if rows[metric].isna().any():
        raise DataError(f"{source}: column {metric!r} has missing values")
    table = rows.groupby(["user", "model"])[metric].mean().unstack("model")
    for model in table.columns:
        absent = int(table[model].isna().sum())
        if absent:
            raise DataError(f"{source}: model {model!r} lacks {absent} of {len(table)} users present for other models")
    return table


def seed_counts(rows: pd.DataFrame) -> dict[str, int]:
    """Number of seeds behind each model's numbers (reported beside every comparison)."""
    return {str(model): int(n) for model, n in rows.groupby("model")["seed"].nunique().items()}


def model_order(rows: pd.DataFrame, reference: str, baselines: Iterable[str] | None) -> list[str]:
    """The baselines to compare the reference with: given ones (checked) or all other models."""
    models = set(rows["model"].unique())
    if reference not in models:
        raise DataError(f"per-user rows: reference model {reference!r} not found; models are {sorted(models)}")
    chosen = sorted(models - {reference}) if baselines is None else list(baselines)
    unknown = [b for b in chosen if b not in models]
    if unknown:
        raise DataError(f"per-user rows: baseline(s) {unknown} not found; models are {sorted(models)}")
    return chosen
