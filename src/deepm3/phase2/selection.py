"""Stage ``selection``: choose among DeepM3 variants on validation only, then test the winner.

A preset lists ``selection: {candidates: [labels], ablation: <label>}`` (e.g. the
between-events dynamics of DeepM3 under ``time.query=last``). Every candidate and baseline was
trained with the same tuning budget and seeds; the winner is the candidate with the best mean
validation ``monitor`` over its seeds -- test numbers play no part in the choice. Only then are
test numbers shown, and only for the winner, the ablation (DeepM3 without ODE) and the best
baseline (also chosen on validation), with paired significance of the winner against both.

Files: ``selection.{csv,md}`` (validation, every candidate and baseline), ``selected.json``,
``selection_test.{csv,md}`` and ``selection_significance.{csv,md}``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from deepm3.analysis.significance import compare_to_reference
from deepm3.errors import ConfigError, DataError
from deepm3.io import write_json
from deepm3.phase2.main_table import display, summarise
from deepm3.phase2.plan import Plan
from deepm3.phase2.results import run_metrics, user_rows, write_table

STEM = "selection"


def validation_table(runs: list[dict[str, Any]], candidates: Sequence[str], monitor: str) -> pd.DataFrame:
    """One row per model: mean and std over seeds of its best validation ``monitor``."""
    records = []
    for model in dict.fromkeys(r["model"] for r in runs):
        values = [r["best_val"].get(monitor) for r in runs if r["model"] == model]
        values = [float(v) for v in values if v is not None]
        if not values:
            continue
        records.append(
            {
                "model": model,
                "role": "candidate" if model in candidates else "other",
                "seeds": len(values),
                f"{monitor}_mean": float(np.mean(values)),
                f"{monitor}_std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
            }
        )
    return pd.DataFrame.from_records(records)


def choose(table: pd.DataFrame, candidates: Sequence[str], ablation: str | None, monitor: str) -> dict[str, str]:
    """The winning candidate and the best other model (not the ablation), by mean validation score."""
    score = f"{monitor}_mean"
    pool = table[table["model"].isin(candidates)]
    if pool.empty:
        raise DataError(f"phase2 selection: no complete run of the candidates {list(candidates)}")
    others = table[~table["model"].isin([*candidates, ablation])]
    chosen = {"winner": str(pool.loc[pool[score].idxmax(), "model"])}  # ties: the first in preset order
    if not others.empty:
        chosen["best_baseline"] = str(others.loc[others[score].idxmax(), "model"])
    if ablation is not None and ablation in set(table["model"]):
        chosen["ablation"] = ablation
    return chosen


def write_selection(
    plan: Plan,
    out_dir: Path,
    selection: Mapping[str, Any] | None,
    metric: str = "ndcg@10",
    monitor: str = "val/ndcg@10",
) -> list[Path]:
    """The selection files (nothing when the preset has no ``selection``)."""
    if not selection:
        return []
    candidates = [str(c) for c in selection.get("candidates") or []]
    if not candidates:
        raise ConfigError("phase2: preset.selection.candidates is empty; expected the labels to choose among")
    ablation = selection.get("ablation")
    runs = run_metrics(plan)
    table = validation_table(runs, candidates, monitor)
    chosen = choose(table, candidates, None if ablation is None else str(ablation), monitor)
    table["selected"] = table["model"] == chosen["winner"]
    written = write_table(
        table,
        out_dir,
        STEM,
        f"Selection on validation ({monitor}, mean ± std over seeds); "
        f"winner: {chosen['winner']} (test numbers not used)",
        floatfmt=".4f",
    )
    written.append(
        write_json(
            out_dir / "selected.json",
            {
                **chosen,
                "monitor": monitor,
                "overrides": next((list(s.overrides) for s in plan.runs if s.model == chosen["winner"]), []),
            },
        )
    )
    shown = [chosen[k] for k in ("winner", "ablation", "best_baseline") if k in chosen]
    test = summarise([r for r in runs if r["model"] in shown])
    written += write_table(
        test,
        out_dir,
        f"{STEM}_test",
        "Test metrics of the selected models only (winner, ablation, best baseline on validation)",
        shown=display(test),
    )
    rest = [m for m in shown[1:]]
    if rest:
        rows = user_rows(plan)
        significance = compare_to_reference(rows[rows["model"].isin(shown)], chosen["winner"], metric, rest)
        written += write_table(
            significance,
            out_dir,
            f"{STEM}_significance",
            f"Significance: {chosen['winner']} vs the ablation and the best baseline on per-user "
            f"{metric} (seed-averaged; paired t-test and Wilcoxon, Holm over these two)",
            floatfmt=".4g",
        )
    return written
