"""Test-time noise in the training config, and a noise grid that trains each model once.

``noise`` is a config group of ``train.yaml`` (default ``clean``): ``python -m deepm3.train
noise=jitter noise.level=0.5`` trains as usual and its test stage also ranks the test users on
perturbed inputs -- :func:`deepm3.analysis.noise.perturb_samples` with the config's ``seed``, so
every model of a grid is tested on the same perturbed arrays -- and writes those metrics to
``metrics.json`` under ``noisy`` (and to the CSV log as ``test/noisy_<metric>``).

The noise never changes training, so a grid over noise levels must not retrain. Every run
records its :func:`deepm3.run.identity.training_key` (a digest of its config without ``noise``, ``paths`` and
``ckpt_path``); in a Hydra multirun a job whose key equals a complete sibling job's (same sweep
folder) copies that job's best checkpoint, checks it is a checkpoint of this network on this
data, and only tests it (``reused_checkpoint_from`` in ``metrics.json``). A sweep over
``model x solver x noise.level`` therefore trains ``model x solver`` runs and tests each
checkpoint once per level.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from deepm3.analysis.noise import NoiseOperator, NoiseSweep, perturb_samples
from deepm3.data.datamodule import BatchCollator
from deepm3.data.samples import SampleArrays
from deepm3.errors import ConfigError
from deepm3.run.callbacks import dataset_stamp
from deepm3.run.checkpoint import Checkpoint
from deepm3.run_dir import RunMetrics, checkpoint_dir, is_complete, tested_checkpoint, try_read_metrics

log = logging.getLogger(__name__)

CLEAN = "clean"


@dataclass(frozen=True)
class NoiseSetting:
    """The training config's test-time noise: one operator at one level, drawn with one seed."""

    name: str
    level: float
    seed: int
    operator: NoiseOperator

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "level": self.level, "seed": self.seed}


def noise_setting(cfg: DictConfig) -> NoiseSetting | None:
    """``cfg.noise`` checked now (before any data is read); ``None`` for clean or no noise key
    (run configs written before noise joined the training config)."""
    node = cfg.get("noise")
    if node is None:
        return None
    levels = node.get("levels")
    sweep = NoiseSweep(
        name=str(node.get("name", CLEAN)),
        levels=[0.0] if levels is None else list(levels),
        level=node.get("level"),
        seed=node.get("seed", 0),
    )  # checks every value, clean too
    if sweep.name == CLEAN:
        return None
    operator = sweep.operator()
    return NoiseSetting(sweep.name, float(operator.level), int(sweep.seed), operator)


@dataclass(frozen=True)
class ReusableRun:
    """A complete run with the same training key: its folder, tested checkpoint and metrics."""

    directory: Path
    checkpoint: Path
    metrics: RunMetrics


def find_reusable_run(key: str, search_dirs: Iterable[Path], own: Path) -> ReusableRun | None:
    """The first complete run folder directly under ``search_dirs`` (in name order, ``own``
    excluded) whose ``metrics.json`` has training key ``key`` and whose tested checkpoint exists."""
    own = Path(own).resolve()
    for folder in search_dirs:
        folder = Path(folder)
        if not folder.is_dir():
            continue
        for candidate in sorted(p for p in folder.iterdir() if p.is_dir()):
            if candidate.resolve() == own or not is_complete(candidate):
                continue
            metrics = try_read_metrics(candidate)
            if metrics is None or metrics.get("training_key") != key:
                continue
            checkpoint = tested_checkpoint(candidate, metrics)
            if checkpoint is not None:
                return ReusableRun(candidate, checkpoint, metrics)
    return None


def reuse_checkpoint(source: ReusableRun, out: Path, module: Any, datamodule: Any) -> Path:
    """Copy ``source``'s tested checkpoint into ``out/checkpoints/`` after checking it is this
    network's on this data (the checks a resume gets); returns the copy's path."""
    Checkpoint.read_for_resume(source.checkpoint).check_resumable(module, dataset_stamp(datamodule))
    target = checkpoint_dir(out) / source.checkpoint.name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source.checkpoint, target)
    log.info(
        "same training config as %s: its checkpoint %s is tested, not trained again",
        source.directory,
        source.checkpoint.name,
    )
    return target


def headline_metrics(module: Any, samples: SampleArrays, batch_size: int, device: torch.device) -> dict[str, float]:
    """The test stage's headline metrics of ``module`` on ``samples`` (any perturbation applied):
    mean over users, or over the novel-target users when the run excluded the history
    (``docs/protocol.md``, "Ranking") -- so clean samples reproduce ``metrics.json``'s test numbers.
    The ranking and the metrics are the module's own (:meth:`RecModule.headline_metrics`); this
    only cuts ``samples`` into batches on ``device``."""
    if batch_size < 1:
        raise ConfigError(f"batch_size={batch_size!r}; expected a positive integer")
    module.eval()
    collate = BatchCollator(samples)
    batches = (
        {k: v.to(device) for k, v in collate(list(range(start, min(start + batch_size, len(samples))))).items()}
        for start in range(0, len(samples), batch_size)
    )
    return module.headline_metrics(batches)


def noisy_test_metrics(module: Any, datamodule: Any, noise: NoiseSetting, device: torch.device) -> dict[str, float]:
    """Headline test metrics on the test split perturbed by ``noise`` (inputs only; targets,
    query times and the history exclusion untouched)."""
    test = datamodule.splits["test"]
    noisy = perturb_samples(test, noise.operator, noise.seed, datamodule.num_items)
    module.to(device)
    return headline_metrics(module, noisy, int(datamodule.eval_batch_size), device)
