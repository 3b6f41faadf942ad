"""Serve a trained run: the top-k next items for a raw-id history, asked at a chosen moment.

A run dir written by ``python -m deepm3.train`` carries everything needed: the config
(``.hydra/config.yaml``, for the window length), the item map (``item_map.csv``: raw id of
each item index), training popularity (``item_popularity.csv``, for users without history)
and the weights (``checkpoints/``). Weights load with ``torch.load(weights_only=True)`` and
the network is rebuilt from the checkpoint's plain hyper-parameters after looking its class
name up in an allow-list (:mod:`deepm3.registry`; nothing a checkpoint names is imported
first), so nothing stored in a checkpoint runs code. A checkpoint records the item map it was
trained on (``deepm3_data``); one whose items differ from the run dir's is refused.

Inputs are turned into windows by the function evaluation uses
(:func:`deepm3.data.samples.query_windows`): a served score equals an evaluated one.

Over HTTP: ``python -m deepm3.serve run=<run dir>`` starts the server of :mod:`deepm3.server`
(docs/serving.md); this module stays the Python API it is built on.
"""

from __future__ import annotations

import json
import logging
import math
import numbers
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from omegaconf import OmegaConf
from tqdm.auto import tqdm

from deepm3.data.processed import DATA_STAMP_KEY, ITEM_MAP_FILE, ProcessedData, item_map_digest
from deepm3.data.samples import query_windows, training_item_counts
from deepm3.models.components.time import check_query_mode, visible_inputs
from deepm3.errors import DataError
from deepm3.registry import network_class
from deepm3.models.components.base import SequentialRecommender

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
CONFIG_FILE = Path(".hydra") / "config.yaml"
POPULARITY_FILE = "item_popularity.csv"
METRICS_FILE = "metrics.json"
UNKNOWN_ITEM_POLICIES = ("error", "skip")


class Recommendations(list):
    """``[(raw item id, score), ...]``, best first, that also says how it was made.

    ``source`` is ``"model"``, or ``"popularity"`` when the history was empty (or held only
    skipped unknown items) and the most popular training items were returned, scored by
    their training counts. ``skipped`` lists the unknown raw ids left out of the history.
    """

    def __init__(self, ranked: Iterable[tuple[str, float]], source: str = "model", skipped: Sequence[str] = ()) -> None:
        super().__init__(ranked)
        self.source = source
        self.skipped = list(skipped)


@dataclass
class _History:
    """One validated history in index space."""

    items: np.ndarray  # item indices 1..N, time order
    times: np.ndarray  # int64 unix seconds
    at: int  # query time, >= the last event
    skipped: list[str]


def to_seconds(value: Any, what: str) -> int:
    """A timestamp as int unix seconds (numbers or numeric strings; fractions are floored).

    Like training data, a time must be non-negative and fit an int64 (below 2^63); anything
    else is a one-line :class:`DataError` quoting the value as given.
    """
    if isinstance(value, (bool, np.bool_)):
        raise DataError(f"{what}={value!r} is not a number of unix seconds")
    if isinstance(value, numbers.Integral):
        return _seconds_in_range(int(value), value, what)
    if isinstance(value, str):
        text = value.strip()
        try:
            return _seconds_in_range(int(text), value, what)
        except ValueError:
            value = text
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise DataError(f"{what}={value!r} is not a number of unix seconds") from None
    if not math.isfinite(number):
        raise DataError(f"{what}={value!r} is not a finite number of unix seconds")
    return _seconds_in_range(math.floor(number), value, what)


MAX_SECONDS = 2**63 - 1  # int64, as training stores times


def _seconds_in_range(seconds: int, given: Any, what: str) -> int:
    if not 0 <= seconds <= MAX_SECONDS:
        raise DataError(f"{what}={given!r} is out of range; expected a non-negative integer number of unix seconds "
                        "below 2^63 (as in training data)")
    return seconds


