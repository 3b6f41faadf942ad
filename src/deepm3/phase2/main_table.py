"""Study 1, the main table: HR/NDCG/MRR@5/10/20 as mean ± std over seeds, parameters and
training time per model; full ranking, and the sampled-mode numbers in their own table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from deepm3.metrics import metric_names
from deepm3.phase2.plan import Plan
from deepm3.phase2.results import run_metrics, write_table

STEM = "main_table"
SAMPLED_STEM = "main_table_sampled"


def summarise(runs: list[dict], prefix: str = "") -> pd.DataFrame:
    """One row per model: ``<metric>`` mean and ``<metric>_std`` over seeds, seeds, params, time."""
    records = []
    for model in dict.fromkeys(r["model"] for r in runs):
        mine = [r for r in runs if r["model"] == model]
        row = {"model": model, "seeds": len(mine),
               "params": int(np.median([r["num_params"] for r in mine])),
               "train_seconds": float(np.mean([r["train_seconds"] for r in mine]))}
        for name in metric_names():
            values = [r["test"][prefix + name] for r in mine if prefix + name in r["test"]]
            if not values:
                continue
            row[name] = float(np.mean(values))
            row[f"{name}_std"] = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
        records.append(row)
    return pd.DataFrame.from_records(records)


def display(table: pd.DataFrame) -> pd.DataFrame:
    """The people's version: ``mean ± std`` cells."""
    out = table[["model", "seeds", "params", "train_seconds"]].copy()
    out["train_seconds"] = [f"{t:.1f}" for t in table["train_seconds"]]  # text: the Markdown writer prints floats at 4 places
    for name in metric_names():
        if name in table:
            out[name] = [f"{m:.4f} ± {s:.4f}" for m, s in zip(table[name], table[f"{name}_std"])]
    return out


def write_main_table(plan: Plan, out_dir: Path) -> list[Path]:
    """``main_table.{csv,md}``, plus ``main_table_sampled.{csv,md}`` when runs used eval.mode=sampled."""
    runs = run_metrics(plan)
    if not runs:
        return []
    written = []
    full = summarise(runs)
    written += _write(full, out_dir, STEM, "Main table: full ranking (mean ± std over seeds)")
    if any(any(k.startswith("sampled_") for k in r["test"]) for r in runs):
        sampled = summarise([r for r in runs if any(k.startswith("sampled_") for k in r["test"])], "sampled_")
        written += _write(sampled, out_dir, SAMPLED_STEM,
                          "Sampled-mode metrics (target vs 100 sampled negatives; NOT comparable to full ranking)")
    return written


def _write(table: pd.DataFrame, out_dir: Path, stem: str, title: str) -> list[Path]:
    return write_table(table, out_dir, stem, title, shown=display(table))


if __name__ == "__main__":
    from deepm3.phase2.cli import run_stage

    run_stage("main_table")
