"""Tiny trained runs for the serving tests.

``ServeSource`` is a synthetic dataset whose raw ids look nothing like item indices
(``sku-073``), whose users never repeat an item (so history exclusion never hides a target)
and whose gaps range from ties to years. ``train_tiny`` runs the real ``deepm3.train.run`` on
it through the composed Hydra config and keeps the in-memory module that produced the test
metrics (Lightning loads the best checkpoint into it before testing).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import deepm3.train
from deepm3.data.processed import ProcessedData
from deepm3.data.schema import validate_interactions
from deepm3.data.sources.base import InteractionSource
from deepm3.models.module import RecModule
from tests.helpers.accelerator import trainer_override
from tests.helpers.tiny_runs import compose_train

MAX_LEN = 5  # shorter than every history, so windows are truncated
GAPS = np.array([0, 60, 3_600, 86_400, 30 * 86_400, 2 * 365 * 86_400])


class ServeSource(InteractionSource):
    """``users`` users with 8-12 distinct items each out of ``items``; generated, no raw file."""

    name = "serve"

    def __init__(self, users: int = 30, items: int = 20, seed: int = 0) -> None:
        self.options = {"users": users, "items": items, "seed": seed}

    def files(self) -> list[Path]:
        return []

    def read(self) -> pd.DataFrame:
        rng = np.random.default_rng(self.options["seed"])
        rows = []
        for u in range(self.options["users"]):
            t = 1_500_000_000 + int(rng.integers(0, 1_000_000))
            for item in rng.choice(self.options["items"], size=int(rng.integers(8, 13)), replace=False):
                rows.append((f"c{u:02d}", f"sku-{7 * int(item) + 3:03d}", t))
                t += int(rng.choice(GAPS))
        return validate_interactions(pd.DataFrame(rows, columns=["user", "item", "timestamp"]), "ServeSource")

    def params(self) -> dict[str, Any]:
        return dict(self.options)


@dataclass
class TrainedRun:
    run_dir: Path
    metrics: dict[str, Any]
    module: RecModule  # the in-memory model, holding the tested (best) weights
    data: ProcessedData

    def history(self, user: int) -> tuple[list[str], list[int], str, int]:
        """A user's test input in raw form: (items, timestamps, target raw id, target time)."""
        start, end = self.data.offsets[user], self.data.offsets[user + 1] - 1
        raw = self.data.item_ids[self.data.items[start : end + 1] - 1].tolist()
        times = self.data.times[start : end + 1].tolist()
        return raw[:-1], times[:-1], raw[-1], times[-1]


def train_tiny(out: Path, *overrides: str, items: int = 20) -> TrainedRun:
    """One epoch of ``ServeSource`` through the real config; ``overrides`` pick the model."""
    data_dir = out / "data"
    cfg = compose_train(
        [
            "trainer.max_epochs=1",
            "++trainer.limit_train_batches=2",
            trainer_override(),
            "trainer.enable_progress_bar=false",
            "trainer.enable_model_summary=false",
            "dataset.source._target_=tests.helpers.serve_fixtures.ServeSource",
            "~dataset.source.download",
            "~dataset.source.use_recbole",
            "~dataset.source.raw_dir",
            f"+dataset.source.items={items}",
            "dataset.name=serve",
            "dataset.batch_size=16",
            f"dataset.max_len={MAX_LEN}",
            f"paths.data_dir={data_dir}",
            f"paths.output_dir={out / 'run'}",
            *overrides,
        ]
    )
    built: list[RecModule] = []

    def keep(*args: Any, **kwargs: Any) -> RecModule:
        built.append(original(*args, **kwargs))
        return built[-1]

    original = deepm3.train.build_module
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(deepm3.train, "build_module", keep)
        metrics = deepm3.train.run(cfg, output_dir=out / "run")
    module = built[-1].eval()
    return TrainedRun(out / "run", metrics, module, ProcessedData.load(Path(metrics["data"]["data_dir"])))
