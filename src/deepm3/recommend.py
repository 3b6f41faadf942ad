"""Batch recommendations from a trained run, in the raw id space of the training data.

    python -m deepm3.recommend run=<run dir or .ckpt> input=histories.csv output=recs.csv k=10

Input formats (raw item ids, unix seconds, oldest event first; ``conf/recommend.yaml``):

- ``.csv`` with header ``user,item,timestamp[,at]``: one row per event, users' rows in time
  order (they may interleave with other users'); a row with empty ``item`` and ``timestamp``
  is a user without history; ``at`` is the user's query time (on any of its rows).
- ``.jsonl``: one ``{"user": ..., "items": [...], "timestamps": [...], "at": ...}`` per line
  (``at`` optional).

The query time is ``at=`` on the command line if given, else the input's ``at``, else now.
Output by extension: ``.csv`` rows ``user,rank,item,score,source`` or ``.jsonl`` objects
``{"user", "items", "scores", "source", "skipped_items", "reason"}``; ``source`` is ``popularity``
for users whose history was empty (the most popular training items); ``reason`` says why a
list is empty (the history held every item), else null. Input columns or keys nothing reads
are named in one warning.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from deepm3.cli_args import run_cli
from deepm3.errors import ConfigError, DataError, DeepM3Error
from deepm3.history import to_seconds
from deepm3.io import write_atomic
from deepm3.recommender import Recommendations, Recommender

log = logging.getLogger(__name__)

CSV_COLUMNS = ("user", "item", "timestamp")
JSON_KEYS = ("user", "items", "timestamps")
REQUIRED = ("run", "input", "output")


@dataclass
class UserHistory:
    """One user's events as read from the input (raw ids, unix seconds) and query time."""

    user: str
    items: list[str] = field(default_factory=list)
    timestamps: list[int] = field(default_factory=list)
    at: int | None = None


def read_csv_histories(path: Path) -> list[UserHistory]:
    """Histories from ``user,item,timestamp[,at]`` rows, users in order of first appearance."""
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True, encoding="utf-8")
    except (pd.errors.EmptyDataError, pd.errors.ParserError) as exc:
        raise DataError(f"{path}: not a readable CSV ({str(exc).strip().splitlines()[0]})") from None
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path}: not UTF-8 text (byte {exc.object[exc.start : exc.start + 1]!r} at offset {exc.start}); "
            "save the file as UTF-8"
        ) from None
    missing = [c for c in CSV_COLUMNS if c not in table.columns]
    if missing:
        raise DataError(
            f"{path}: missing column(s) {missing}; expected a header user,item,timestamp[,at], "
            f"found {list(table.columns)}"
        )
    _report_extra(path, [c for c in table.columns if c not in (*CSV_COLUMNS, "at")], "column")
    ats = table["at"] if "at" in table.columns else [""] * len(table)
    histories: dict[str, UserHistory] = {}
    for line, (user, item, stamp, at) in enumerate(zip(table["user"], table["item"], table["timestamp"], ats), start=2):
        where = f"{path} line {line}"
        if not user:
            raise DataError(f"{where}: empty user")
        history = histories.setdefault(user, UserHistory(user))
        if item or stamp:
            if not (item and stamp):
                raise DataError(f"{where}: give both item and timestamp (both empty = a user without history)")
            history.items.append(item)
            history.timestamps.append(to_seconds(stamp, f"{where}: timestamp"))
        if at:
            value = to_seconds(at, f"{where}: at")
            if history.at is not None and history.at != value:
                raise DataError(
                    f"{where}: at={value} differs from user {user!r}'s at={history.at} on an earlier row; "
                    "give one query time per user"
                )
            history.at = value
    return list(histories.values())


