"""Train and test one model: ``python -m deepm3.train [overrides]``.

:func:`train` has the shape of the Lightning + Hydra template: seed everything, build the
DataModule, the model and the Trainer from the Hydra config, fit with checkpointing and early
stopping on validation NDCG@10 (or reuse a sibling run's checkpoint), test the best checkpoint,
and let the :class:`deepm3.run.files.RunRecord` callback write ``metrics.json``,
``test_users.csv``, the item map and the config into the run folder when the test ends. Its steps live in
:mod:`deepm3.run`; ``run`` is the name the tests and the studies import.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import hydra
import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig

from deepm3.cli_args import run_cli
from deepm3.config import validate_config
from deepm3.data.datamodule import SequenceDataModule
from deepm3.errors import exit_on_user_error
from deepm3.io import check_writable_dir
from deepm3.models.module import RecModule
from deepm3.run.callbacks import DatasetStamp, FiniteLossGuard, StepSeeder
from deepm3.run.files import RunRecord
from deepm3.run.identity import training_key
from deepm3.run.noise_eval import find_reusable_run, noise_setting
from deepm3.run.stages import fit, noisy_stage, resume_path, reuse_sibling, run_metrics
from deepm3.run_dir import RunMetrics, write_error
from deepm3.trackers import build_loggers, log_config

log = logging.getLogger(__name__)


def build_module(cfg: DictConfig, num_items: int) -> RecModule:
    """The LightningModule for ``cfg`` (:meth:`RecModule.from_config`)."""
    return RecModule.from_config(cfg, num_items)


def train(
    cfg: DictConfig, output_dir: Path | None = None, overrides: list[str] | None = None, reuse_dirs: Sequence[Path] = ()
) -> dict[str, Any]:
    """Fit, select on validation, test; return (and write) the run's metrics.

    ``overrides`` (the run's command-line overrides) go into the provenance record as the
    command that reproduces the run; by default Hydra's, else the process's argv.
    ``reuse_dirs``: folders whose complete runs with this run's training key (everything but
    the test-time ``noise``) lend their checkpoint instead of a new fit (a multirun's sweep
    folder; :mod:`deepm3.run.noise_eval`). The test stage also reports ``cfg.noise`` when not clean.
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
    log.info("model %s: %s parameters", cfg.model.name, f"{sum(p.numel() for p in module.net.parameters()):,}")
    resume = resume_path(cfg.ckpt_path, out)
    key = training_key(cfg)
    fitted: dict[str, Any] = {}  # the best checkpoint and the fit's record, for the run's record

    def describe(trainer: L.Trainer, tested: RecModule) -> RunMetrics:
        metrics = run_metrics(cfg, trainer, tested, datamodule, fitted["best"], fitted["trained"], key, overrides)
        if noise is not None:  # the best checkpoint is loaded: the same weights, perturbed test inputs
            metrics.update(noisy_stage(trainer, tested, datamodule, noise))
        return metrics

    record = RunRecord(out, cfg, datamodule, describe)  # writes the run folder when the test ends
    callbacks = [instantiate(c) for c in cfg.callbacks.values()] + [
        StepSeeder(cfg.seed),
        FiniteLossGuard(),
        DatasetStamp(resume, module, datamodule),
        record,
    ]
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, default_root_dir=str(out), logger=loggers)
    log_config(trainer.loggers, cfg)
    source = find_reusable_run(key, reuse_dirs, out) if reuse_dirs and resume is None else None
    if source is None:
        fitted["best"], fitted["trained"] = fit(trainer, module, datamodule, resume, cfg.monitor)
    else:  # the same training as a finished sibling run: test its checkpoint, do not fit again
        fitted["best"], fitted["trained"] = reuse_sibling(source, out, module, datamodule)
    trainer.test(module, datamodule=datamodule, ckpt_path=fitted["best"] or None, weights_only=True)
    assert record.metrics is not None  # written by RunRecord.on_test_end
    log.info("test metrics: %s", {k: round(v, 4) for k, v in sorted(record.metrics["test"].items())})
    return record.metrics


run = train  # the name tests and the studies import


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
        # in a multirun, sibling jobs that differ only in noise share one training (deepm3.run.noise_eval)
        reuse = [Path(hydra_cfg.sweep.dir)] if hydra_cfg.mode == RunMode.MULTIRUN else []
        metrics = train(cfg, Path(cfg.paths.output_dir), reuse_dirs=reuse)  # paths.output_dir= moves the whole run
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
    run_cli(main, config_name="train")


if __name__ == "__main__":
    cli()
