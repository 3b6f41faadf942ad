"""The run folder contract: what ``python -m deepm3.train`` leaves in a run dir, written and read here only.

A run dir holds the composed config (``.hydra/config.yaml``), the checkpoints (``checkpoints/``),
the item map (``item_map.csv``: raw id of each item index), training popularity
(``item_popularity.csv``, for users without history), per-user test rows (``test_users.csv``)
and ``metrics.json`` -- written last, so its presence marks a complete run -- or, after a
failure, ``error.json``; the HTTP server may add its snapshot (``serve_state.pt``). Training,
serving, the noise grid and the experiment suite all go through this module, so a file name or
a column changes in one place.
"""

from __future__ import annotations

import json
import os
import shutil
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from deepm3.data.processed import ITEM_MAP_FILE, ProcessedData
from deepm3.data.samples import training_item_counts
from deepm3.errors import DataError
from deepm3.io import write_atomic, write_json

METRICS_FILE = "metrics.json"
ERROR_FILE = "error.json"
USERS_FILE = "test_users.csv"
POPULARITY_FILE = "item_popularity.csv"
CONFIG_FILE = Path(".hydra") / "config.yaml"
CHECKPOINT_DIR = "checkpoints"  # conf/callbacks/default.yaml's model_checkpoint.dirpath ends with it
LAST_CHECKPOINT = "last.ckpt"
LOCK_FILE = ".training.lock"  # held while one process trains the run (the experiment suite's runners)
SNAPSHOT_FILE = "serve_state.pt"  # the HTTP server's stored user state (state.snapshot=auto), not training's
_WRITTEN_BY = "expected a run dir written by python -m deepm3.train"


class RunMetrics(TypedDict, total=False):
    """``metrics.json``: what a finished run says about itself (keys written by :func:`deepm3.train.run`)."""

    model: str  # cfg.model.name
    dataset: str
    seed: int
    solver: dict[str, Any] | None
    test: dict[str, float]  # the tested checkpoint's test metrics, without the ``test/`` prefix
    best_val: dict[str, float | None]  # the monitor's best validation score
    best_checkpoint: str  # the tested checkpoint, relative to the study folder; readers use its name
    epochs: int
    num_params: int
    uses_time: bool
    train_seconds: float
    seconds_per_epoch: float
    training_key: str  # deepm3.run.identity.training_key: equal keys train identically
    data: dict[str, Any]  # SequenceDataModule.describe(): sizes, data_dir, cache key
    protocol: dict[str, Any]  # query, exclude_history, eval_mode, split
    test_per_sequence: dict[str, float]  # split by time: test metrics averaged per sequence, then over sequences
    provenance: dict[str, Any]  # deepm3.provenance.run_provenance
    noise: dict[str, Any]  # only under test-time noise: its name, level, seed ...
    noisy: dict[str, float]  # ... and the headline test metrics under it
    reused_checkpoint_from: str  # tested a sibling run's checkpoint instead of fitting (relative path)
    reused_from: str  # a copy of another complete run (the experiment suite; relative path)


# --- metrics.json and error.json -------------------------------------------------------------


def is_complete(run_dir: Path) -> bool:
    """Whether the run finished: ``metrics.json`` is written last."""
    return (Path(run_dir) / METRICS_FILE).is_file()


def write_metrics(run_dir: Path, metrics: RunMetrics | dict[str, Any]) -> Path:
    """Write ``metrics.json`` atomically, its paths relative (:func:`portable_metrics`); call it
    after every other file of the run."""
    return write_json(Path(run_dir) / METRICS_FILE, portable_metrics(metrics, run_dir))


def read_metrics(run_dir: Path) -> RunMetrics:
    """``metrics.json`` of a complete run (``FileNotFoundError`` when the run is not complete)."""
    return json.loads((Path(run_dir) / METRICS_FILE).read_text())


