"""Study ``target_kinds``: every model's score on the test targets that repeat the latest item,
repeat an earlier one, or are new (:mod:`deepm3.analysis.target_kinds`), from the per-user rows;
the kinds come from the test split the runs were tested on (the first run's dataset config)."""

from __future__ import annotations

from pathlib import Path

from deepm3.analysis.target_kinds import kind_shares, kind_table, target_kinds
from deepm3.errors import DataError
from deepm3.phase2.plan import Plan
from deepm3.phase2.results import user_rows, write_table
from deepm3.phase2.robustness import check_same_inputs, test_datamodule

STEM = "target_kinds"


def write_target_kinds(
    plan: Plan, out_dir: Path, metric: str = "ndcg@10", mode: str | None = None, suffix: str = ""
) -> list[Path]:
    """``target_kinds<suffix>.{csv,md}``; nothing when no run is complete."""
    completed = plan.completed()
    if not completed:
        return []
    check_same_inputs(completed)
    datamodule = test_datamodule(completed[0])
    assert datamodule.data is not None
    kinds = target_kinds(datamodule.splits["test"], datamodule.data.user_ids)
    rows = user_rows(plan)
    try:
        table = kind_table(rows, kinds, metric, order=list(dict.fromkeys(s.model for s in completed)))
    except ValueError as exc:
        raise DataError(f"phase2 target_kinds in {plan.dataset_dir}: {exc}") from exc
    where = "" if mode is None else f", time.query={mode}"
    return write_table(
        table,
        out_dir,
        STEM + suffix,
        f"{metric} and hit@1 by kind of test target{where}: the latest event's item again, an earlier item "
        f"again, or a new item (mean over seeds; std over seeds). Targets: {kind_shares(kinds)}",
    )