class Recommender:
    """A trained network plus its item map: raw-id histories in, ranked raw ids out.

    >>> rec = Recommender.load("outputs/runs/2024-05-01_12-00-00")  # doctest: +SKIP
    >>> top = rec.recommend(items=["50", "172"], timestamps=[881250949, 881251949], k=3)  # doctest: +SKIP
    >>> [item for item, score in top]  # three raw item ids, best first  # doctest: +SKIP
    """

    def __init__(self, net: SequentialRecommender, item_ids: Sequence[str], max_len: int,
                 popularity: np.ndarray | None = None, device: str | torch.device = "auto", name: str = "model",
                 query: str = "target") -> None:
        if len(item_ids) != net.num_items:
            raise DataError(f"the network scores {net.num_items} items but the item map lists {len(item_ids)}")
        self.device = resolve_device(device)
        self.net = net.to(self.device).eval()
        self.item_ids = np.asarray(item_ids, dtype=str)
        self.index = {raw: i + 1 for i, raw in enumerate(self.item_ids.tolist())}
        self.max_len = int(max_len)
        self.popularity = popularity
        self.name = name
        self.query = check_query_mode(query)  # the run's time.query: under `last`, `at` is never seen

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "auto") -> "Recommender":
        """Load a run dir (its best checkpoint) or one ``.ckpt`` inside a run dir's ``checkpoints/``."""
        run_dir, checkpoint = locate_run(Path(path).expanduser())
        item_ids = read_item_map(run_dir)
        config = read_run_config(run_dir)
        net = build_net(checkpoint, run_dir, len(item_ids))
        recommender = cls(net, item_ids, max_len=run_max_len(config, run_dir),
                          popularity=read_popularity(run_dir, item_ids), device=device,
                          name=str(OmegaConf.select(config, "model.name", default="model")),
                          query=str(OmegaConf.select(config, "time.query", default="target")))
        log.info("loaded %r from %s", recommender, checkpoint)
        return recommender

    @property
    def num_items(self) -> int:
        return len(self.item_ids)

    @property
    def uses_time(self) -> bool:
        """Whether scores depend on timestamps (a time-blind model ignores them; under
        ``time.query=last`` no model sees ``at``)."""
        return bool(getattr(self.net, "uses_time", False))

    def __repr__(self) -> str:
        return f"Recommender({self.name}, {self.num_items} items, max_len={self.max_len}, device={self.device})"

    def recommend(self, items: Sequence[Any], timestamps: Sequence[Any], at: Any = None, k: int | None = 10,
                  exclude_seen: bool = True, unknown_items: str = "error") -> Recommendations:
        """Top-``k`` next items for one history (raw ids, unix seconds in time order) asked at ``at``.

        ``at`` defaults to now and may not precede the last event. ``k=None`` ranks every
        candidate. ``exclude_seen`` leaves the history's items out. ``unknown_items="skip"``
        drops raw ids the model never saw (listed in ``result.skipped``) instead of failing.
        An empty history gets the most popular training items (``result.source == "popularity"``).
        """
        return self.recommend_batch([items], [timestamps], [at], k=k, exclude_seen=exclude_seen,
                                    unknown_items=unknown_items, names=[None])[0]

    def recommend_batch(self, items: Sequence[Sequence[Any]], timestamps: Sequence[Sequence[Any]], at: Any = None,
                        k: int | None = 10, exclude_seen: bool = True, unknown_items: str = "error",
                        names: Sequence[str | None] | None = None, batch_size: int = 256,
                        progress: bool = False) -> list[Recommendations]:
        """:meth:`recommend` for many histories, scored ``batch_size`` at a time.

        ``at`` is one query time for all, or one per history (``None`` entries mean now).
        ``names`` (e.g. user ids) label the histories in error messages. Every history is
        validated before any is scored, so bad input fails fast.
        """
        if len(items) != len(timestamps):
            raise DataError(f"{len(items)} item lists but {len(timestamps)} timestamp lists; "
                            "expected one of each per history")
        if k is not None and (isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1):
            raise DataError(f"k={k!r}; expected a positive integer (or None for every item)")
        if unknown_items not in UNKNOWN_ITEM_POLICIES:
            raise DataError(f"unknown_items={unknown_items!r}; expected one of {list(UNKNOWN_ITEM_POLICIES)}")
        if batch_size < 1:
            raise DataError(f"batch_size={batch_size!r}; expected a positive integer")
        count = len(items)
        ats = list(at) if _is_sequence(at) else [at] * count
        labels = list(names) if names is not None else [f"history {i}" for i in range(count)]
        if len(ats) != count or len(labels) != count:
            raise DataError(f"{count} histories but {len(ats)} query times and {len(labels)} names")
        now = int(time.time())
        histories = [self._validate(items[i], timestamps[i], ats[i], now, unknown_items, labels[i]) for i in range(count)]
        empty = [labels[i] or "the history" for i, h in enumerate(histories) if not len(h.items)]
        if empty and self.popularity is None:
            raise DataError(f"{empty[0]} is empty and needs popularity counts, but the run dir has no {POPULARITY_FILE} "
                            "and its processed data is gone; retrain, or give a non-empty history")
        results: list[Recommendations | None] = [None] * count
        scored = [i for i, h in enumerate(histories) if len(h.items)]
        with tqdm(total=count, unit="user", disable=not progress) as bar:
            for start in range(0, len(scored), batch_size):
                chunk = scored[start:start + batch_size]
                ranked = self._rank([histories[i] for i in chunk], k, exclude_seen)
                for i, pairs in zip(chunk, ranked):
                    results[i] = Recommendations(pairs, "model", histories[i].skipped)
                bar.update(len(chunk))
            for i, history in enumerate(histories):
                if results[i] is None:
                    results[i] = Recommendations(self._popular(k), "popularity", history.skipped)
                    bar.update(1)
        self._report(histories, labels)
        return results  # type: ignore[return-value]

    def _validate(self, items: Sequence[Any], timestamps: Sequence[Any], at: Any, now: int, unknown_items: str,
                  label: str | None) -> _History:
        where = f"{label}: " if label else ""
        for field, values in (("items", items), ("timestamps", timestamps)):
            if isinstance(values, (str, bytes)) or not _is_sequence(values):
                raise DataError(f"{where}{field}={values!r}; expected a list")
        if len(items) != len(timestamps):
            raise DataError(f"{where}{len(items)} items but {len(timestamps)} timestamps; expected one timestamp per item")
        times = np.array([to_seconds(t, f"{where}timestamps[{j}]") for j, t in enumerate(timestamps)], dtype=np.int64)
        backwards = np.flatnonzero(np.diff(times) < 0)
        if len(backwards):
            j = int(backwards[0]) + 1
            raise DataError(f"{where}timestamps must be in time order (oldest first): timestamps[{j}]={times[j]} "
                            f"is earlier than timestamps[{j - 1}]={times[j - 1]}")
        query = now if at is None else to_seconds(at, f"{where}at")
        if len(times) and query < times[-1]:
            asked = f"at={query}" if at is not None else f"at=now ({query})"
            raise DataError(f"{where}{asked} is earlier than the last event (timestamps[{len(times) - 1}]={times[-1]}); "
                            "a prediction is asked after the history")
        raw = [str(item) for item in items]
        indices = np.array([self.index.get(r, 0) for r in raw], dtype=np.int64)
        unknown = np.flatnonzero(indices == 0)
        if len(unknown) and unknown_items == "error":
            j = int(unknown[0])
            raise DataError(f"{where}unknown item id {raw[j]!r} (items[{j}]): not in the run's item map of "
                            f"{self.num_items} items; pass unknown_items='skip' to leave unknown items out")
        known = indices > 0
        return _History(indices[known], times[known], query, [raw[j] for j in unknown])

    def _rank(self, histories: list[_History], k: int | None, exclude_seen: bool) -> list[list[tuple[str, float]]]:
        return self.rank_scores(self._scores(histories), [h.items for h in histories], k, exclude_seen)

    def rank_scores(self, scores: torch.Tensor, seen: Sequence[np.ndarray], k: int | None,
                    exclude_seen: bool) -> list[list[tuple[str, float]]]:
        """Top-``k`` ``(raw id, score)`` per row of ``[B, N + 1]`` scores (changed in place).

        Column 0 (padding) is never returned; ``exclude_seen`` leaves out each row's ``seen``
        item indices. Public so the HTTP server ranks stored-state scores the way this class does.
        """
        scores[:, 0] = -math.inf  # padding is never an item
        if exclude_seen and sum(len(s) for s in seen):
            rows = torch.cat([torch.full((len(s),), r, dtype=torch.long) for r, s in enumerate(seen)])
            cols = torch.from_numpy(np.concatenate([np.asarray(s, dtype=np.int64) for s in seen]))
            scores[rows.to(scores.device), cols.to(scores.device)] = -math.inf
        top = scores.topk(self.num_items if k is None else min(k, self.num_items), dim=1)
        values, indices = top.values.cpu().numpy(), top.indices.cpu().numpy()
        return [[(str(self.item_ids[i - 1]), float(v)) for v, i in zip(vs, ix) if v != -math.inf]
                for vs, ix in zip(values, indices)]

    def _scores(self, histories: list[_History]) -> torch.Tensor:
        return self.score_windows([h.items for h in histories], [h.times for h in histories],
                                  [h.at for h in histories])

    def score_windows(self, items: Sequence[np.ndarray], times: Sequence[np.ndarray],
                      ats: Sequence[int]) -> torch.Tensor:
        """``[B, N + 1]`` float scores (column 0 is padding), on the recommender's device, for
        validated histories in index space (the most recent ``max_len`` events are used)."""
        items, times, next_times = query_windows(list(items), list(times), list(ats), self.max_len)
        batch = {name: torch.from_numpy(array).to(self.device)
                 for name, array in (("items", items), ("times", times), ("next_times", next_times))}
        with torch.no_grad():
            return self.net.predict(visible_inputs(batch, self.query)).float()

    def _popular(self, k: int | None) -> list[tuple[str, float]]:
        return self.popular(k)

    def popular(self, k: int | None) -> list[tuple[str, float]]:
        """The ``k`` most popular training items with their counts (what an empty history gets)."""
        assert self.popularity is not None  # checked with the input
        order = np.argsort(-self.popularity[1:], kind="stable") + 1  # ties: item index order
        order = order if k is None else order[:k]
        return [(str(self.item_ids[i - 1]), float(self.popularity[i])) for i in order]

    @staticmethod
    def _report(histories: list[_History], labels: list[str | None]) -> None:
        empty = [labels[i] or "the history" for i, h in enumerate(histories) if not len(h.items)]
        if empty:
            log.warning("%d of %d histories empty (first: %s): recommending the most popular training items "
                        "(source=popularity)", len(empty), len(histories), empty[0])
        skipped = [item for h in histories for item in h.skipped]
        if skipped:
            users = sum(1 for h in histories if h.skipped)
            log.warning("skipped %d unknown item ids in %d of %d histories (unknown_items=skip), first: %r",
                        len(skipped), users, len(histories), skipped[0])