def try_read_metrics(run_dir: Path) -> RunMetrics | None:
    """``metrics.json``, or ``None`` when it is missing or unreadable (scans that must not stop)."""
    try:
        return read_metrics(run_dir)
    except (OSError, json.JSONDecodeError):
        return None


def write_error(run_dir: Path, overrides: Sequence[str], exc: BaseException) -> Path:
    """``error.json``: the failed run's overrides, the error in one line and its traceback."""
    return write_json(
        Path(run_dir) / ERROR_FILE,
        {
            "overrides": list(overrides),
            "error": f"{type(exc).__name__}: {exc}",
            "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
        },
    )


def clear_run(run_dir: Path) -> None:
    """Empty a run folder but for its lock: an explicit retrain in place (the experiment suite's
    ``overwrite=true``) must not leave the replaced run's checkpoints or metrics beside the new."""
    for entry in Path(run_dir).iterdir():
        if entry.name == LOCK_FILE:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def clear_error(run_dir: Path) -> None:
    """Remove an old ``error.json`` (a rerun that succeeds)."""
    (Path(run_dir) / ERROR_FILE).unlink(missing_ok=True)


def has_error(run_dir: Path) -> bool:
    return (Path(run_dir) / ERROR_FILE).is_file()


def read_error(run_dir: Path) -> str | None:
    """The recorded failure in one line, or ``None`` when there is none."""
    path = Path(run_dir) / ERROR_FILE
    if not path.is_file():
        return None
    try:
        return str(json.loads(path.read_text()).get("error", "unknown error"))
    except (OSError, json.JSONDecodeError) as exc:
        return f"unreadable {path}: {exc}"


# --- paths in per-run files ------------------------------------------------------------------
# A run's files travel: a study folder is committed and verified on other machines. So the paths
# metrics.json names are relative to the study folder -- the folder holding ``runs/``
# (``<study>/runs/<run>/``), or the run folder itself when it is not in a ``runs/`` folder -- and the
# processed-data folder is named under ``<data_dir>`` (``paths.data_dir``). Runs written before this
# name absolute paths; readers accept both (:func:`resolve_run_path`, :func:`resolve_data_dir`).
RUNS_PARENT = "runs"
PATH_KEYS = ("best_checkpoint", "reused_from", "reused_checkpoint_from")
DATA_DIR_PREFIX = "<data_dir>"


def study_root(run_dir: Path) -> Path:
    """The folder a run's paths are relative to: ``<study>`` for ``<study>/runs/<run>``, else the run folder."""
    run_dir = Path(os.path.abspath(run_dir))
    return run_dir.parent.parent if run_dir.parent.name == RUNS_PARENT else run_dir


def portable_path(path: str | Path, run_dir: Path) -> str:
    """``path`` relative to the run's study folder (POSIX) when it lies inside it; else as given
    (a path that is relative already, e.g. copied from another run of the study, included)."""
    if not os.path.isabs(path):
        return str(path)
    try:
        return Path(os.path.abspath(path)).relative_to(study_root(run_dir)).as_posix()
    except ValueError:
        return str(path)


def resolve_run_path(text: str, run_dir: Path) -> Path:
    """A path a per-run file names: absolute (runs written before relative paths) as it is,
    relative against the run's study folder."""
    path = Path(text)
    return path if path.is_absolute() else study_root(run_dir) / path


def data_root() -> Path:
    """``paths.data_dir``'s default: ``$DEEPM3_DATA_DIR``, else ``~/.cache/deepm3``."""
    return Path(os.environ.get("DEEPM3_DATA_DIR", "~/.cache/deepm3")).expanduser()


def resolve_data_dir(text: str) -> Path:
    """``data.data_dir`` of a metrics.json: ``<data_dir>/...`` under :func:`data_root`, else as written."""
    if text == DATA_DIR_PREFIX or text.startswith(DATA_DIR_PREFIX + "/"):
        return data_root() / text[len(DATA_DIR_PREFIX) :].lstrip("/")
    return Path(text)


