"""``budget.{csv,md}``: how many trained runs of each model stopped at their epoch cap.

A run that trains for all ``trainer.max_epochs`` epochs was not ended by early stopping: it may
still be improving, so a comparison at that budget measures how fast models converge, not what
they reach. The claims page (:mod:`deepm3.phase2.claims`) reads this table and refuses to call a
claim *holds* (or *does not hold*) when a model it rests on hit the cap too often.

A run is **at its cap** when ``epochs >= trainer.max_epochs`` (``metrics.json``; the cap from the
run's ``.hydra/config.yaml``, else from the ``trainer.max_epochs=`` of its recorded command).
Models that learn nothing by gradient (``pop``, ``repeat``, ``decayed_repeat``: counts, and a
decay tuned on validation) and runs whose config gives them a single epoch are **exempt**: one
epoch is their whole job, not a cut-off.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import OmegaConf

from deepm3.phase2.plan import Plan, RunSpec
from deepm3.phase2.results import write_table
from deepm3.run_dir import CONFIG_FILE, read_config, read_metrics

STEM = "budget"
NOT_TRAINED = ("pop", "repeat", "decayed_repeat")  # model names (metrics.json `model`) with nothing to train
# -- the rule ----------------------------------------------------------------------------------
MAX_AT_CAP_SHARE = 0.10  # a model whose trained runs hit their cap in MORE than 10% is not converged
RULE = (
    f"budget: every model a verdict rests on ended by early stopping in at least "
    f"{1 - MAX_AT_CAP_SHARE:.0%} of its trained runs (at most {MAX_AT_CAP_SHARE:.0%} at `trainer.max_epochs`; "
    f"exactly {MAX_AT_CAP_SHARE:.0%} passes); models that train nothing ({', '.join(NOT_TRAINED)}, one-epoch runs) "
    "are exempt"
)
EXEMPT, CONVERGED, CAPPED, UNKNOWN = "exempt (not trained)", "early stopping", "at the cap", "cap unknown"
COLUMNS = [
    "model",
    "runs",
    "exempt_runs",
    "trained_runs",
    "at_cap",
    "cap_unknown",
    "max_epochs",
    "at_cap_share",
    "status",
]


def run_cap(spec: RunSpec, metrics: dict[str, Any]) -> int | None:
    """``trainer.max_epochs`` of a complete run: its saved config, else its recorded command."""
    if (spec.directory / CONFIG_FILE).is_file():
        cap = OmegaConf.select(read_config(spec.directory), "trainer.max_epochs", default=None)
        if isinstance(cap, int) and not isinstance(cap, bool):
            return cap
    command = str((metrics.get("provenance") or {}).get("command", ""))
    found = re.findall(r"(?:^|\s)\+*trainer\.max_epochs=(\d+)(?=\s|$)", command)
    return int(found[-1]) if found else None


def run_budget(spec: RunSpec) -> tuple[str, int | None]:
    """``(kind, cap)`` of one complete run; kind is ``exempt``, ``capped``, ``stopped`` or ``unknown``."""
    metrics = read_metrics(spec.directory)
    cap = run_cap(spec, metrics)
    if str(metrics.get("model", "")) in NOT_TRAINED or cap == 1:
        return "exempt", cap
    epochs = metrics.get("epochs")
    if cap is None or not isinstance(epochs, int):
        return "unknown", cap
    return ("capped" if epochs >= cap else "stopped"), cap


def status(trained: int, at_cap: int, unknown: int, exempt: int) -> str:
    """The budget verdict of one model's runs (the rule above)."""
    if trained == 0 and unknown == 0:
        return EXEMPT if exempt else UNKNOWN
    if unknown:
        return UNKNOWN
    return CAPPED if at_cap / trained > MAX_AT_CAP_SHARE else CONVERGED


def passes(row_status: str) -> bool:
    """Whether a model's budget lets a verdict rest on it."""
    return row_status in (EXEMPT, CONVERGED)


def budget_table(plan: Plan) -> pd.DataFrame:
    """One row per model label of ``plan`` with complete runs: counts, caps, share at the cap, status."""
    records = []
    for model in plan.models:
        runs = [spec for spec in plan.completed() if spec.model == model]
        if not runs:
            continue
        kinds = [run_budget(spec) for spec in runs]
        count = {kind: sum(k == kind for k, _ in kinds) for kind in ("exempt", "capped", "stopped", "unknown")}
        trained = count["capped"] + count["stopped"]
        caps = sorted({cap for _, cap in kinds if cap is not None})
        records.append(
            {
                "model": model,
                "runs": len(runs),
                "exempt_runs": count["exempt"],
                "trained_runs": trained,
                "at_cap": count["capped"],
                "cap_unknown": count["unknown"],
                "max_epochs": ", ".join(str(c) for c in caps),
                "at_cap_share": count["capped"] / trained if trained else float("nan"),
                "status": status(trained, count["capped"], count["unknown"], count["exempt"]),
            }
        )
    return pd.DataFrame.from_records(records, columns=COLUMNS)


def write_budget(plan: Plan, out_dir: Path) -> list[Path]:
    """``budget.{csv,md}`` for the complete runs of ``plan`` (the main runs of every query mode)."""
    table = budget_table(plan)
    title = (
        "Epoch budget: trained runs per model that stopped at `trainer.max_epochs` instead of by early "
        f"stopping. Rule of the claims page: {RULE}"
    )
    return write_table(table, Path(out_dir), STEM, title, floatfmt=".2f")