def read_jsonl_histories(path: Path) -> list[UserHistory]:
    """Histories from one JSON object per line; blank lines are ignored."""
    histories: list[UserHistory] = []
    lines: dict[str, int] = {}
    extra: dict[str, None] = {}  # keys no line needs, in order of first appearance
    try:
        content = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path}: not UTF-8 text (byte {exc.object[exc.start : exc.start + 1]!r} at offset {exc.start}); "
            "save the file as UTF-8"
        ) from None
    for number, text in enumerate(content.splitlines(), start=1):
        if not text.strip():
            continue
        where = f"{path} line {number}"
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"{where}: not valid JSON ({exc.msg})") from None
        if not isinstance(record, dict) or any(key not in record for key in JSON_KEYS):
            raise DataError(f'{where}: expected an object with "user", "items", "timestamps" (and optional "at")')
        items, stamps = record["items"], record["timestamps"]
        if not isinstance(items, list) or not isinstance(stamps, list):
            raise DataError(f'{where}: "items" and "timestamps" must be lists')
        for j, item in enumerate(items):
            if isinstance(item, bool) or not isinstance(item, (str, int)):
                raise DataError(f"{where}: items[{j}]={item!r} is not an item id (a string or an integer)")
        extra.update(dict.fromkeys(key for key in record if key not in (*JSON_KEYS, "at")))
        user = str(record["user"])
        if user in lines:
            raise DataError(f"{where}: user {user!r} is already on line {lines[user]}; give one line per user")
        lines[user] = number
        at = record.get("at")
        histories.append(
            UserHistory(
                user,
                [str(item) for item in items],
                [to_seconds(t, f"{where}: timestamps[{j}]") for j, t in enumerate(stamps)],
                None if at is None else to_seconds(at, f"{where}: at"),
            )
        )
    _report_extra(path, list(extra), "key")
    return histories


def _report_extra(path: Path, names: list[str], what: str) -> None:
    """One warning for input fields that are read by nothing (a misspelt ``at`` would be one)."""
    if names:
        log.warning(
            "%s: ignoring %s(s) %s; only user, item(s), timestamp(s) and at are read",
            path,
            what,
            names,
        )


def write_csv_recommendations(path: Path, users: list[str], results: list[Recommendations]) -> None:
    rows = [
        (user, rank, item, score, result.source)
        for user, result in zip(users, results)
        for rank, (item, score) in enumerate(result, start=1)
    ]
    table = pd.DataFrame(rows, columns=["user", "rank", "item", "score", "source"])
    write_atomic(path, lambda tmp: table.to_csv(tmp, index=False))


def write_jsonl_recommendations(path: Path, users: list[str], results: list[Recommendations]) -> None:
    lines = [
        json.dumps(
            {
                "user": user,
                "items": [item for item, _ in result],
                "scores": [score for _, score in result],
                "source": result.source,
                "skipped_items": result.skipped,
                "reason": result.reason,
            }
        )
        for user, result in zip(users, results)
    ]
    write_atomic(path, lambda tmp: tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8"))


READERS: dict[str, Callable[[Path], list[UserHistory]]] = {".csv": read_csv_histories, ".jsonl": read_jsonl_histories}
WRITERS: dict[str, Callable[[Path, list[str], list[Recommendations]], None]] = {
    ".csv": write_csv_recommendations,
    ".jsonl": write_jsonl_recommendations,
}


def _by_suffix(table: dict[str, Any], path: Path, key: str) -> Any:
    if path.suffix.lower() not in table:
        raise ConfigError(f"{key}={path}: expected a file ending in one of {sorted(table)}")
    return table[path.suffix.lower()]


def _check_options(cfg: DictConfig) -> None:
    """Command-line values whose type the scoring code would otherwise misread (``exclude_seen=maybe``)."""
    for key in ("exclude_seen", "progress"):
        if not isinstance(cfg[key], bool):
            raise ConfigError(f"{key}={cfg[key]!r}; expected true or false")
    for key in ("batch_size", "k"):
        value = cfg[key]
        if value is None and key == "k":
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(
                f"{key}={value!r}; expected a positive integer" + (" (or null for every item)" if key == "k" else "")
            )


def _check_output(target: Path, source: Path, run: Path | None = None) -> None:
    """Refuse, before any work, an output that would overwrite the input or the run's own files,
    or cannot be written."""
    if target.resolve() == source.resolve() or _same_file(target, source):
        raise ConfigError(
            f"output={target} is the input file ({source.resolve()}); writing there would replace the "
            "histories with the recommendations: choose another output path"
        )
    run_dir = _run_folder(run) if run is not None else None
    if run_dir is not None and target.resolve().is_relative_to(run_dir):
        raise ConfigError(
            f"output={target} is inside the run dir {run_dir}; writing there could replace the model's own "
            "files (item_map.csv, config, checkpoints): choose a path outside it"
        )
    if target.is_dir():
        raise ConfigError(f"output={target} is a folder; expected a file path ending in one of {sorted(WRITERS)}")
    if target.exists() and not target.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH):
        raise DataError(f"output={target} is read-only; make it writable or choose another output path")
    folder = next((p for p in (target.parent, *target.parent.parents) if p.exists()), Path("."))
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise DataError(
            f"output={target}: cannot write into {folder} (read-only or not a folder); choose another output path"
        )