def portable_metrics(metrics: RunMetrics | dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """``metrics`` with every path it names made portable: :data:`PATH_KEYS` and the command's
    ``key=<path>`` overrides relative to the study folder, ``data.data_dir`` under ``<data_dir>``."""
    out: dict[str, Any] = dict(metrics)
    for key in PATH_KEYS:
        if isinstance(out.get(key), str) and out[key]:
            out[key] = portable_path(out[key], run_dir)
    data = out.get("data")
    if isinstance(data, dict) and isinstance(data.get("data_dir"), str) and os.path.isabs(data["data_dir"]):
        try:
            inner = Path(data["data_dir"]).relative_to(data_root()).as_posix()
            out["data"] = {**data, "data_dir": f"{DATA_DIR_PREFIX}/{inner}"}
        except ValueError:
            pass
    provenance = out.get("provenance")
    if isinstance(provenance, dict) and isinstance(provenance.get("command"), str):
        words = [_portable_override(word, run_dir) for word in provenance["command"].split(" ")]
        out["provenance"] = {**provenance, "command": " ".join(words)}
    return out


def _portable_override(word: str, run_dir: Path) -> str:
    key, sep, value = word.partition("=")
    return f"{key}={portable_path(value, run_dir)}" if sep and os.path.isabs(value) else word


# --- per-user rows ---------------------------------------------------------------------------


def write_user_rows(run_dir: Path, rows: pd.DataFrame) -> Path:
    """``test_users.csv``: one row per test user (user, history_length, gap_cv, rank, repeat, metrics)."""
    return write_atomic(Path(run_dir) / USERS_FILE, lambda tmp: rows.to_csv(tmp, index=False))


def read_user_rows(run_dir: Path) -> pd.DataFrame:
    """``test_users.csv`` with user ids kept as text (``"007"`` stays ``"007"``)."""
    return pd.read_csv(Path(run_dir) / USERS_FILE, dtype={"user": str}, keep_default_na=False, na_values=[""])


# --- item map and popularity -----------------------------------------------------------------


def write_item_map(run_dir: Path, data_dir: Path) -> Path:
    """Copy the processed data's ``item_map.csv``: a run dir stays servable when the cache is gone."""
    text = (Path(data_dir) / ITEM_MAP_FILE).read_text()
    return write_atomic(Path(run_dir) / ITEM_MAP_FILE, lambda tmp: tmp.write_text(text))


def read_item_map(run_dir: Path) -> np.ndarray:
    """Raw ids of items 1..N (``item_map.csv``, saved by training)."""
    path = Path(run_dir) / ITEM_MAP_FILE
    if not path.is_file():
        raise DataError(f"{run_dir}: no {ITEM_MAP_FILE}; {_WRITTEN_BY}")
    table = pd.read_csv(path, dtype={"raw_id": str}, keep_default_na=False)
    if list(table.columns) != ["index", "raw_id"] or table["index"].tolist() != list(range(1, len(table) + 1)):
        raise DataError(f"{path}: expected columns index,raw_id with index 1..N in order")
    return table["raw_id"].to_numpy(dtype=str)


def write_popularity(run_dir: Path, item_ids: Sequence[str], counts: np.ndarray) -> Path:
    """``item_popularity.csv`` from ``[N + 1]`` training counts (index 0, padding, is left out)."""
    table = pd.DataFrame({"index": np.arange(1, len(counts)), "raw_id": item_ids, "count": counts[1:]})
    return write_atomic(Path(run_dir) / POPULARITY_FILE, lambda tmp: table.to_csv(tmp, index=False))


def read_popularity(run_dir: Path, item_ids: np.ndarray) -> np.ndarray | None:
    """``[N + 1]`` training counts per item: ``item_popularity.csv``, else recomputed from the
    run's processed data (runs trained before the file existed); ``None`` when neither is there."""
    path = Path(run_dir) / POPULARITY_FILE
    if path.is_file():
        table = pd.read_csv(path, dtype={"raw_id": str}, keep_default_na=False)
        if table["raw_id"].tolist() != item_ids.tolist():
            raise DataError(
                f"{path} does not list the items of {Path(run_dir) / ITEM_MAP_FILE} in the same order; "
                "the two files come from different datasets"
            )
        return np.concatenate([[0], table["count"].to_numpy(dtype=np.int64)])
    recorded = (try_read_metrics(run_dir) or {}).get("data", {}).get("data_dir")
    data_dir = resolve_data_dir(recorded) if recorded else None
    if data_dir is None or not ProcessedData.is_complete(data_dir):
        return None
    data = ProcessedData.load(data_dir)
    if data.item_ids.tolist() != item_ids.tolist():
        raise DataError(
            f"{data_dir}: its item map differs from {Path(run_dir) / ITEM_MAP_FILE}; cannot count popularity"
        )
    return training_item_counts(data)


# --- the composed config ---------------------------------------------------------------------


def save_config(run_dir: Path, cfg: DictConfig) -> None:
    """Keep a run dir servable when training ran without Hydra's launcher (which writes this file)."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        task = OmegaConf.masked_copy(cfg, [key for key in cfg if key != "hydra"])
        write_atomic(path, lambda tmp: OmegaConf.save(task, tmp))


def read_config(run_dir: Path) -> Any:
    """The run's composed config (``.hydra/config.yaml``)."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise DataError(f"{run_dir}: no {CONFIG_FILE}; {_WRITTEN_BY}")
    return OmegaConf.load(path)


def config_max_len(config: Any, run_dir: Path) -> int:
    """The window length the model was trained and evaluated with (``dataset.max_len``)."""
    max_len = OmegaConf.select(config, "dataset.max_len", default=None)
    if isinstance(max_len, bool) or not isinstance(max_len, int) or max_len < 1:
        raise DataError(f"{Path(run_dir) / CONFIG_FILE}: dataset.max_len={max_len!r}; expected a positive integer")
    return max_len


# --- checkpoints -----------------------------------------------------------------------------


def checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR


def last_checkpoint(run_dir: Path) -> Path:
    """Where the last epoch's checkpoint is (``ckpt_path=last``); it may not exist yet."""
    return checkpoint_dir(run_dir) / LAST_CHECKPOINT


def tested_checkpoint(run_dir: Path, metrics: RunMetrics | dict[str, Any]) -> Path | None:
    """The checkpoint ``metrics`` names, looked up by name in this run dir (the dir may have moved),
    or ``None`` when it names none or the file is gone."""
    named = metrics.get("best_checkpoint")
    if not named:
        return None
    path = checkpoint_dir(run_dir) / Path(named).name
    return path if path.is_file() else None


def best_checkpoint(run_dir: Path) -> Path:
    """The checkpoint ``metrics.json`` names (the one tested), else ``best-*``, else ``last.ckpt``."""
    metrics = try_read_metrics(run_dir)
    tested = tested_checkpoint(run_dir, metrics) if metrics is not None else None
    if tested is not None:
        return tested
    folder = checkpoint_dir(run_dir)
    candidates = sorted(folder.glob("best-*.ckpt")) or sorted(folder.glob(LAST_CHECKPOINT))
    if not candidates:
        raise DataError(f"{run_dir}: no checkpoint in {CHECKPOINT_DIR}/; {_WRITTEN_BY}")
    return candidates[-1]


def locate_run(path: Path) -> tuple[Path, Path]:
    """``(run dir, checkpoint)`` for a run dir or a ``.ckpt`` in its ``checkpoints/``."""
    path = Path(path)
    if path.is_file():
        if path.suffix != ".ckpt" or path.parent.name != CHECKPOINT_DIR:
            raise DataError(
                f"{path}: expected a run dir or a .ckpt file inside <run dir>/{CHECKPOINT_DIR}/ "
                "(the run dir holds the config and item map the weights need)"
            )
        return path.parent.parent, path
    if not path.is_dir():
        raise DataError(f"{path}: no such run dir or checkpoint")
    return path, best_checkpoint(path)
