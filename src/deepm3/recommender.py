"""The Python API of a trained run: the top-k next items for a raw-id history, asked at a chosen moment.

A run dir written by ``python -m deepm3.train`` carries everything needed: the config (for
the window length), the item map, training popularity (for users without history) and the
weights; :mod:`deepm3.run_dir` reads them. The network is rebuilt from its checkpoint without
running anything the checkpoint names (:mod:`deepm3.run.checkpoint`).

Inputs are checked by :mod:`deepm3.history` and turned into windows by the function evaluation uses
(:func:`deepm3.data.samples.query_windows`): a served score equals an evaluated one.

:mod:`deepm3.server` (HTTP; ``python -m deepm3.serve run=<run dir>``, docs/serving.md) and
:mod:`deepm3.recommend` (batch scoring) are built on it; it imports neither.
"""

from __future__ import annotations

import logging
import math
import numbers
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf
from tqdm.auto import tqdm

from deepm3.data.samples import query_windows
from deepm3.device import resolve_device
from deepm3.errors import DataError
from deepm3.history import UNKNOWN_ITEM_POLICIES, History, is_sequence, validate_history
from deepm3.models.components.base import SequentialRecommender
from deepm3.models.components.time import DEFAULT_QUERY, check_query_mode, visible_inputs
from deepm3.run.checkpoint import Checkpoint
from deepm3.run_dir import POPULARITY_FILE, config_max_len, locate_run, read_config, read_item_map, read_popularity

log = logging.getLogger(__name__)


class Recommendations(list):
    """``[(raw item id, score), ...]``, best first, that also says how it was made.

    ``source`` is ``"model"``, or ``"popularity"`` when the history was empty (or held only
    skipped unknown items) and the most popular training items were returned, scored by
    their training counts. ``skipped`` lists the unknown raw ids left out of the history.
    ``reason`` says why a list is empty (the history holds every item and ``exclude_seen``
    left nothing), so an empty answer is never silent; ``None`` otherwise.
    """

    def __init__(
        self,
        ranked: Iterable[tuple[str, float]],
        source: str = "model",
        skipped: Sequence[str] = (),
        reason: str | None = None,
    ) -> None:
        super().__init__(ranked)
        self.source = source
        self.skipped = list(skipped)
        self.reason = reason


NOTHING_LEFT = (
    "every item the model knows is in the history and exclude_seen=true left none to recommend; "
    "ask with exclude_seen=false to rank the items already seen"
)


def empty_reason(ranked: Sequence[Any], exclude_seen: bool) -> str | None:
    """Why ``ranked`` is empty (it can only be when exclusion removed every item), else ``None``."""
    return NOTHING_LEFT if exclude_seen and not ranked else None