def _run_folder(run: Path) -> Path | None:
    """The run dir ``run=`` names (a run dir, or a ``.ckpt`` in its ``checkpoints/``), resolved;
    ``None`` when it does not exist (loading it reports that)."""
    run = run.expanduser()
    if run.is_file():
        return run.resolve().parent.parent
    return run.resolve() if run.is_dir() else None


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)  # hard links and symlinks too
    except OSError:
        return False


def run(cfg: DictConfig) -> dict[str, int]:
    """Read the histories, score them with the run's model, write the top-k; return counts."""
    missing = [key for key in REQUIRED if OmegaConf.is_missing(cfg, key)]
    if missing:
        raise ConfigError(
            f"missing {', '.join(f'{key}=' for key in missing)}; usage: python -m deepm3.recommend "
            "run=<run dir> input=<histories .csv/.jsonl> output=<.csv/.jsonl> [k=10]"
        )
    source, target = Path(cfg.input).expanduser(), Path(cfg.output).expanduser()
    reader, writer = _by_suffix(READERS, source, "input"), _by_suffix(WRITERS, target, "output")
    _check_options(cfg)
    if not source.is_file():
        raise DataError(f"input={source}: no such file")
    _check_output(target, source, Path(str(cfg.run)))
    histories = reader(source)
    if not histories:
        raise DataError(f"input={source}: no histories in the file")
    recommender = Recommender.load(cfg.run, device=cfg.device)
    at = None if cfg.at is None else to_seconds(cfg.at, "at")
    results = recommender.recommend_batch(
        [h.items for h in histories],
        [h.timestamps for h in histories],
        at=[at if at is not None else h.at for h in histories],
        k=cfg.k,
        exclude_seen=cfg.exclude_seen,
        unknown_items=cfg.unknown_items,
        names=[f"user {h.user!r}" for h in histories],
        batch_size=cfg.batch_size,
        progress=cfg.progress,
    )
    try:
        writer(target, [h.user for h in histories], results)
    except OSError as exc:  # the checks above cannot foresee everything (a full disk, a folder made read-only)
        raise DataError(f"output={target}: cannot write it ({exc.strerror or exc})") from None
    summary = {
        "users": len(histories),
        "popularity": sum(r.source == "popularity" for r in results),
        "skipped_items": sum(len(r.skipped) for r in results),
    }
    log.info(
        "wrote top-%s for %d users to %s (%d from popularity: empty history; %d unknown items skipped)",
        cfg.k,
        summary["users"],
        target,
        summary["popularity"],
        summary["skipped_items"],
    )
    return summary


@hydra.main(version_base="1.3", config_path="conf", config_name="recommend")
def main(cfg: DictConfig) -> None:
    """Hydra entry point: bad input exits with one line on stderr and status 1."""
    try:
        run(cfg)
    except DeepM3Error as exc:
        log.error("%s", exc)
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)


def cli() -> None:
    """The console script: :func:`main` after a one-line check of the command line's config choices."""
    run_cli(main, config_name="recommend")


if __name__ == "__main__":
    cli()