def _is_sequence(value: Any) -> bool:
    return isinstance(value, (Sequence, np.ndarray, pd.Series)) and not isinstance(value, (str, bytes))


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"``: the GPU when there is one, else the CPU. A device that is not there is a one-line error."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise DataError(f"device={device!r} is not a device; expected auto, cpu, cuda or cuda:<n>") from None
    if resolved.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0 or (resolved.index is not None and resolved.index >= count):
            raise DataError(f"device={device!r}: no such CUDA device on this machine ({count} found); "
                            "use device=cpu or device=auto")
    elif resolved.type not in ("cpu", "cuda", "mps") or (resolved.type == "mps" and not _mps_available()):
        raise DataError(f"device={device!r} is not available here; expected auto, cpu, cuda or cuda:<n>")
    return resolved


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def locate_run(path: Path) -> tuple[Path, Path]:
    """``(run dir, checkpoint)`` for a run dir or a ``.ckpt`` in its ``checkpoints/``."""
    if path.is_file():
        if path.suffix != ".ckpt" or path.parent.name != CHECKPOINT_DIR:
            raise DataError(f"{path}: expected a run dir or a .ckpt file inside <run dir>/{CHECKPOINT_DIR}/ "
                            "(the run dir holds the config and item map the weights need)")
        return path.parent.parent, path
    if not path.is_dir():
        raise DataError(f"{path}: no such run dir or checkpoint")
    return path, best_checkpoint(path)