class Recommender:
    """A trained network plus its item map: raw-id histories in, ranked raw ids out.

    >>> rec = Recommender.load("outputs/runs/2024-05-01_12-00-00")  # doctest: +SKIP
    >>> top = rec.recommend(items=["50", "172"], timestamps=[881250949, 881251949], k=3)  # doctest: +SKIP
    >>> [item for item, score in top]  # three raw item ids, best first  # doctest: +SKIP
    """

    def __init__(
        self,
        net: SequentialRecommender,
        item_ids: Sequence[str],
        max_len: int,
        popularity: np.ndarray | None = None,
        device: str | torch.device = "auto",
        name: str = "model",
        query: str = DEFAULT_QUERY,
    ) -> None:
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
        config = read_config(run_dir)
        saved = Checkpoint.read(checkpoint)
        net = saved.build_net(run_dir, len(item_ids))
        recommender = cls(
            net,
            item_ids,
            max_len=config_max_len(config, run_dir),
            popularity=read_popularity(run_dir, item_ids),
            device=device,
            name=str(OmegaConf.select(config, "model.name", default="model")),
            query=saved.query,
        )
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

    def recommend(
        self,
        items: Sequence[Any],
        timestamps: Sequence[Any],
        at: Any = None,
        k: int | None = 10,
        exclude_seen: bool = True,
        unknown_items: str = "error",
    ) -> Recommendations:
        """Top-``k`` next items for one history (raw ids, unix seconds in time order) asked at ``at``.

        ``at`` defaults to now and may not precede the last event. ``k=None`` ranks every
        candidate. ``exclude_seen`` leaves the history's items out. ``unknown_items="skip"``
        drops raw ids the model never saw (listed in ``result.skipped``) instead of failing.
        An empty history gets the most popular training items (``result.source == "popularity"``).
        """
        return self.recommend_batch(
            [items], [timestamps], [at], k=k, exclude_seen=exclude_seen, unknown_items=unknown_items, names=[None]
        )[0]

    def recommend_batch(
        self,
        items: Sequence[Sequence[Any]],
        timestamps: Sequence[Sequence[Any]],
        at: Any = None,
        k: int | None = 10,
        exclude_seen: bool = True,
        unknown_items: str = "error",
        names: Sequence[str | None] | None = None,
        batch_size: int = 256,
        progress: bool = False,
    ) -> list[Recommendations]:
        """:meth:`recommend` for many histories, scored ``batch_size`` at a time.

        ``at`` is one query time for all, or one per history (``None`` entries mean now).
        ``names`` (e.g. user ids) label the histories in error messages. Every history is
        validated before any is scored, so bad input fails fast.
        """
        if len(items) != len(timestamps):
            raise DataError(
                f"{len(items)} item lists but {len(timestamps)} timestamp lists; expected one of each per history"
            )
        if k is not None and (isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1):
            raise DataError(f"k={k!r}; expected a positive integer (or None for every item)")
        if unknown_items not in UNKNOWN_ITEM_POLICIES:
            raise DataError(f"unknown_items={unknown_items!r}; expected one of {list(UNKNOWN_ITEM_POLICIES)}")
        if batch_size < 1:
            raise DataError(f"batch_size={batch_size!r}; expected a positive integer")
        count = len(items)
        ats = list(at) if is_sequence(at) else [at] * count
        labels = list(names) if names is not None else [f"history {i}" for i in range(count)]
        if len(ats) != count or len(labels) != count:
            raise DataError(f"{count} histories but {len(ats)} query times and {len(labels)} names")
        now = int(time.time())
        histories = [
            self.validate_history(items[i], timestamps[i], unknown_items, labels[i], now=now, at=ats[i])
            for i in range(count)
        ]
        empty = [labels[i] or "the history" for i, h in enumerate(histories) if not len(h.items)]
        if empty and not self.has_popularity:
            raise DataError(
                f"{empty[0]} is empty and needs popularity counts, but the run dir has no {POPULARITY_FILE} "
                "and its processed data is gone; retrain, or give a non-empty history"
            )
        results: list[Recommendations | None] = [None] * count
        scored = [i for i, h in enumerate(histories) if len(h.items)]
        with tqdm(total=count, unit="user", disable=not progress) as bar:
            for start in range(0, len(scored), batch_size):
                chunk = scored[start : start + batch_size]
                ranked = self._rank([histories[i] for i in chunk], k, exclude_seen)
                for i, result in zip(chunk, ranked):
                    result.skipped = histories[i].skipped
                    results[i] = result
                bar.update(len(chunk))
            for i, history in enumerate(histories):
                if results[i] is None:
                    results[i] = self.recommend_popular(k, history.skipped)
                    bar.update(1)
        self._report(histories, labels, results)  # type: ignore[arg-type]
        return results  # type: ignore[return-value]

    def validate_history(
        self,
        items: Sequence[Any],
        timestamps: Sequence[Any],
        unknown_items: str = "error",
        label: str | None = None,
        now: int | None = None,
        at: Any = None,
        body: bool = False,
    ) -> History:
        """One history checked and put in this run's index space: :func:`deepm3.history.validate_history`."""
        return validate_history(self.index, items, timestamps, unknown_items, label, now, at, body, self.num_items)

    def _rank(self, histories: list[History], k: int | None, exclude_seen: bool) -> list[Recommendations]:
        return self.recommend_scores(self._scores(histories), [h.items for h in histories], k, exclude_seen)

    def recommend_scores(
        self, scores: torch.Tensor, seen: Sequence[np.ndarray], k: int | None, exclude_seen: bool
    ) -> list[Recommendations]:
        """:class:`Recommendations` (``source="model"``) from ``[B, N + 1]`` scores of
        :meth:`score_windows` or :meth:`score_states`, ranked by :meth:`rank_scores`; a list that
        ``exclude_seen`` emptied says why (its ``reason``)."""
        return [
            Recommendations(pairs, "model", reason=empty_reason(pairs, exclude_seen))
            for pairs in self.rank_scores(scores, seen, k, exclude_seen)
        ]

    def rank_scores(
        self, scores: torch.Tensor, seen: Sequence[np.ndarray], k: int | None, exclude_seen: bool
    ) -> list[list[tuple[str, float]]]:
        """Top-``k`` ``(raw id, score)`` per row of ``[B, N + 1]`` scores (changed in place).

        Column 0 (padding) is never returned; ``exclude_seen`` leaves out each row's ``seen``
        item indices.
        """
        scores[:, 0] = -math.inf  # padding is never an item
        if exclude_seen and sum(len(s) for s in seen):
            rows = torch.cat([torch.full((len(s),), r, dtype=torch.long) for r, s in enumerate(seen)])
            cols = torch.from_numpy(np.concatenate([np.asarray(s, dtype=np.int64) for s in seen]))
            scores[rows.to(scores.device), cols.to(scores.device)] = -math.inf
        top = scores.topk(self.num_items if k is None else min(k, self.num_items), dim=1)
        values, indices = top.values.cpu().numpy(), top.indices.cpu().numpy()
        return [
            [(str(self.item_ids[i - 1]), float(v)) for v, i in zip(vs, ix) if v != -math.inf]
            for vs, ix in zip(values, indices)
        ]

    def _scores(self, histories: list[History]) -> torch.Tensor:
        return self.score_windows([h.items for h in histories], [h.times for h in histories], [h.at for h in histories])

    def score_windows(
        self, items: Sequence[np.ndarray], times: Sequence[np.ndarray], ats: Sequence[int]
    ) -> torch.Tensor:
        """``[B, N + 1]`` float scores (column 0 is padding), on the recommender's device, for
        validated histories in index space (the most recent ``max_len`` events are used)."""
        items, times, next_times = query_windows(list(items), list(times), list(ats), self.max_len)
        batch = {
            name: torch.from_numpy(array).to(self.device)
            for name, array in (("items", items), ("times", times), ("next_times", next_times))
        }
        with torch.no_grad():
            return self.net.predict(visible_inputs(batch, self.query)).float()

    def score_states(self, states: Sequence[torch.Tensor], gaps: Sequence[int]) -> torch.Tensor:
        """``[B, N + 1]`` float scores (column 0 is padding) of stored per-user states of a
        streaming network (one with ``readout``; :mod:`deepm3.server.state` keeps them), each
        flowed ``gaps[b]`` seconds past its last event: what a known user is asked."""
        h = torch.stack(list(states))
        gap = torch.tensor(list(gaps), dtype=torch.long, device=h.device)
        with torch.no_grad():
            return self.net.readout(h, gap).float()

    @property
    def has_popularity(self) -> bool:
        """Whether the run has training popularity counts, which a history without known items needs."""
        return self.popularity is not None

    def recommend_popular(self, k: int | None, skipped: Sequence[str] = ()) -> Recommendations:
        """What a history without known items gets: :meth:`popular` as ``source="popularity"``."""
        return Recommendations(self.popular(k), "popularity", skipped)

    def popular(self, k: int | None) -> list[tuple[str, float]]:
        """The ``k`` most popular training items with their counts (what an empty history gets)."""
        assert self.popularity is not None  # checked with the input
        order = np.argsort(-self.popularity[1:], kind="stable") + 1  # ties: item index order
        order = order if k is None else order[:k]
        return [(str(self.item_ids[i - 1]), float(self.popularity[i])) for i in order]

    @staticmethod
    def _report(histories: list[History], labels: list[str | None], results: list[Recommendations]) -> None:
        exhausted = [labels[i] or "the history" for i, r in enumerate(results) if r.reason]
        if exhausted:
            log.warning(
                "%d of %d histories hold every item (first: %s): their lists are empty (%s)",
                len(exhausted),
                len(histories),
                exhausted[0],
                NOTHING_LEFT,
            )
        empty = [labels[i] or "the history" for i, h in enumerate(histories) if not len(h.items)]
        if empty:
            log.warning(
                "%d of %d histories empty (first: %s): recommending the most popular training items "
                "(source=popularity)",
                len(empty),
                len(histories),
                empty[0],
            )
        skipped = [item for h in histories for item in h.skipped]
        if skipped:
            users = sum(1 for h in histories if h.skipped)
            log.warning(
                "skipped %d unknown item ids in %d of %d histories (unknown_items=skip), first: %r",
                len(skipped),
                users,
                len(histories),
                skipped[0],
            )
