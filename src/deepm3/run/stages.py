"""The steps of one run between building it and writing its folder (:func:`deepm3.train.train`).

Where training resumes from (:func:`resume_path`), a fit or the reuse of a sibling's checkpoint
(:func:`fit`, :func:`reuse_sibling`), the test-time noise stage (:func:`noisy_stage`), and the record a
tested run writes as ``metrics.json`` (:func:`run_metrics`).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig, OmegaConf

from deepm3.data.datamodule import SequenceDataModule
from deepm3.errors import DeepM3Error
from deepm3.provenance import array_fingerprint, run_provenance
from deepm3.run.noise_eval import NoiseSetting, ReusableRun, noisy_test_metrics, reuse_checkpoint
from deepm3.run_dir import RunMetrics, last_checkpoint

log = logging.getLogger("deepm3.train")  # a run's messages keep the entry point's name


def resume_path(ckpt_path: str | None, out: Path) -> str | None:
    """The checkpoint ``ckpt_path`` names (``last``: this run folder's last one, if any), or ``None``."""
    if ckpt_path is None:
        return None
    if ckpt_path == "last":
        last = last_checkpoint(out)
        if last.is_file():
            log.info("resuming from %s", last)
            return str(last)
        log.warning("ckpt_path=last: no %s yet, starting from scratch (resume needs the same hydra.run.dir)", last)
        return None
    path = Path(ckpt_path).expanduser()
    if not path.is_file():
        raise DeepM3Error(f"ckpt_path={ckpt_path}: no such checkpoint file")
    return str(path)


def fit(
    trainer: L.Trainer, module: L.LightningModule, datamodule: SequenceDataModule, resume: str | None, monitor: str
) -> tuple[str, dict[str, Any]]:
    """Fit; the best checkpoint's path and what the fit records (best validation score, epochs, times)."""
    start = time.perf_counter()
    trainer.fit(module, datamodule=datamodule, ckpt_path=resume)
    train_seconds = time.perf_counter() - start
    checkpoint = next(c for c in trainer.callbacks if isinstance(c, ModelCheckpoint))
    best = checkpoint.best_model_path or checkpoint.last_model_path
    best_score = checkpoint.best_model_score
    trained = {
        "best_val": {monitor: float(best_score) if best_score is not None else None},
        "epochs": int(trainer.current_epoch),
        "train_seconds": round(train_seconds, 2),
        "seconds_per_epoch": round(train_seconds / max(trainer.current_epoch, 1), 3),
    }
    return best, trained


def reuse_sibling(
    source: ReusableRun, out: Path, module: L.LightningModule, datamodule: SequenceDataModule
) -> tuple[str, dict[str, Any]]:
    """The same training as a finished sibling run: its checkpoint (copied here) and its fit's record."""
    best = str(reuse_checkpoint(source, out, module, datamodule))
    trained = {k: source.metrics.get(k) for k in ("best_val", "epochs", "train_seconds", "seconds_per_epoch")}
    trained["reused_checkpoint_from"] = str(source.directory)
    return best, trained


def run_metrics(
    cfg: DictConfig,
    trainer: L.Trainer,
    module: Any,
    datamodule: SequenceDataModule,
    best: str,
    trained: dict[str, Any],
    key: str,
    overrides: list[str] | None,
) -> RunMetrics:
    """The tested run's record (``metrics.json``) from the trainer's test metrics and the fit's record."""
    test = {k.removeprefix("test/"): float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")}
    trained = dict(trained)
    return {
        "model": cfg.model.name,
        "dataset": datamodule.name,
        "seed": int(cfg.seed),
        "solver": OmegaConf.to_container(cfg.solver) if "solver" in cfg else None,
        "test": test,
        "best_val": trained.pop("best_val"),
        "best_checkpoint": best,
        "epochs": trained.pop("epochs"),
        "num_params": int(sum(p.numel() for p in module.net.parameters())),
        "uses_time": bool(getattr(module.net, "uses_time", False)),
        **trained,
        "training_key": key,
        "data": datamodule.describe(),
        "protocol": {
            "query": str(module.hparams.query),
            "exclude_history": bool(cfg.eval.exclude_history),
            "eval_mode": str(cfg.eval.get("mode", "full")),
            "split": datamodule.preprocess.split,
        },
        "provenance": run_provenance(trainer.strategy.root_device, data_fingerprint(datamodule), command(overrides)),
    }


def noisy_stage(
    trainer: L.Trainer, module: L.LightningModule, datamodule: SequenceDataModule, noise: NoiseSetting
) -> dict[str, Any]:
    """The tested weights on perturbed test inputs: ``metrics.json``'s ``noise`` and ``noisy``, also logged."""
    noisy = noisy_test_metrics(module, datamodule, noise, trainer.strategy.root_device)
    trainer.logger.log_metrics({f"test/noisy_{k}": v for k, v in noisy.items()}, step=trainer.global_step)
    trainer.logger.save()
    log.info(
        "test metrics under noise %s level %s: %s",
        noise.name,
        noise.level,
        {k: round(v, 4) for k, v in sorted(noisy.items())},
    )
    return {"noise": noise.describe(), "noisy": noisy}


def command(overrides: list[str] | None) -> list[str] | None:
    """The command that reproduces the run: its overrides (by default Hydra's) after ``python -m deepm3.train``."""
    if overrides is None and HydraConfig.initialized():
        overrides = list(HydraConfig.get().overrides.task)
    return None if overrides is None else ["python", "-m", "deepm3.train", *overrides]


def data_fingerprint(datamodule: SequenceDataModule) -> str:
    """Content hash of the processed sequences and id maps: two runs saw the same data iff equal."""
    data = datamodule.data
    assert data is not None
    arrays = [data.offsets, data.items, data.times, np.asarray(data.item_ids, dtype=str)]
    arrays.append(np.asarray(data.user_ids, dtype=str))
    if data.split_codes is not None:  # the same events split at other cuts are other data
        arrays.append(data.split_codes)
    return array_fingerprint(*arrays)
