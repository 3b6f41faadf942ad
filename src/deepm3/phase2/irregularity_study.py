"""Study 3, irregularity: users in gap-CV tertiles; every model's metrics per tertile and the
reference's lift over each model with a bootstrap 95% CI; a bar plot of the lifts; and the
seed-level test of each group (``irregularity_seeds``): the claims page needs both levels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from deepm3.analysis.irregularity import ALL, GROUP_ORDER, tertile_lifts, tertile_metrics, user_groups
from deepm3.analysis.significance import compare_seeds
from deepm3.phase2.plan import Plan
from deepm3.phase2.plots import figure, save_png
from deepm3.phase2.results import write_table
from deepm3.phase2.significance_study import reference_rows

METRICS = ["hr@10", "ndcg@10", "mrr@10"]
TERTILES_STEM = "irregularity_tertiles"
LIFTS_STEM = "irregularity_lifts"
SEEDS_STEM = "irregularity_seeds"
PLOT = "irregularity_lifts.png"


def write_irregularity(
    plan: Plan, out_dir: Path, reference: str, metric: str = "ndcg@10", n_boot: int = 1000, seed: int = 0
) -> list[Path]:
    rows = reference_rows(plan, reference)
    per_group = tertile_metrics(rows, METRICS)
    lifts = tertile_lifts(rows, reference, metric, n_boot=n_boot, seed=seed)
    written = write_table(
        per_group,
        out_dir,
        TERTILES_STEM,
        "Metrics per gap-CV tertile (mean over seeds of the group mean; std over seeds)",
    )
    written += write_table(
        lifts,
        out_dir,
        LIFTS_STEM,
        f"Lift of {reference} over each model on {metric} per tertile "
        "(mean ratio - 1, paired bootstrap 95% CI over users)",
    )
    written += write_table(
        group_seed_tests(rows, reference, metric),
        out_dir,
        SEEDS_STEM,
        f"Seed-level view per gap-CV tertile: {metric} of each group per training seed and a paired t-test "
        f"over the seeds both models ran ({reference} vs each model)",
        floatfmt=".4g",
    )
    written.append(save_png(lift_plot(lifts, reference, metric), out_dir / PLOT))
    return written


def group_seed_tests(rows: pd.DataFrame, reference: str, metric: str) -> pd.DataFrame:
    """:func:`compare_seeds` within each gap-CV group (a seed's value: the mean over the group's users)."""
    groups = rows["user"].map(user_groups(rows))
    frames = [
        compare_seeds(rows[groups == group], reference, metric).assign(group=group)
        for group in GROUP_ORDER
        if (groups == group).any()
    ]
    frames.append(compare_seeds(rows, reference, metric).assign(group=ALL))
    return pd.concat(frames, ignore_index=True)


def lift_plot(lifts, reference: str, metric: str):
    """Grouped bars: one group per tertile, one bar per baseline, CI whiskers."""
    fig, (ax,) = figure(width=6.5)
    groups = list(dict.fromkeys(lifts["group"]))
    baselines = list(dict.fromkeys(lifts["baseline"]))
    width = 0.8 / max(len(baselines), 1)
    for i, baseline in enumerate(baselines):
        mine = lifts[lifts["baseline"] == baseline].set_index("group").reindex(groups)
        x = np.arange(len(groups)) + (i - (len(baselines) - 1) / 2) * width
        value = mine["lift"].to_numpy(dtype=float)
        err = np.vstack([value - mine["ci_low"].to_numpy(dtype=float), mine["ci_high"].to_numpy(dtype=float) - value])
        ax.bar(x, np.nan_to_num(value), width, yerr=np.nan_to_num(np.abs(err)), capsize=3, label=baseline)
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xticks(np.arange(len(groups)), groups)
    ax.set_xlabel("gap-CV group")
    ax.set_ylabel(f"relative lift of {reference} on {metric}")
    ax.legend(fontsize=8)
    return fig
