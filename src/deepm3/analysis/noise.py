"""Test-time perturbations of the prediction inputs (docs/experiments.md, "Robustness"; no re-training).

The operators act on the left-padded evaluation arrays of :mod:`deepm3.data.samples`
(``items``, ``times``, ``next_times``; 0 = padding on the left, the last column is the most
recent history event). Within a row the history is ``t_1 <= ... <= t_m`` and the query time
``q = next_times[:, -1]`` is the target's timestamp. A row's **gaps** are the ``m`` values
``next_times - times`` on its history positions: ``t_2 - t_1, ..., t_m - t_{m-1}`` and the
query gap ``q - t_m``. Every operator

- never changes the target, its timestamp ``q`` or the ``targets`` array (it does not see it);
- only perturbs history positions: padding stays padding (item dropout may add padding);
- keeps the arrays consistent: ``times`` non-decreasing along the history, ``next_times[i] ==
  times[i + 1]`` inside the history and ``next_times[-1] == q``, so every gap stays ``>= 0``;
- is deterministic given ``seed`` (numpy ``default_rng``); the same seed at different levels
  reuses the same random draws, so degradation curves compare like with like.

Time operators rebuild timestamps from gaps *anchored at q* (``t_i = q - sum_{j >= i} g_j``):
the prediction moment is fixed and the history moves around it. The history exclusion of the
evaluation (``exclude_history``) keeps using the true history: noise perturbs what the model
sees, not what the protocol ranks.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from deepm3.data.samples import SampleArrays
from deepm3.errors import ConfigError


@dataclass(frozen=True)
class PredictionInputs:
    """What a model sees at test time: ``[n, max_len]`` int64 arrays plus the catalogue size.

    ``num_items`` is the item range ``1..num_items`` that item replacement draws from;
    ``targets`` (``[n]``, optional) the item each row predicts, which no operator may put into
    the input (a replaced item equal to the answer would leak it).
    """

    items: np.ndarray
    times: np.ndarray
    next_times: np.ndarray
    num_items: int
    targets: np.ndarray | None = None

    @classmethod
    def from_samples(cls, samples: SampleArrays, num_items: int) -> PredictionInputs:
        return cls(samples.items, samples.times, samples.next_times, num_items, samples.targets[:, -1])

    @property
    def history(self) -> np.ndarray:
        """Boolean mask of real (non-padding) history positions."""
        return self.items != 0

    @property
    def query_times(self) -> np.ndarray:
        return self.next_times[:, -1]

    def gaps(self) -> np.ndarray:
        """Seconds from each history event to the next one (or to the query); 0 on padding."""
        return np.where(self.history, self.next_times - self.times, 0)

    def with_times(self, times: np.ndarray) -> PredictionInputs:
        """Same items and query times, new history timestamps; ``next_times`` follows them."""
        history = self.history
        following = np.concatenate([times[:, 1:], self.query_times[:, None]], axis=1)
        return dataclasses.replace(
            self,
            times=np.where(history, times, 0).astype(np.int64),
            next_times=np.where(history, following, 0).astype(np.int64),
        )

    def with_gaps(self, gaps: np.ndarray) -> PredictionInputs:
        """Timestamps rebuilt from gaps, anchored at the query time: ``t_i = q - sum_{j>=i} g_j``."""
        gaps = np.where(self.history, gaps, 0)
        to_query = np.cumsum(gaps[:, ::-1], axis=1)[:, ::-1]
        return self.with_times(self.query_times[:, None] - to_query)


@dataclass(frozen=True)
class NoiseOperator(ABC):
    """One perturbation at one strength ``level``; ``operator(inputs, seed)`` applies it."""

    level: float
    name: ClassVar[str]
    max_level: ClassVar[float] = 1.0  # rates are fractions; jitter overrides with inf

    def __post_init__(self) -> None:
        if not 0.0 <= float(self.level) <= self.max_level:
            raise ConfigError(f"noise {self.name}: level={self.level!r}; expected a number in [0, {self.max_level}]")

    def __call__(self, inputs: PredictionInputs, seed: int) -> PredictionInputs:
        return self.apply(inputs, np.random.default_rng(seed))

    @abstractmethod
    def apply(self, inputs: PredictionInputs, rng: np.random.Generator) -> PredictionInputs:
        """Return perturbed copies of the arrays; ``inputs`` is never modified."""


@dataclass(frozen=True)
class Clean(NoiseOperator):
    """The reference: inputs unchanged (level must be 0)."""

    level: float = 0.0
    name: ClassVar[str] = "clean"
    max_level: ClassVar[float] = 0.0

    def apply(self, inputs: PredictionInputs, rng: np.random.Generator) -> PredictionInputs:
        return dataclasses.replace(
            inputs, items=inputs.items.copy(), times=inputs.times.copy(), next_times=inputs.next_times.copy()
        )


@dataclass(frozen=True)
class TimestampJitter(NoiseOperator):
    """Each history timestamp moves by Normal(0, (level x the row's mean gap)^2), then re-sorted.

    The row's mean gap is ``(q - t_1) / m`` over its ``m`` input events (query gap included):
    relative, so one level means the same on second- and day-resolution datasets. Jittered
    times are clipped to ``[0, q]`` and sorted, so the item order is kept and only the timing
    changes.
    """

    name: ClassVar[str] = "jitter"
    max_level: ClassVar[float] = float("inf")

    def apply(self, inputs: PredictionInputs, rng: np.random.Generator) -> PredictionInputs:
        history = inputs.history
        events = history.sum(axis=1)
        first = np.where(events > 0, inputs.times[np.arange(len(events)), np.argmax(history, axis=1)], 0)
        mean_gap = np.where(events > 0, (inputs.query_times - first) / np.maximum(events, 1), 0.0)
        noise = rng.normal(size=inputs.times.shape) * (self.level * mean_gap)[:, None]
        moved = np.clip(np.rint(inputs.times + noise), 0, inputs.query_times[:, None]).astype(np.int64)
        moved = np.sort(np.where(history, moved, -1), axis=1)  # padding (-1) stays on the left
        return inputs.with_times(moved)


@dataclass(frozen=True)
class TimestampDrop(NoiseOperator):
    """Each gap is set to 0 with probability ``level`` (lost time resolution: tied events)."""

    name: ClassVar[str] = "drop"

    def apply(self, inputs: PredictionInputs, rng: np.random.Generator) -> PredictionInputs:
        dropped = rng.random(inputs.items.shape) < self.level
        return inputs.with_gaps(np.where(dropped, 0, inputs.gaps()))


@dataclass(frozen=True)
class GapShuffle(NoiseOperator):
    """A random ``level`` fraction of each row's gaps is permuted among itself (1 = full shuffle).

    The multiset of gaps (and so the span ``q - t_1``) is kept: only *when* things happened
    changes, not how much time passed in total.
    """

    name: ClassVar[str] = "shuffle"

    def apply(self, inputs: PredictionInputs, rng: np.random.Generator) -> PredictionInputs:
        chosen = inputs.history & (rng.random(inputs.items.shape) < self.level)
        return inputs.with_gaps(permute_within_rows(inputs.gaps(), chosen, rng))


@dataclass(frozen=True)
class ItemDropout(NoiseOperator):
    """Each history event is removed with probability ``level``; the rest are re-padded on the left.

    At least the most recent event is kept (an empty history is not a prediction input).
    Kept events keep their timestamps, so the gaps around a removed event merge.
    """

    name: ClassVar[str] = "item_dropout"

    def apply(self, inputs: PredictionInputs, rng: np.random.Generator) -> PredictionInputs:
        history = inputs.history
        keep = history & (rng.random(inputs.items.shape) >= self.level)
        keep[:, -1] |= history[:, -1] & ~keep.any(axis=1)
        order = np.argsort(keep, axis=1, kind="stable")  # dropped first, kept last, each in order
        kept = np.take_along_axis(keep, order, axis=1)
        items = np.where(kept, np.take_along_axis(inputs.items, order, axis=1), 0)
        times = np.where(kept, np.take_along_axis(inputs.times, order, axis=1), 0)
        return dataclasses.replace(inputs, items=items).with_times(times)


@dataclass(frozen=True)
class ItemReplacement(NoiseOperator):
    """Each history item is replaced with probability ``level`` by a uniform item in ``1..num_items``
    other than the row's target (when known): noise may hide the answer, never insert it.

    Timestamps are kept: the model sees the right rhythm with wrong content.
    """

    name: ClassVar[str] = "item_replace"

    def apply(self, inputs: PredictionInputs, rng: np.random.Generator) -> PredictionInputs:
        replaced = inputs.history & (rng.random(inputs.items.shape) < self.level)
        random_items = rng.integers(1, inputs.num_items + 1, size=inputs.items.shape)
        if inputs.targets is not None and inputs.num_items > 1:
            # uniform over the other num_items - 1 items: draw in 1..N-1, shift past the target
            targets = inputs.targets[:, None]
            shifted = rng.integers(1, inputs.num_items, size=inputs.items.shape)
            random_items = np.where(targets > 0, shifted + (shifted >= targets), random_items)
        items = np.where(replaced, random_items, inputs.items).astype(np.int64)
        return dataclasses.replace(inputs, items=items, times=inputs.times.copy(), next_times=inputs.next_times.copy())


NOISE_OPERATORS: dict[str, type[NoiseOperator]] = {
    op.name: op for op in (Clean, TimestampJitter, TimestampDrop, GapShuffle, ItemDropout, ItemReplacement)
}


def make_noise(name: str, level: float) -> NoiseOperator:
    """The operator registered under ``name`` at strength ``level``."""
    if name not in NOISE_OPERATORS:
        raise ConfigError(f"noise.name={name!r} is unknown; expected one of {sorted(NOISE_OPERATORS)}")
    return NOISE_OPERATORS[name](level=float(level))


@dataclass(frozen=True)
class NoiseSweep:
    """One noise kind: what a ``conf/noise/*.yaml`` instantiates to.

    ``levels`` are the strengths the robustness study sweeps over finished runs; ``level`` is
    the one strength a training run's test stage also reports (``python -m deepm3.train
    noise=jitter noise.level=0.5``; ``None``: the first of ``levels``), drawn with ``seed`` --
    one seed for every run, so every model is tested on the same perturbed inputs.
    """

    name: str
    levels: Sequence[float]
    level: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.levels, Sequence) or isinstance(self.levels, str):
            raise ConfigError(f"noise {self.name}: levels={self.levels!r}; expected a list of strengths")
        levels = tuple(_number(level, "noise.levels[]") for level in self.levels)
        if not levels:
            raise ConfigError(f"noise {self.name}: levels is empty; expected at least one strength")
        object.__setattr__(self, "levels", levels)
        if self.level is not None:
            object.__setattr__(self, "level", _number(self.level, "noise.level"))
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ConfigError(f"noise.seed={self.seed!r}; expected an integer")
        self.operators()  # validates the name and every level now, not mid-study
        self.operator()

    def operators(self) -> list[NoiseOperator]:
        return [make_noise(self.name, level) for level in self.levels]

    def operator(self) -> NoiseOperator:
        """The operator at ``level`` (a training run's test-time noise)."""
        return make_noise(self.name, self.levels[0] if self.level is None else self.level)


def _number(value: object, key: str) -> float:
    """A noise strength as a float; anything else is a one-line :class:`ConfigError`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise ConfigError(f"{key}={value!r}; expected a number")
    return float(value)


def permute_within_rows(values: np.ndarray, chosen: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Permute the ``chosen`` entries of each row among themselves; other entries stay put.

    Vectorised: sorting the chosen positions by index and, separately, by a random key gives
    two lists of the same positions; pairing them is a uniform random permutation per row.
    Unchosen entries get key +inf in both sorts and are paired with themselves.
    """
    columns = np.broadcast_to(np.arange(values.shape[1], dtype=float), values.shape)
    by_position = np.argsort(np.where(chosen, columns, np.inf), axis=1, kind="stable")
    by_key = np.argsort(np.where(chosen, rng.random(values.shape), np.inf), axis=1, kind="stable")
    out = values.copy()
    np.put_along_axis(out, by_position, np.take_along_axis(values, by_key, axis=1), axis=1)
    return out


def perturb_samples(samples: SampleArrays, operator: NoiseOperator, seed: int, num_items: int) -> SampleArrays:
    """Evaluation samples with perturbed model inputs; targets, users and true history kept."""
    noisy = operator(PredictionInputs.from_samples(samples, num_items), seed)
    return dataclasses.replace(samples, items=noisy.items, times=noisy.times, next_times=noisy.next_times)