def best_checkpoint(run_dir: Path) -> Path:
    """The checkpoint ``metrics.json`` names (the one tested), else ``best-*``, else ``last.ckpt``."""
    folder = run_dir / CHECKPOINT_DIR
    metrics = run_dir / METRICS_FILE
    if metrics.is_file():
        named = json.loads(metrics.read_text()).get("best_checkpoint")
        if named and (folder / Path(named).name).is_file():  # by name: the run dir may have moved
            return folder / Path(named).name
    candidates = sorted(folder.glob("best-*.ckpt")) or sorted(folder.glob("last.ckpt"))
    if not candidates:
        raise DataError(f"{run_dir}: no checkpoint in {CHECKPOINT_DIR}/; "
                        "expected a run dir written by python -m deepm3.train")
    return candidates[-1]


def read_item_map(run_dir: Path) -> np.ndarray:
    """Raw ids of items 1..N (``item_map.csv``, saved by training)."""
    path = run_dir / ITEM_MAP_FILE
    if not path.is_file():
        raise DataError(f"{run_dir}: no {ITEM_MAP_FILE}; expected a run dir written by python -m deepm3.train")
    table = pd.read_csv(path, dtype={"raw_id": str}, keep_default_na=False)
    if list(table.columns) != ["index", "raw_id"] or table["index"].tolist() != list(range(1, len(table) + 1)):
        raise DataError(f"{path}: expected columns index,raw_id with index 1..N in order")
    return table["raw_id"].to_numpy(dtype=str)


def read_run_config(run_dir: Path) -> Any:
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        raise DataError(f"{run_dir}: no {CONFIG_FILE}; expected a run dir written by python -m deepm3.train")
    return OmegaConf.load(path)


