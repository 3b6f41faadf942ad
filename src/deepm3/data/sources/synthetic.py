"""A synthetic world with known ground truth: time matters exactly as much as we say.

Why it exists: docs/protocol.md, "A world with known ground truth".

Each user carries a latent intent ``z(t) = a + x(t)`` in R^dim: a fixed anchor ``a`` plus a
drift ``x`` that follows a *rotating Ornstein-Uhlenbeck* process between events,

    dx = (omega J - lambda I) x dt + sigma dW,

where ``J`` turns every coordinate pair by a right angle. Over an elapsed time ``tau``
(measured in mean gaps) its exact transition is

    x' = exp(-lambda tau) R(omega tau) x + sqrt(v (1 - exp(-2 lambda tau))) eps,

``v`` being the stationary variance per coordinate. Events form a renewal process with
gamma gaps whose coefficient of variation is drawn per user, uniformly in ``[cv_min, cv_max]``
(the gamma shape is ``1 / cv^2``), and each event's item is drawn from
``softmax(z(t) . v_i / temperature)`` over unit item vectors ``v_i``.

``time_signal`` (s in [0, 1]) sets how much the gaps drive the dynamics: the intent evolves
over ``tau = s * gap / mean_gap + (1 - s)``. At s = 0 every step has the same length
whatever the gap, so the item sequence does not depend on the timestamps at all (time
carries no information); at s = 1 the intent at the query time is a function of the
elapsed gap -- with the default quarter turn per mean gap, a gap twice the mean turns it
by another quarter -- so a model that reads the gap can place it and a time-blind model
can only average over the gap distribution. The advantage grows with a user's gap CV.

Every random draw comes from its own stream (world, gaps, drift noise, item choice), so at
s = 0 changing the gap distribution leaves every item identical, and everything is fixed
by ``seed``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from deepm3.data.schema import validate_interactions
from deepm3.data.sources.base import InteractionSource
from deepm3.errors import ConfigError

START = 1_600_000_000  # 2020-09-13: timestamps look like real unix seconds
START_SPREAD = 30 * 86_400


@dataclass
class SyntheticEvents:
    """A generated world: the events and the latent truth behind them.

    Events are user-major and in time order: event ``e`` of user ``u`` is row ``u * E + e``.
    ``intents[row]`` is the intent at that event (what its item was drawn from).
    """

    users: np.ndarray  # [U*E] int64 user index
    items: np.ndarray  # [U*E] int64 item index, 0-based
    times: np.ndarray  # [U*E] int64 unix seconds
    intents: np.ndarray  # [U*E, dim]
    anchors: np.ndarray  # [U, dim]
    item_vectors: np.ndarray  # [N, dim], unit rows
    gap_cv: np.ndarray  # [U] the CV each user's gaps were drawn with
    mean_gap: np.ndarray  # [U] each user's mean gap, seconds

    def table(self) -> pd.DataFrame:
        width_u, width_i = len(str(len(self.anchors) - 1)), len(str(len(self.item_vectors) - 1))
        return pd.DataFrame(
            {
                "user": [f"u{u:0{width_u}d}" for u in self.users],
                "item": [f"i{i:0{width_i}d}" for i in self.items],
                "timestamp": self.times,
            }
        )


@dataclass(frozen=True)
class SyntheticWorld:
    """Generator parameters (all of them part of the dataset's identity)."""

    users: int = 2000
    items: int = 500
    events_per_user: int = 50
    dim: int = 8
    time_signal: float = 1.0  # 0: gaps carry no information .. 1: the dynamics run on the real gaps
    cv_min: float = 0.25  # per-user gap CV ~ Uniform[cv_min, cv_max]
    cv_max: float = 2.0
    mean_gap_hours: float = 24.0
    rate_spread: float = 0.5  # log-normal sigma of the per-user mean gap (0: all users alike)
    rotation: float = math.pi / 2  # radians the drift turns per mean gap
    decay: float = 0.05  # mean reversion towards the anchor, per mean gap
    anchor_scale: float = 0.5  # typical norm of the fixed part of the intent
    drift_scale: float = 1.0  # typical (stationary) norm of the moving part
    temperature: float = 0.1  # softmax temperature over intent . item vector
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("users", "items", "events_per_user", "dim", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < (0 if name == "seed" else 1):
                raise ConfigError(
                    f"synthetic.{name}={value!r}; expected a {'non-negative' if name == 'seed' else 'positive'} integer"
                )
        if self.items < 2 or self.events_per_user < 3:
            raise ConfigError(
                f"synthetic: items={self.items}, events_per_user={self.events_per_user}; "
                "expected >= 2 items and >= 3 events per user"
            )
        if self.dim % 2:
            raise ConfigError(f"synthetic.dim={self.dim}; expected an even number (the drift rotates coordinate pairs)")
        if not 0.0 <= self.time_signal <= 1.0:
            raise ConfigError(f"synthetic.time_signal={self.time_signal}; expected a number in [0, 1]")
        if not 0.0 < self.cv_min <= self.cv_max:
            raise ConfigError(f"synthetic: cv_min={self.cv_min}, cv_max={self.cv_max}; expected 0 < cv_min <= cv_max")
        for name in ("mean_gap_hours", "temperature"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"synthetic.{name}={getattr(self, name)}; expected a positive number")
        for name in ("rate_spread", "decay", "anchor_scale", "drift_scale"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"synthetic.{name}={getattr(self, name)}; expected a non-negative number")

    @property
    def mean_gap_seconds(self) -> float:
        return self.mean_gap_hours * 3600.0

    def elapsed(self, gaps: np.ndarray) -> np.ndarray:
        """Time the dynamics run for across gaps of ``gaps`` seconds, in mean gaps."""
        s = self.time_signal
        return s * np.asarray(gaps, dtype=np.float64) / self.mean_gap_seconds + (1.0 - s)

    def expected_drift(self, drift: np.ndarray, tau: np.ndarray) -> np.ndarray:
        """Mean of the drift after ``tau`` mean gaps: damped rotation of every coordinate pair."""
        tau = np.asarray(tau, dtype=np.float64)[..., None]
        pairs = drift.reshape(*drift.shape[:-1], -1, 2)
        cos, sin = np.cos(self.rotation * tau), np.sin(self.rotation * tau)
        turned = np.stack(
            [pairs[..., 0] * cos - pairs[..., 1] * sin, pairs[..., 0] * sin + pairs[..., 1] * cos], axis=-1
        )
        return turned.reshape(drift.shape) * np.exp(-self.decay * tau)

    def item_logits(self, intents: np.ndarray, item_vectors: np.ndarray) -> np.ndarray:
        return intents @ item_vectors.T / self.temperature

    def generate(self) -> SyntheticEvents:
        world, gap_rng, noise_rng, choice_rng = (
            np.random.default_rng(s) for s in np.random.SeedSequence(self.seed).spawn(4)
        )
        n_users, n_events, dim = self.users, self.events_per_user, self.dim
        item_vectors = world.standard_normal((self.items, dim))
        item_vectors /= np.linalg.norm(item_vectors, axis=1, keepdims=True)
        anchors = world.standard_normal((n_users, dim)) * (self.anchor_scale / math.sqrt(dim))
        drift_sd = self.drift_scale / math.sqrt(dim)
        drift = world.standard_normal((n_users, dim)) * drift_sd  # start in the stationary law

        cv = gap_rng.uniform(self.cv_min, self.cv_max, n_users)
        mean_gap = self.mean_gap_seconds * np.exp(
            self.rate_spread * gap_rng.standard_normal(n_users) - self.rate_spread**2 / 2
        )
        shape = 1.0 / cv**2
        gaps = np.rint(gap_rng.gamma(shape[:, None], (mean_gap / shape)[:, None], size=(n_users, n_events - 1))).astype(
            np.int64
        )
        start = START + gap_rng.integers(0, START_SPREAD, n_users)
        times = start[:, None] + np.concatenate([np.zeros((n_users, 1), np.int64), np.cumsum(gaps, axis=1)], axis=1)
        tau = self.elapsed(gaps)

        intents = np.empty((n_users, n_events, dim))
        items = np.empty((n_users, n_events), dtype=np.int64)
        for event in range(n_events):
            noise = noise_rng.standard_normal((n_users, dim))
            if event:
                spread = drift_sd * np.sqrt(1.0 - np.exp(-2.0 * self.decay * tau[:, event - 1]))
                drift = self.expected_drift(drift, tau[:, event - 1]) + spread[:, None] * noise
            intents[:, event] = anchors + drift
            items[:, event] = _draw(self.item_logits(intents[:, event], item_vectors), choice_rng)
        return SyntheticEvents(
            users=np.repeat(np.arange(n_users, dtype=np.int64), n_events),
            items=items.reshape(-1),
            times=times.reshape(-1),
            intents=intents.reshape(-1, dim),
            anchors=anchors,
            item_vectors=item_vectors,
            gap_cv=cv,
            mean_gap=mean_gap,
        )


def _draw(logits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One categorical draw per row (inverse CDF: one uniform per row, whatever the item count)."""
    weights = np.exp(logits - logits.max(axis=1, keepdims=True))
    cdf = np.cumsum(weights, axis=1)
    u = rng.random(len(logits))[:, None] * cdf[:, -1:]
    return np.minimum((cdf < u).sum(axis=1), logits.shape[1] - 1)


PARAMETERS = tuple(f.name for f in fields(SyntheticWorld))


class SyntheticSource(InteractionSource):
    """The synthetic world as a dataset: no files, everything determined by the parameters."""

    name = "synthetic"

    def __init__(self, **params: Any) -> None:
        unknown = sorted(set(params) - set(PARAMETERS))
        if unknown:
            raise ConfigError(f"synthetic: unknown parameter(s) {unknown}; expected some of {list(PARAMETERS)}")
        self.world = SyntheticWorld(**params)

    def files(self) -> list[Path]:
        return []

    def read(self) -> pd.DataFrame:
        return validate_interactions(self.world.generate().table(), "synthetic")

    def params(self) -> dict[str, Any]:
        return asdict(self.world)
