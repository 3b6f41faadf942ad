"""Study 1, the main table: HR/NDCG/MRR@5/10/20 as mean ± std over seeds, parameters and
training time per model; full ranking, and the sampled-mode numbers in their own table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from deepm3.errors import DataError
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
        row = {
            "model": model,
            "seeds": len(mine),
            "params": int(np.median([r["num_params"] for r in mine])),
            "train_seconds": float(np.mean([r["train_seconds"] for r in mine])),
        }
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
    out["train_seconds"] = [
        f"{t:.1f}" for t in table["train_seconds"]
    ]  # text: the Markdown writer prints floats at 4 places
    for name in metric_names():
        if name in table:
            out[name] = [f"{m:.4f} ± {s:.4f}" for m, s in zip(table[name], table[f"{name}_std"])]
    return out


def write_main_table(plan: Plan, out_dir: Path, mode: str | None = None, suffix: str = "") -> list[Path]:
    """``main_table<suffix>.{csv,md}``, plus ``main_table_sampled<suffix>.{csv,md}`` when runs used
    eval.mode=sampled; ``mode`` (a ``time.query`` value) is named in the titles."""
    runs = run_metrics(plan)
    if not runs:
        return []
    check_modes(runs, mode)
    where = f", time.query={mode}" if mode else ""
    written = []
    full = summarise(runs)
    written += _write(full, out_dir, STEM + suffix, f"Main table: full ranking{where} (mean ± std over seeds)")
    if any(any(k.startswith("sampled_") for k in r["test"]) for r in runs):
        sampled = summarise([r for r in runs if any(k.startswith("sampled_") for k in r["test"])], "sampled_")
        written += _write(
            sampled,
            out_dir,
            SAMPLED_STEM + suffix,
            f"Sampled-mode metrics{where} (target vs 100 sampled negatives; NOT comparable to full ranking)",
        )
    written += write_slices(runs, out_dir, suffix, where)
    return written


SLICE_STEMS = {"novel/": "main_table_novel", "repeat/": "main_table_repeat"}
PER_SEQUENCE_STEM = "main_table_per_sequence"


def write_slices(runs: list[dict], out_dir: Path, suffix: str, where: str) -> list[Path]:
    """Where targets repeat history items: the ``novel/`` and ``repeat/`` slices of the headline;
    under a split by time: the per-sequence view (each sequence's events averaged first)."""
    written = []
    for prefix, stem in SLICE_STEMS.items():
        sliced = [r for r in runs if any(k.startswith(prefix) for k in r["test"])]
        if sliced:
            share = np.mean([r["test"].get("repeat_share", np.nan) for r in sliced])
            title = f"Slice {prefix.rstrip('/')}: targets {'' if prefix == 'repeat/' else 'not '}in the history"
            title += f" ({share:.1%} of targets repeat){where} (mean ± std over seeds)"
            written += _write(summarise(sliced, prefix), out_dir, stem + suffix, title)
    per_sequence = [{**r, "test": r["test_per_sequence"]} for r in runs if r.get("test_per_sequence")]
    if per_sequence:
        title = f"Per-sequence view: each sequence's target events averaged first{where} (mean ± std over seeds)"
        written += _write(summarise(per_sequence), out_dir, PER_SEQUENCE_STEM + suffix, title)
    return written


def check_modes(runs: list[dict], mode: str | None) -> None:
    """A table of one query mode may only hold runs of that mode, or of models that ignore time."""
    if not mode:
        return
    for run in runs:
        query = (run.get("protocol") or {}).get("query")
        if query is not None and query != mode and run.get("uses_time", False):
            raise DataError(
                f"phase2: run {run['model']}-seed{run['seed']} ran with time.query={query} and uses "
                f"time, so it cannot stand in the time.query={mode} table; remove it from time_blind"
            )


def _write(table: pd.DataFrame, out_dir: Path, stem: str, title: str) -> list[Path]:
    return write_table(table, out_dir, stem, title, shown=display(table))
