"""Which kind of target each test event is: the item of the latest event again, an earlier item
again, or an item the sequence never had -- and each model's score on each kind.

On repeat-heavy data a memory that ranks the latest item first is hard to beat (79% of
Wikipedia's edits are to the page of the editor's previous edit). The headline and the
``repeat``/``novel`` slices cannot say where a learned model loses to it; this split can: a
model may win on earlier repeats and new items and still lose overall by not always putting the
latest item first. ``hit@1`` (rank 0) shows exactly that.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from deepm3.data.samples import SampleArrays

KINDS = ("latest", "earlier", "novel")  # the order of the table's columns


def target_kinds(samples: SampleArrays, user_ids: np.ndarray) -> pd.DataFrame:
    """One row per evaluation sample: ``user`` (the key of the per-user rows, ``<sequence>/<position>``
    under a split by time) and ``kind``.

    ``latest``: the target is the item of the sequence's most recent input event (the last column
    of the left-padded window); ``earlier``: it is in the history, but not the latest event's item;
    ``novel``: it is not in the history. A sample without history items is ``novel``.
    """
    if samples.history_offsets is None or samples.history_items is None:
        raise ValueError("target kinds need the evaluation samples' history (history_offsets, history_items)")
    targets = samples.targets[:, -1]
    latest = samples.items[:, -1]
    sizes = np.diff(samples.history_offsets)
    owner = np.repeat(np.arange(len(targets)), sizes)
    in_history = np.zeros(len(targets), dtype=bool)
    np.logical_or.at(in_history, owner, samples.history_items == targets[owner])
    kind = np.where(latest == targets, "latest", np.where(in_history, "earlier", "novel"))
    kind[targets == 0] = "novel"  # no target: never counted as a repeat (cannot happen in a test split)
    ids = user_ids[samples.users].astype(str)
    if samples.positions is not None:
        ids = np.char.add(np.char.add(ids, "/"), samples.positions.astype(str))
    return pd.DataFrame({"user": ids, "kind": kind})


def kind_table(
    rows: pd.DataFrame, kinds: pd.DataFrame, metric: str, order: Sequence[str] | None = None
) -> pd.DataFrame:
    """Each model's ``metric`` and hit@1 on each kind of target: the mean over seeds of each seed's
    mean over the kind's targets (``<metric>_<kind>``, its std over seeds ``<metric>_<kind>_std``, 0
    for one seed; ``hit@1_<kind>``), beside the overall ``metric``; one row per model.

    ``rows``: per-user rows with ``model``, ``seed``, ``user``, ``rank`` and ``metric`` columns.
    A row whose ``user`` has no kind is an error: the runs were not tested on these samples.
    """
    joined = rows.merge(kinds, on="user", how="left", validate="many_to_one")
    unknown = joined["kind"].isna()
    if unknown.any():
        first = joined.loc[unknown, "user"].iloc[0]
        raise ValueError(
            f"target kinds: {int(unknown.sum())} test rows (first: user {first!r}) are not samples of the "
            "test split the kinds were computed on; were the runs tested on another dataset or window?"
        )
    joined["hit@1"] = (joined["rank"] == 0).astype(float)
    present = set(joined["model"])
    models = [m for m in (order if order is not None else sorted(present)) if m in present]
    out = []
    for model in models:
        mine = joined[joined["model"] == model]
        overall = mine.groupby("seed")[metric].mean()
        row: dict[str, object] = {"model": model, "seeds": int(overall.size), metric: float(overall.mean())}
        for kind in KINDS:
            per_seed = mine[mine["kind"] == kind].groupby("seed")[[metric, "hit@1"]].mean()
            row[f"{metric}_{kind}"] = float(per_seed[metric].mean()) if len(per_seed) else float("nan")
            row[f"{metric}_{kind}_std"] = float(per_seed[metric].std(ddof=1)) if len(per_seed) > 1 else 0.0
            row[f"hit@1_{kind}"] = float(per_seed["hit@1"].mean()) if len(per_seed) else float("nan")
        out.append(row)
    return pd.DataFrame(out)


def kind_shares(kinds: pd.DataFrame) -> str:
    """``latest 79.3% (15,597), earlier ...``: how the test targets split, for a table's title."""
    counts = kinds["kind"].value_counts()
    total = int(counts.sum())
    return ", ".join(f"{k} {100 * counts.get(k, 0) / total:.1f}% ({int(counts.get(k, 0)):,})" for k in KINDS)
