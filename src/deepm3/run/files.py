"""What a finished run leaves in its folder, written in one place.

:class:`RunRecord` is the callback that does it when the run's test ends: it asks the run for its
record (``metrics.json``'s content, the noisy re-test included), builds the per-user test rows from
the module's test ranks (:func:`user_rows`) and has :class:`RunFiles` write ``test_users.csv``, the
item map and training popularity, the config, and ``metrics.json`` last (its presence marks a
complete run), then hand ``metrics.json`` to the run's trackers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig

from deepm3.data.datamodule import SequenceDataModule
from deepm3.data.samples import training_item_counts
from deepm3.metrics import metric_names, ranking_metrics
from deepm3.run_dir import (
    METRICS_FILE,
    RunMetrics,
    clear_error,
    save_config,
    write_item_map,
    write_metrics,
    write_popularity,
    write_user_rows,
)
from deepm3.trackers import publish_run


class RunFiles:
    """Writes one run's folder ``out`` from its config, metrics and per-user rows."""

    def __init__(self, out: Path, cfg: DictConfig) -> None:
        self.out = Path(out)
        self.cfg = cfg

    def write(
        self, metrics: RunMetrics, rows: pd.DataFrame, datamodule: SequenceDataModule, loggers: Iterable[Logger]
    ) -> None:
        clear_error(self.out)  # a rerun that succeeds clears an old failure
        write_user_rows(self.out, rows)
        write_item_files(self.out, datamodule)
        save_config(self.out, self.cfg)
        write_metrics(self.out, metrics)  # last: its presence marks a complete run
        publish_run(loggers, self.out / METRICS_FILE, self.cfg)


class RunRecord(L.Callback):
    """Writes the run's folder when its test ends (on the global-zero process under DDP).

    ``describe(trainer, module)`` returns the run's record; the per-sequence view is added here
    from the per-user rows. :attr:`metrics` keeps what was written, for the caller to return.
    """

    def __init__(
        self,
        out: Path,
        cfg: DictConfig,
        datamodule: SequenceDataModule,
        describe: Callable[[L.Trainer, Any], RunMetrics],
    ) -> None:
        self.files = RunFiles(out, cfg)
        self.datamodule = datamodule
        self.describe = describe
        self.metrics: RunMetrics | None = None

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        metrics = self.describe(trainer, pl_module)
        rows = user_rows(pl_module, self.datamodule)
        per_sequence = per_sequence_metrics(rows, pl_module.ks)
        if per_sequence is not None:
            metrics["test_per_sequence"] = per_sequence
        self.metrics = metrics
        if trainer.is_global_zero:  # DDP: every process holds the same gathered rows; one writes the folder
            self.files.write(metrics, rows, self.datamodule, trainer.loggers)


def write_item_files(out: Path, datamodule: SequenceDataModule) -> None:
    """The item map, and training counts that serving falls back to for a user without history."""
    assert datamodule.data_dir is not None and datamodule.data is not None
    write_item_map(out, datamodule.data_dir)
    write_popularity(out, datamodule.data.item_ids, training_item_counts(datamodule.data))


def user_rows(module: Any, datamodule: SequenceDataModule) -> pd.DataFrame:
    """Per-user test rows (docs/protocol.md, "The studies"): significance and irregularity studies need no re-run."""
    users = module.test_ranks["users"].numpy()
    samples = module.test_ranks.get("samples", module.test_ranks["users"]).numpy()
    ranks = module.test_ranks["ranks"]
    data, test = datamodule.data, datamodule.splits["test"]
    assert data is not None
    # Under a split by time a row is one target event: `user` names it `<sequence>/<position>` (the
    # unit every paired analysis pairs) and `sequence` holds the sequence for the per-sequence view.
    ids = data.user_ids[users]
    if test.positions is not None:
        ids = np.char.add(np.char.add(ids.astype(str), "/"), test.positions[samples].astype(str))
    rows = pd.DataFrame(
        {
            "user": ids,
            "history_length": test.history_sizes()[samples],
            "gap_cv": datamodule.gap_cv()[users] if test.gap_cv is None else test.gap_cv[samples],
            "rank": ranks.numpy(),
            "repeat": module.test_ranks["repeat"].numpy().astype(int),  # target already in the history
        }
    )
    if test.positions is not None:
        rows.insert(1, "sequence", data.user_ids[users])
    for name, values in ranking_metrics(ranks, module.ks).items():
        rows[name] = values.numpy()
    if "sampled_ranks" in module.test_ranks:  # eval.mode=sampled: beside the full-ranking columns
        rows["sampled_rank"] = module.test_ranks["sampled_ranks"].numpy()
        for name, values in ranking_metrics(module.test_ranks["sampled_ranks"], module.ks).items():
            rows[f"sampled_{name}"] = values.numpy()
    return rows


def per_sequence_metrics(rows: pd.DataFrame, ks: Iterable[int]) -> dict[str, float] | None:
    """Under a split by time the headline averages events; this view averages sequences (``None`` otherwise)."""
    if "sequence" not in rows.columns:
        return None
    per_sequence = rows.groupby("sequence")[metric_names(tuple(ks))].mean().mean()
    return {k: float(v) for k, v in per_sequence.items()}
