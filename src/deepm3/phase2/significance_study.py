"""Study 2, significance: the reference DeepM3 run against every other model on per-user
NDCG@10 (seed-averaged), paired t-test and Wilcoxon, Holm-corrected, with effect sizes."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from deepm3.analysis.significance import compare_seeds, compare_to_reference
from deepm3.errors import DataError
from deepm3.phase2.plan import Plan
from deepm3.phase2.results import user_rows, write_table

STEM = "significance"
SHOWN = [
    "reference",
    "baseline",
    "metric",
    "n_users",
    "reference_mean",
    "baseline_mean",
    "mean_difference",
    "cohens_dz",
    "rank_biserial",
    "t_pvalue",
    "t_pvalue_holm",
    "wilcoxon_pvalue",
    "wilcoxon_pvalue_holm",
]


def reference_rows(plan: Plan, reference: str) -> pd.DataFrame:
    """Per-user rows of the complete runs; a clear error if the reference has none."""
    rows = user_rows(plan)
    if rows.empty or reference not in set(rows["model"]):
        raise DataError(
            f"phase2: reference model {reference!r} has no complete run in {plan.dataset_dir}; "
            "the comparison studies need it"
        )
    return rows


def write_significance(
    plan: Plan,
    out_dir: Path,
    reference: str,
    metric: str = "ndcg@10",
    extra_references: Sequence[str] = (),
    mode: str | None = None,
    suffix: str = "",
) -> list[Path]:
    """``significance<suffix>.{csv,md}`` for ``reference``, and ``significance_<ref><suffix>.{csv,md}``
    for each extra reference (e.g. a shuffled-gap twin against the others); each with its
    seed-level ``_seeds`` table. ``mode`` (a ``time.query`` value) is named in the titles."""
    written = _write_one(plan, out_dir, reference, metric, STEM + suffix, mode)
    for extra in extra_references:
        if extra != reference:
            written += _write_one(plan, out_dir, extra, metric, f"{STEM}_{extra}{suffix}", mode)
    return written


def _write_one(
    plan: Plan, out_dir: Path, reference: str, metric: str, stem: str, mode: str | None = None
) -> list[Path]:
    rows = reference_rows(plan, reference)
    table = compare_to_reference(rows, reference, metric)
    shown = table[[c for c in SHOWN if c in table.columns]]
    where = f" (time.query={mode})" if mode else ""
    title = (
        f"Significance{where}: {reference} vs each model on per-user {metric}. The unit is the user: each "
        "user's score is first averaged over the model's seeds, then paired t-test and Wilcoxon "
        "(zero_method=pratt), Holm-Bonferroni over the baselines"
    )
    written = write_table(table, out_dir, stem, title, shown=shown, floatfmt=".4g")
    seeds = compare_seeds(rows, reference, metric)
    seeds_title = (
        f"Seed-level view{where}: {metric} per training seed (mean ± std over seeds) and a paired t-test "
        f"over the seeds both models ran ({reference} vs each model)"
    )
    return written + write_table(seeds, out_dir, f"{stem}_seeds", seeds_title, floatfmt=".4g")
