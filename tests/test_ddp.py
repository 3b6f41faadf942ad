"""Exact distributed evaluation: ``trainer=ddp`` reports what one process reports for the same weights.

Lightning's distributed sampler pads the last shard with repeats of the first samples so every
process gets as many batches; each evaluation batch carries its rows' indices (``samples``), and
the metrics and per-user rows count each index once after gathering.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import pandas as pd
import pytest
import torch
from hydra.utils import instantiate

from deepm3.metrics import RankMetrics
from deepm3.run.files import user_rows as _user_rows
from deepm3.run_dir import read_metrics, read_user_rows
from deepm3.train import build_module
from tests.helpers.tiny_runs import FAST_TRAINER, compose_train, tiny_dataset

REPO = Path(__file__).resolve().parents[1]
# 31 users: an odd number of validation and test samples, so two processes need one padded repeat;
# batches of 4 so each process evaluates several batches
ODD_SPLIT = ["+dataset.source.users=31", "dataset.eval_batch_size=4"]


def test_a_sample_evaluated_twice_counts_once() -> None:
    once, twice = RankMetrics(ks=(10,)), RankMetrics(ks=(10,))
    once.update(torch.tensor([0, 30, 2]), samples=torch.tensor([0, 1, 2]))
    twice.update(torch.tensor([0, 30]), samples=torch.tensor([0, 1]))
    twice.update(torch.tensor([2, 0]), samples=torch.tensor([2, 0]))  # the padded repeat of sample 0
    assert twice.compute() == once.compute()


def test_ranks_come_back_in_sample_order() -> None:
    metric = RankMetrics(ks=(10,))
    metric.update(torch.tensor([5, 7]), samples=torch.tensor([1, 3]))
    metric.update(torch.tensor([4, 6]), samples=torch.tensor([0, 2]))
    assert metric.values()[0].tolist() == [4, 5, 6, 7]


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_reports_what_one_process_reports(tmp_path: Path) -> None:
    overrides = [*FAST_TRAINER, *tiny_dataset(tmp_path / "data"), *ODD_SPLIT]
    ddp = tmp_path / "ddp"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "deepm3.train", *overrides, "trainer=ddp", "trainer.accelerator=cpu"]
    done = subprocess.run(
        [*command, "trainer.devices=2", f"hydra.run.dir={ddp}"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    reported = read_metrics(ddp)
    best = str(ddp / reported["best_checkpoint"])

    # one process, the DDP run's best checkpoint, the same data
    cfg = compose_train([*overrides, f"paths.output_dir={tmp_path / 'one'}"])
    datamodule = instantiate(cfg.dataset, seed=cfg.seed, _convert_="all")
    module = build_module(cfg, datamodule.num_items)
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False)
    trainer.validate(module, datamodule=datamodule, ckpt_path=best, weights_only=True)
    best_val = float(trainer.callback_metrics["val/ndcg@10"])
    trainer.test(module, datamodule=datamodule, ckpt_path=best, weights_only=True)
    test = {k.removeprefix("test/"): float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")}

    assert len(datamodule.splits["test"]) % 2 == 1  # the padded case
    assert reported["best_val"]["val/ndcg@10"] == pytest.approx(best_val, abs=1e-6)
    assert reported["test"].keys() == test.keys()
    assert reported["test"] == pytest.approx(test, abs=1e-6)
    rows = read_user_rows(ddp)
    expected = _user_rows(module, datamodule)
    assert rows["user"].tolist() == expected["user"].tolist()  # every test user once, in the same order
    pd.testing.assert_frame_equal(rows, expected, check_dtype=False, atol=1e-6)