def run_max_len(config: Any, run_dir: Path) -> int:
    """The window length the model was trained and evaluated with (``dataset.max_len``)."""
    max_len = OmegaConf.select(config, "dataset.max_len", default=None)
    if isinstance(max_len, bool) or not isinstance(max_len, int) or max_len < 1:
        raise DataError(f"{run_dir / CONFIG_FILE}: dataset.max_len={max_len!r}; expected a positive integer")
    return max_len


def build_net(checkpoint: Path, run_dir: Path, num_items: int) -> SequentialRecommender:
    """The network of a Lightning checkpoint, rebuilt from plain data and filled with its weights."""
    try:
        saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling refuses anything but tensors and plain containers
        raise DataError(f"{checkpoint}: not a loadable weights-only checkpoint ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    params = saved.get("hyper_parameters", {}) if isinstance(saved, Mapping) else {}
    net_cfg = params.get("net")
    if not isinstance(net_cfg, Mapping) or "_target_" not in net_cfg or "state_dict" not in saved:
        raise DataError(f"{checkpoint}: expected a deepm3 training checkpoint (hyper_parameters.net and state_dict)")
    trained_items = params.get("num_items")
    if trained_items != num_items:
        raise DataError(f"{checkpoint}: trained on {trained_items} items but {run_dir / ITEM_MAP_FILE} lists "
                        f"{num_items}; the checkpoint comes from another dataset")
    _check_data_stamp(saved.get(DATA_STAMP_KEY), checkpoint, run_dir)
    net_class = network_class(net_cfg["_target_"], str(checkpoint))  # an allow-list: nothing named is imported
    kwargs = {key: value for key, value in net_cfg.items() if key != "_target_"}
    if _has_target(kwargs):
        raise DataError(f"{checkpoint}: nested _target_ in hyper_parameters.net; serving builds only plain-data networks")
    try:
        net = net_class(num_items=num_items, **kwargs)
    except (TypeError, ValueError) as exc:  # options of another deepm3 version, or values out of range
        raise DataError(f"{checkpoint}: cannot rebuild {net_cfg['_target_']} from its hyper_parameters.net ({exc})") from None
    weights = {key.removeprefix("net."): value for key, value in saved["state_dict"].items() if key.startswith("net.")}
    try:
        net.load_state_dict(weights)
    except RuntimeError as exc:
        raise DataError(f"{checkpoint}: its weights do not fit {net_cfg['_target_']} over {num_items} items "
                        f"({str(exc).splitlines()[-1].strip()})") from None
    return net


def _check_data_stamp(stamp: Any, checkpoint: Path, run_dir: Path) -> None:
    """Refuse a checkpoint whose recorded item map is not the run dir's (same count, other items).

    Checkpoints written before the stamp existed carry none and are served as before.
    """
    if not isinstance(stamp, Mapping) or "item_map_sha256" not in stamp:
        return
    if stamp["item_map_sha256"] != item_map_digest(read_item_map(run_dir)):
        raise DataError(f"{checkpoint}: trained on another dataset ({stamp.get('dataset')!r}, cache "
                        f"{stamp.get('cache_key')}) than {run_dir / ITEM_MAP_FILE} describes: the same "
                        f"{stamp.get('num_items')} item columns mean other items; serve it from its own run dir")


def _has_target(value: Any) -> bool:
    if isinstance(value, Mapping):
        return "_target_" in value or any(_has_target(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_has_target(v) for v in value)
    return False


def read_popularity(run_dir: Path, item_ids: np.ndarray) -> np.ndarray | None:
    """``[N + 1]`` training counts per item: ``item_popularity.csv``, else recomputed from the
    run's processed data (runs trained before the file existed); ``None`` when neither is there."""
    path = run_dir / POPULARITY_FILE
    if path.is_file():
        table = pd.read_csv(path, dtype={"raw_id": str}, keep_default_na=False)
        if table["raw_id"].tolist() != item_ids.tolist():
            raise DataError(f"{path} does not list the items of {run_dir / ITEM_MAP_FILE} in the same order; "
                            "the two files come from different datasets")
        return np.concatenate([[0], table["count"].to_numpy(dtype=np.int64)])
    metrics = run_dir / METRICS_FILE
    data_dir = json.loads(metrics.read_text()).get("data", {}).get("data_dir") if metrics.is_file() else None
    if not data_dir or not ProcessedData.is_complete(Path(data_dir)):
        return None
    data = ProcessedData.load(Path(data_dir))
    if data.item_ids.tolist() != item_ids.tolist():
        raise DataError(f"{data_dir}: its item map differs from {run_dir / ITEM_MAP_FILE}; cannot count popularity")
    return training_item_counts(data)


if __name__ == "__main__":  # python -m deepm3.serve run=<run dir>: the HTTP server (deepm3.server)
    from deepm3.server.cli import main

    main()
