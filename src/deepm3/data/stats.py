"""The numbers a paper's dataset table needs: ``python -m deepm3.data.stats dataset=<name>``.

Uses the same config tree as training (so ``dataset=...`` and every ``dataset.*`` override
mean the same thing), builds or loads the cached processed data, prints a table and writes
the figures as JSON to ``<output_root>/stats/<dataset>.json``. ``dataset_stats`` is the plain
function behind it, for anyone holding a :class:`ProcessedData`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig

from deepm3.cli_args import run_cli
from deepm3.data.cache import load_or_build
from deepm3.data.preprocess import PreprocessConfig
from deepm3.data.processed import ProcessedData
from deepm3.data.samples import training_gap_cv
from deepm3.errors import exit_on_user_error
from deepm3.io import write_json

log = logging.getLogger(__name__)

QUANTILES = {"min": 0.0, "p10": 0.1, "p25": 0.25, "median": 0.5, "p75": 0.75, "p90": 0.9, "max": 1.0}


def quantiles(values: np.ndarray) -> dict[str, float | None]:
    """Named quantiles and the mean; all None for an empty array."""
    values = np.asarray(values, dtype=np.float64)
    if not len(values):
        return {**{name: None for name in QUANTILES}, "mean": None}
    out = {name: float(np.quantile(values, q)) for name, q in QUANTILES.items()}
    out["mean"] = float(values.mean())
    return out


def within_user_gaps(data: ProcessedData) -> np.ndarray:
    """Seconds between consecutive events of the same user (docs/protocol.md, "Time features"), all users together."""
    gaps = np.diff(data.times)
    same_user = np.ones(len(gaps), dtype=bool)
    same_user[data.offsets[1:-1] - 1] = False  # the step from one user's last event to the next user's first
    return gaps[same_user]


def repeat_shares(data: ProcessedData) -> tuple[float, float]:
    """Share of events (after a sequence's first) whose item the sequence had before, and share
    equal to the sequence's previous item: how much a repeat baseline can do on this data."""
    before = again = total = 0
    for user in range(data.num_users):
        seq = data.items[data.offsets[user] : data.offsets[user + 1]]
        _, first = np.unique(seq, return_index=True)
        total += len(seq) - 1
        before += len(seq) - len(first)
        again += int((seq[1:] == seq[:-1]).sum())
    return (before / total, again / total) if total else (float("nan"), float("nan"))


def dataset_stats(data: ProcessedData) -> dict[str, Any]:
    """Users, items, interactions, density, length / gap / gap-CV quantiles, share of tied timestamps.

    ``tied_share`` is the share of within-user gaps that are zero (an event at the same second
    as the previous one); ``gap_cv`` is over users' *training* gaps, the quantity the
    irregularity tertiles use (docs/experiments.md, "Irregularity"), for users where it is defined.
    """
    gaps = within_user_gaps(data)
    cv = training_gap_cv(data)
    cv = cv[np.isfinite(cv)]
    repeats, same = repeat_shares(data)
    keys = ("raw_interactions", "k_core_passes", "users_dropped_short", "train_events", "val_events", "test_events")
    preprocessing = {k: data.stats[k] for k in keys if k in data.stats}
    return {
        "users": data.num_users,
        "items": data.num_items,
        "interactions": int(len(data.items)),
        "density": float(len(data.items) / (data.num_users * data.num_items)),
        "sequence_length": quantiles(data.lengths()),
        "tied_share": float((gaps == 0).mean()) if len(gaps) else None,
        "gap_seconds": quantiles(gaps),
        "gap_cv": quantiles(cv),
        "users_with_gap_cv": int(len(cv)),
        "repeat_share": repeats,
        "same_as_previous_share": same,
        "preprocessing": preprocessing,
    }


def format_stats(name: str, stats: dict[str, Any]) -> str:
    """A plain-text table: counts first, then one quantile row per distribution."""
    lines = [f"dataset {name}"]
    for key in ("users", "items", "interactions"):
        lines.append(f"  {key:<22}{stats[key]:>14,}")
    lines.append(f"  {'density':<22}{stats['density']:>14.6f}")
    tied = stats["tied_share"]
    lines.append(f"  {'tied timestamps':<22}{(f'{tied:.1%}' if tied is not None else 'n/a'):>14}")
    for key, label in (("repeat_share", "repeat events"), ("same_as_previous_share", "same as previous")):
        if stats.get(key) is not None:
            lines.append(f"  {label:<22}{stats[key]:>14.1%}")
    for key, value in stats["preprocessing"].items():
        lines.append(f"  {key.replace('_', ' '):<22}{value:>14,}")
    header = "".join(f"{column:>12}" for column in [*QUANTILES, "mean"])
    lines.append(f"  {'':<22}{header}")
    for key, label, fmt in (
        ("sequence_length", "sequence length", "{:>12.1f}"),
        ("gap_seconds", "gap (hours)", "{:>12.2f}"),
        ("gap_cv", "per-user gap CV", "{:>12.3f}"),
    ):
        scale = 1 / 3600 if key == "gap_seconds" else 1
        cells = "".join(fmt.format(v * scale) if v is not None else f"{'n/a':>12}" for v in stats[key].values())
        lines.append(f"  {label:<22}{cells}")
    return "\n".join(lines)


def run(cfg: DictConfig) -> tuple[dict[str, Any], Path]:
    """Build (or load) the configured dataset, print its table and write the JSON; return both."""
    # The source and the filters only, not the DataModule: stats need no torch / Lightning import.
    dataset = cfg.dataset
    source = instantiate(dataset.source, _convert_="all")
    preprocess = PreprocessConfig.from_dataset(dataset)
    data, folder = load_or_build(source, preprocess, Path(dataset.cache_dir).expanduser())
    name = dataset.get("name") or source.name
    stats = {"dataset": name, "processed_dir": str(folder), **dataset_stats(data)}
    out = write_json(Path(cfg.paths.output_root).expanduser() / "stats" / f"{name}.json", stats)
    print(format_stats(name, stats))
    print(f"written: {out}")
    return stats, out


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> None:
    try:
        run(cfg)
    except Exception as exc:
        exit_on_user_error(exc, log)
        raise


if __name__ == "__main__":
    run_cli(main, config_name="train")
