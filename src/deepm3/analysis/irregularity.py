"""Does the reference model gain most where timing is irregular? (docs/experiments.md, "Irregularity")

Users are grouped by the coefficient of variation (std / mean) of their training gaps, the
``gap_cv`` column of the per-user rows: CV 0 is a metronome, CV 1 a Poisson process, CV > 1
bursts and pauses.

**Tertiles.** Edges are the 1/3 and 2/3 quantiles of the defined CVs (numpy's linear
interpolation); a CV on an edge goes to the lower group, so tied CVs never straddle groups.
**Undefined CV** (NaN: fewer than two training gaps, or every gap 0 -- all events tied) is
its own group, ``undefined``: such users have no rhythm to be irregular in, and putting them
in ``low`` would mix "no time information" with "regular". Every table also has ``all``.

**Lift.** ``mean(reference) / mean(baseline) - 1`` of the seed-averaged per-user metric in a
group; the 95% CI is the percentile interval of a paired bootstrap over the group's users
(the same resampled users for both models), seeded. Lift is NaN where the baseline's mean
is 0; bootstrap replicates with a zero baseline mean are left out of the interval.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from deepm3.analysis.per_user import check_rows, model_order, seed_average
from deepm3.errors import DataError

TERTILES = ("low", "mid", "high")
UNDEFINED = "undefined"
ALL = "all"
GROUP_ORDER = (*TERTILES, UNDEFINED, ALL)
BOOTSTRAP_CELLS = 5_000_000  # resampled values held in memory at once


@dataclass(frozen=True)
class Lift:
    """Relative lift of the reference over a baseline, with its bootstrap interval."""

    value: float
    ci_low: float
    ci_high: float
    n_users: int


def cv_tertiles(gap_cv: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
    """Group label per user (low / mid / high / undefined) and the two CV edges."""
    cv = np.asarray(gap_cv, dtype=float)
    defined = ~np.isnan(cv)
    if not defined.any():
        return np.full(len(cv), UNDEFINED, dtype=object), (float("nan"), float("nan"))
    low_edge, high_edge = np.quantile(cv[defined], [1 / 3, 2 / 3])
    labels = np.select([~defined, cv <= low_edge, cv <= high_edge], [UNDEFINED, "low", "mid"], default="high")
    return labels.astype(object), (float(low_edge), float(high_edge))


def user_groups(rows: pd.DataFrame) -> pd.Series:
    """Each user's CV group (index = user), from the ``gap_cv`` column shared by all runs."""
    check_rows(rows, ["gap_cv"])
    cvs = rows.groupby("user")["gap_cv"]
    defined, runs = cvs.count(), cvs.size()
    differs = ((defined > 0) & (defined < runs)) | ~np.isclose(cvs.min(), cvs.max(), rtol=1e-9, atol=0, equal_nan=True)
    if differs.any():
        raise DataError(f"per-user rows: user {differs.idxmax()!r} has different gap_cv values in different runs")
    first = cvs.first()  # the first defined value; NaN when the CV is undefined in every run
    labels, _ = cv_tertiles(first.to_numpy())
    return pd.Series(labels, index=first.index, name="group")


def tertile_metrics(rows: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """Per group and model: users, and each metric's mean and std over seeds.

    A seed's group value is the mean over the group's users; the reported mean is the mean of
    those over seeds (= the mean of the seed-averaged per-user values), std its spread.
    """
    check_rows(rows, [*metrics, "gap_cv"])
    groups = user_groups(rows)
    labelled = rows.assign(group=rows["user"].map(groups))
    labelled = pd.concat([labelled, labelled.assign(group=ALL)], ignore_index=True)
    per_seed = labelled.groupby(["group", "model", "seed"])[list(metrics)].mean()
    summary = per_seed.groupby(["group", "model"]).agg(["mean", "std"])
    summary.columns = [f"{metric}_{stat}" if stat == "std" else metric for metric, stat in summary.columns]
    users = labelled.groupby(["group", "model"])["user"].nunique().rename("n_users")
    out = pd.concat([users, summary], axis=1).reset_index()
    return _sort_groups(out, ["group", "model"])


def bootstrap_lift(
    reference: np.ndarray, baseline: np.ndarray, n_boot: int = 1000, seed: int = 0, confidence: float = 0.95
) -> Lift:
    """``mean(reference) / mean(baseline) - 1`` with a paired percentile bootstrap interval."""
    reference, baseline = np.asarray(reference, dtype=float), np.asarray(baseline, dtype=float)
    if reference.shape != baseline.shape or reference.ndim != 1:
        raise ValueError(f"paired arrays must be 1-D of equal length, got {reference.shape} and {baseline.shape}")
    n = len(reference)
    if n == 0:
        return Lift(float("nan"), float("nan"), float("nan"), 0)
    rng = np.random.default_rng(seed)
    replicates = []
    chunk = max(1, BOOTSTRAP_CELLS // n)
    for start in range(0, n_boot, chunk):
        idx = rng.integers(0, n, size=(min(chunk, n_boot - start), n))
        replicates.append(_lift(reference[idx].mean(axis=1), baseline[idx].mean(axis=1)))
    values = np.concatenate(replicates)
    values = values[np.isfinite(values)]
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail]) if len(values) else (float("nan"),) * 2
    return Lift(float(_lift(reference.mean(), baseline.mean())), float(low), float(high), n)


def tertile_lifts(
    rows: pd.DataFrame,
    reference: str,
    metric: str = "ndcg@10",
    baselines: Iterable[str] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """One row per (baseline, group): the reference's lift on seed-averaged ``metric``, with CI."""
    table = seed_average(rows, metric)
    groups = user_groups(rows).reindex(table.index)
    records = []
    for baseline in model_order(rows, reference, baselines):
        for group in GROUP_ORDER:
            members = np.ones(len(table), dtype=bool) if group == ALL else (groups == group).to_numpy()
            if not members.any():
                continue
            lift = bootstrap_lift(
                table.loc[members, reference].to_numpy(),
                table.loc[members, baseline].to_numpy(),
                n_boot,
                seed,
                confidence,
            )
            records.append(
                {
                    "reference": reference,
                    "baseline": baseline,
                    "group": group,
                    "metric": metric,
                    "lift": lift.value,
                    "ci_low": lift.ci_low,
                    "ci_high": lift.ci_high,
                    "n_users": lift.n_users,
                }
            )
    return pd.DataFrame.from_records(records)


def _lift(reference_mean: np.ndarray | float, baseline_mean: np.ndarray | float) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(np.asarray(baseline_mean) == 0, np.nan, np.asarray(reference_mean) / baseline_mean - 1)


def _sort_groups(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    order = {group: i for i, group in enumerate(GROUP_ORDER)}
    ordered = frame.sort_values(keys, key=lambda col: col.map(order) if col.name == "group" else col)
    return ordered.reset_index(drop=True)
