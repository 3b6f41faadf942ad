"""Train and test one model: ``python -m deepm3.train [overrides]``.

Seeds everything, builds the DataModule and the model from the Hydra config, fits with
checkpointing and early stopping on validation NDCG@10, tests the best checkpoint, and
writes ``metrics.json``, ``test_users.csv`` and ``item_map.csv`` into the run folder.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import numpy as np
import pandas as pd
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig, OmegaConf

from deepm3.callbacks import DatasetStamp, FiniteLossGuard, StepSeeder
from deepm3.cli_args import run_cli
from deepm3.config import validate_config
from deepm3.data.datamodule import SequenceDataModule
from deepm3.data.samples import training_item_counts
from deepm3.errors import DeepM3Error, exit_on_user_error
from deepm3.io import check_writable_dir
from deepm3.metrics import metric_names, ranking_metrics
from deepm3.models.module import DEFAULT_OPTIMIZER, RecModule
from deepm3.noise_eval import find_reusable_run, noise_setting, noisy_test_metrics, reuse_checkpoint
from deepm3.provenance import array_fingerprint, run_provenance
from deepm3.run.identity import training_key
from deepm3.run_dir import (
    METRICS_FILE,
    RunMetrics,
    clear_error,
    last_checkpoint,
    save_config,
    write_error,
    write_item_map,
    write_metrics,
    write_popularity,
    write_user_rows,
)
from deepm3.trackers import build_loggers, log_config, publish_run

log = logging.getLogger(__name__)


def build_module(cfg: DictConfig, num_items: int) -> RecModule:
    """The LightningModule for ``cfg.model`` with plain-container hyper-parameters.

    Plain containers, not ``DictConfig``: checkpoints must load with ``weights_only=True``.
    """
    net = OmegaConf.to_container(cfg.model.net, resolve=True)
    return RecModule(
        net=net,
        num_items=num_items,
        lr=cfg.optim.lr,
        weight_decay=cfg.optim.weight_decay,
        loss=cfg.optim.loss,
        exclude_history=cfg.eval.exclude_history,
        ks=list(cfg.eval.ks),
        monitor=cfg.monitor,
        eval_mode=cfg.eval.get("mode", "full"),
        query=cfg.time.get("query", "target"),
        optimizer=optimizer_config(cfg.optim),
    )


def optimizer_config(optim: DictConfig) -> dict[str, Any]:
    """``cfg.optim`` less ``loss``, ``lr`` and ``weight_decay`` (RecModule's own arguments) as a plain
    dict; a run config saved before the optimizer was configurable names none and gets AdamW."""
    spec = OmegaConf.to_container(optim, resolve=True)
    assert isinstance(spec, dict)
    for key in ("loss", "lr", "weight_decay", "_partial_"):
        spec.pop(key, None)
    return {"_target_": DEFAULT_OPTIMIZER, **spec}


def run(
    cfg: DictConfig, output_dir: Path | None = None, overrides: list[str] | None = None, reuse_dirs: Sequence[Path] = ()
) -> dict[str, Any]:
    """Fit, select on validation, test; return (and write) the run's metrics.

    ``overrides`` (the run's command-line overrides) go into the provenance record as the
    command that reproduces the run; by default Hydra's, else the process's argv.
    ``reuse_dirs``: folders whose complete runs with this run's training key (everything but
    the test-time ``noise``) lend their checkpoint instead of a new fit (a multirun's sweep
    folder; :mod:`deepm3.noise_eval`). The test stage also reports ``cfg.noise`` when not clean.
    """
    validate_config(cfg)
    noise = noise_setting(cfg)
    out = Path(output_dir or HydraConfig.get().runtime.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    loggers = build_loggers(cfg, out)  # before any data is read: a tracker not installed is one line
    L.seed_everything(cfg.seed, workers=True)
    datamodule: SequenceDataModule = instantiate(
        cfg.dataset,
        seed=cfg.seed,
        eval_mode=cfg.eval.get("mode", "full"),
        negatives=cfg.eval.get("negatives", 100),
        negatives_seed=cfg.eval.get("negatives_seed", 0),
        _convert_="all",
    )
    datamodule.setup()
    module = build_module(cfg, datamodule.num_items)
    num_params = sum(p.numel() for p in module.net.parameters())
    log.info("model %s: %s parameters", cfg.model.name, f"{num_params:,}")
    resume = _resume_path(cfg.ckpt_path, out)
    callbacks = [instantiate(c) for c in cfg.callbacks.values()] + [
        StepSeeder(cfg.seed),
        FiniteLossGuard(),
        DatasetStamp(resume, module, datamodule),
    ]
    trainer: L.Trainer = instantiate(
        cfg.trainer,
        callbacks=callbacks,
        default_root_dir=str(out),
        logger=loggers,
    )
    log_config(trainer.loggers, cfg)
    key = training_key(cfg)
    source = find_reusable_run(key, reuse_dirs, out) if reuse_dirs and resume is None else None
    if source is None:
        start = time.perf_counter()
        trainer.fit(module, datamodule=datamodule, ckpt_path=resume)
        train_seconds = time.perf_counter() - start
        checkpoint = next(c for c in trainer.callbacks if isinstance(c, ModelCheckpoint))
        best = checkpoint.best_model_path or checkpoint.last_model_path
        best_score = checkpoint.best_model_score
        trained = {
            "best_val": {cfg.monitor: float(best_score) if best_score is not None else None},
            "epochs": int(trainer.current_epoch),
            "train_seconds": round(train_seconds, 2),
            "seconds_per_epoch": round(train_seconds / max(trainer.current_epoch, 1), 3),
        }
    else:  # the same training as a finished sibling run: test its checkpoint, do not fit again
        best = str(reuse_checkpoint(source, out, module, datamodule))
        trained = {k: source.metrics.get(k) for k in ("best_val", "epochs", "train_seconds", "seconds_per_epoch")}
        trained["reused_checkpoint_from"] = str(source.directory)
    trainer.test(module, datamodule=datamodule, ckpt_path=best or None, weights_only=True)
    test = {k.removeprefix("test/"): float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")}
    metrics: RunMetrics = {
        "model": cfg.model.name,
        "dataset": datamodule.name,
        "seed": int(cfg.seed),
        "solver": OmegaConf.to_container(cfg.solver) if "solver" in cfg else None,
        "test": test,
        "best_val": trained.pop("best_val"),
        "best_checkpoint": best,
        "epochs": trained.pop("epochs"),
        "num_params": int(num_params),
        "uses_time": bool(getattr(module.net, "uses_time", False)),
        **trained,
        "training_key": key,
        "data": datamodule.describe(),
        "protocol": {
            "query": str(cfg.time.get("query", "target")),
            "exclude_history": bool(cfg.eval.exclude_history),
            "eval_mode": str(cfg.eval.get("mode", "full")),
            "split": datamodule.preprocess.split,
        },
        "provenance": run_provenance(trainer.strategy.root_device, data_fingerprint(datamodule), _command(overrides)),
    }
    if noise is not None:  # the best checkpoint is loaded: the same weights, perturbed test inputs
        noisy = noisy_test_metrics(module, datamodule, noise, trainer.strategy.root_device)
        metrics.update(noise=noise.describe(), noisy=noisy)
        trainer.logger.log_metrics({f"test/noisy_{k}": v for k, v in noisy.items()}, step=trainer.global_step)
        trainer.logger.save()
        log.info(
            "test metrics under noise %s level %s: %s",
            noise.name,
            noise.level,
            {k: round(v, 4) for k, v in sorted(noisy.items())},
        )
    rows = _user_rows(module, datamodule)
    if "sequence" in rows.columns:  # split by time: the headline averages events; this view averages sequences
        per_sequence = rows.groupby("sequence")[metric_names(module.ks)].mean().mean()
        metrics["test_per_sequence"] = {k: float(v) for k, v in per_sequence.items()}
    if not trainer.is_global_zero:  # DDP: every process holds the same gathered rows; one writes the run folder
        return metrics
    clear_error(out)  # a rerun that succeeds clears an old failure
    write_user_rows(out, rows)
    _write_item_files(out, datamodule)
    save_config(out, cfg)
    write_metrics(out, metrics)  # last: its presence marks a complete run
    publish_run(trainer.loggers, out / METRICS_FILE, cfg)
    log.info("test metrics: %s", {k: round(v, 4) for k, v in sorted(test.items())})
    return metrics


def _command(overrides: list[str] | None) -> list[str] | None:
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


def _resume_path(ckpt_path: str | None, out: Path) -> str | None:
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


def _user_rows(module: RecModule, datamodule: SequenceDataModule) -> pd.DataFrame:
    """Per-user test rows (docs/protocol.md, "The studies"): significance and irregularity studies need no re-run."""
    users = module.test_ranks["users"].numpy()
    samples = module.test_ranks.get("samples", module.test_ranks["users"]).numpy()
    ranks = module.test_ranks["ranks"]
    data, test = datamodule.data, datamodule.splits["test"]
    assert data is not None
    # Under a split by time a row is one target event: `user` names it `<sequence>/<position>` (the
    # unit every paired analysis pairs) and `sequence` holds the sequence for the per-sequence view.
    ids = data.user_ids[users]
    if test.positions is not None:
        ids = np.char.add(np.char.add(ids.astype(str), "/"), test.positions[samples].astype(str))
    rows = pd.DataFrame(
        {
            "user": ids,
            "history_length": test.history_sizes()[samples],
            "gap_cv": datamodule.gap_cv()[users] if test.gap_cv is None else test.gap_cv[samples],
            "rank": ranks.numpy(),
            "repeat": module.test_ranks["repeat"].numpy().astype(int),  # target already in the history
        }
    )
    if test.positions is not None:
        rows.insert(1, "sequence", data.user_ids[users])
    for name, values in ranking_metrics(ranks, module.ks).items():
        rows[name] = values.numpy()
    if "sampled_ranks" in module.test_ranks:  # eval.mode=sampled: beside the full-ranking columns
        rows["sampled_rank"] = module.test_ranks["sampled_ranks"].numpy()
        for name, values in ranking_metrics(module.test_ranks["sampled_ranks"], module.ks).items():
            rows[f"sampled_{name}"] = values.numpy()
    return rows


def _write_item_files(out: Path, datamodule: SequenceDataModule) -> None:
    """The item map, and training counts that serving falls back to for a user without history."""
    assert datamodule.data_dir is not None and datamodule.data is not None
    write_item_map(out, datamodule.data_dir)
    write_popularity(out, datamodule.data.item_ids, training_item_counts(datamodule.data))


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float:
    """Hydra entry point; returns the best validation score of ``cfg.monitor`` (val/ndcg@10).

    What a sweeper (``hparams_search=``) maximises: validation, never test, so a search cannot
    select on the test split. In a multirun, a failing job records ``error.json`` (its overrides
    and the error) in its folder and returns -inf, the worst score (the Optuna sweeper stops the whole
    search on a NaN or None), so the other jobs and trials still run; a single run exits with one line.
    """
    hydra_cfg = HydraConfig.get()
    try:
        check_writable_dir(cfg.paths.output_dir, "paths.output_dir")  # not after an epoch of training
        # in a multirun, sibling jobs that differ only in noise share one training (deepm3.noise_eval)
        reuse = [Path(hydra_cfg.sweep.dir)] if hydra_cfg.mode == RunMode.MULTIRUN else []
        metrics = run(cfg, Path(cfg.paths.output_dir), reuse_dirs=reuse)  # paths.output_dir= moves the whole run
    except Exception as exc:
        if hydra_cfg.mode == RunMode.MULTIRUN:
            record_failure(Path(hydra_cfg.runtime.output_dir), list(hydra_cfg.overrides.task), exc)
            return float("-inf")
        exit_on_user_error(exc, log)  # unwraps hydra's InstantiationException
        raise
    return selection_score(metrics, cfg.monitor)


def selection_score(metrics: RunMetrics, monitor: str) -> float:
    """The run's best validation score of ``monitor``; -inf (the worst) when none was recorded or it is NaN."""
    score = (metrics.get("best_val") or {}).get(monitor)
    return float("-inf") if score is None or math.isnan(score) else float(score)


def record_failure(out: Path, overrides: list[str], exc: BaseException) -> None:
    """Write ``error.json`` so sweep reports can say which run is missing and why."""
    log.error("run failed (%s): %s", " ".join(overrides), exc)
    write_error(out, overrides, exc)


def cli() -> None:
    """The console script: :func:`main` after a one-line check of the command line's config choices."""
    run_cli(main)


if __name__ == "__main__":
    cli()
