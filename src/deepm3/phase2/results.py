"""Reading finished runs back: ``metrics.json`` and ``test_users.csv`` of every complete run,
and the small writers every study shares (CSV + Markdown, atomically)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import pandas as pd

from deepm3.io import write_atomic
from deepm3.phase2.plan import Plan
from deepm3.run_dir import read_metrics, read_user_rows


def run_metrics(plan: Plan) -> list[dict[str, Any]]:
    """``metrics.json`` of each complete run, with the plan's model label and seed."""
    out = []
    for spec in plan.completed():
        metrics = read_metrics(spec.directory)
        out.append({**metrics, "model": spec.model, "seed": spec.seed})
    return out


def user_rows(plan: Plan) -> pd.DataFrame:
    """Per-user test rows of every complete run, with ``model`` and ``seed`` columns.

    Rows outside a run's headline number are left out: with ``eval.exclude_history`` the
    repeat-target users (``repeat == 1``) were ranked differently and form their own slice.
    """
    frames = []
    for spec in plan.completed():
        rows = read_user_rows(spec.directory)
        protocol = read_metrics(spec.directory).get("protocol") or {}
        if protocol.get("exclude_history") and "repeat" in rows:
            rows = rows[rows["repeat"] == 0]
        frames.append(rows.assign(model=spec.model, seed=spec.seed))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


_SCOPE: ContextVar[str | None] = ContextVar("table_scope", default=None)


@contextmanager
def table_scope(note: str | None) -> Iterator[None]:
    """Every table written inside names ``note`` in its title, e.g. the one query mode a study
    ran in, so a table read on its own still says what it covers."""
    token = _SCOPE.set(note)
    try:
        yield
    finally:
        _SCOPE.reset(token)


def write_table(
    frame: pd.DataFrame,
    directory: Path,
    stem: str,
    title: str,
    shown: pd.DataFrame | None = None,
    floatfmt: str = ".4f",
) -> list[Path]:
    """``<stem>.csv`` (machine-readable) and ``<stem>.md`` (a titled Markdown table of ``shown``,
    default the same frame)."""
    directory.mkdir(parents=True, exist_ok=True)
    scope = _SCOPE.get()
    title = title if scope is None else f"{title} [{scope}]"
    csv = write_atomic(directory / f"{stem}.csv", lambda tmp: frame.to_csv(tmp, index=False))
    text = f"### {title}\n\n{markdown(frame if shown is None else shown, floatfmt)}\n"
    md = write_atomic(directory / f"{stem}.md", lambda tmp: tmp.write_text(text))
    return [csv, md]


def markdown(frame: pd.DataFrame, floatfmt: str = ".4f") -> str:
    """A pipe table without the optional ``tabulate`` dependency."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return "" if pd.isna(value) else format(value, floatfmt)
        return str(value).replace("|", "\\|")

    header = "| " + " | ".join(str(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body]) if len(frame.columns) else "(empty)"
