"""Experiment trackers: the ``logger=`` config group (``conf/logger/``) turned into Lightning loggers.

``csv`` (the default, no extra package) keeps ``<run dir>/logs/metrics.csv``; ``tensorboard``,
``mlflow`` (a local file store) and ``wandb`` (offline) need the ``trackers`` extra, and ``many``
or a list (``'logger=[csv,mlflow]'``) selects several. Lightning sends every logged metric to
each; :func:`log_config` adds the composed run config as hyper-parameters and
:func:`publish_run` the finished run's ``metrics.json`` (as a file, and its numbers as
``final/...`` metrics), so a tracker shows what the run folder holds.
"""

from __future__ import annotations

import importlib.util
import json
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from lightning.pytorch.loggers import CSVLogger, Logger, MLFlowLogger, TensorBoardLogger, WandbLogger
from omegaconf import DictConfig, OmegaConf

from deepm3.errors import ConfigError

log = logging.getLogger(__name__)

INSTALL = 'pip install -e ".[trackers]"'
# logger class -> the packages that provide it (any one is enough)
NEEDS = {"TensorBoardLogger": ("tensorboard", "tensorboardX"), "MLFlowLogger": ("mlflow",), "WandbLogger": ("wandb",)}
# metrics.json sections that describe the data and the machine, not the result
NOT_RESULTS = ("data", "provenance", "protocol", "solver", "noise", "seed")


def build_loggers(cfg: DictConfig, output_dir: Path) -> list[Logger]:
    """The loggers ``cfg.logger`` selects; a tracker whose package is missing stops with one line.

    A config without the group (saved before it existed) gets today's CSV logger.
    """
    specs = cfg.get("logger")
    if specs is None:
        return [CSVLogger(save_dir=str(output_dir), name="logs", version="")]
    loggers = []
    for name, spec in specs.items():
        if not isinstance(spec, DictConfig) or "_target_" not in spec:
            raise ConfigError(f"logger.{name}: expected a Lightning logger config with a _target_")
        needs = NEEDS.get(str(spec._target_).rsplit(".", 1)[-1])
        if needs and not any(importlib.util.find_spec(package) for package in needs):
            raise ConfigError(f"logger={name} needs the {needs[0]} package, not installed: {INSTALL}")
        if needs == NEEDS["WandbLogger"]:
            _finish_wandb()  # a run left open by an earlier job of this process would swallow this one
        try:
            loggers.append(instantiate(spec))
        except Exception as exc:  # a bad tracker setting (URI, folder) is the user's to fix: one line
            cause = exc.__cause__ or exc
            raise ConfigError(f"logger={name}: {type(cause).__name__}: {cause}") from exc
    return loggers


def log_config(loggers: Iterable[Logger], cfg: DictConfig) -> None:
    """Send the composed run config to every tracker as hyper-parameters (Lightning sends the module's own).

    Not to the CSV logger: its ``hparams.yaml`` stays as it was, and ``.hydra/config.yaml`` sits beside it.
    """
    params = run_params(cfg)
    for logger in loggers:
        if not isinstance(logger, CSVLogger):
            logger.log_hyperparams(params)


def run_params(cfg: DictConfig) -> dict[str, Any]:
    """The run config as plain containers, resolved where it can be, less the trackers' own settings."""
    try:
        params = OmegaConf.to_container(cfg, resolve=True)
    except Exception:  # an interpolation that needs a running Hydra app: log it as written
        params = OmegaConf.to_container(cfg, resolve=False)
    assert isinstance(params, dict)
    params.pop("logger", None)
    return params


def final_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """``metrics.json``'s numbers as ``final/<key path>`` (the result sections, not data or provenance).

    >>> final_metrics({"test": {"ndcg@10": 0.5}, "epochs": 3, "model": "pop", "data": {"users": 9}})
    {'final/test/ndcg@10': 0.5, 'final/epochs': 3.0}
    """
    out: dict[str, float] = {}

    def walk(value: Any, key: str) -> None:
        if isinstance(value, Mapping):
            for k, v in value.items():
                walk(v, f"{key}/{k}")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = float(value)

    for key, value in metrics.items():
        if key not in NOT_RESULTS:
            walk(value, f"final/{key}")
    return out


def publish_run(loggers: Iterable[Logger], metrics_file: Path, cfg: DictConfig) -> None:
    """Give each tracker the finished run's ``metrics.json``: the file itself and its numbers."""
    metrics = json.loads(Path(metrics_file).read_text())
    final = final_metrics(metrics)
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            # the config with the final numbers: one row of TensorBoard's HPARAMS tab
            logger.log_hyperparams(run_params(cfg), metrics=final)
            logger.experiment.add_text("metrics.json", "```json\n" + json.dumps(metrics, indent=2) + "\n```")
            logger.experiment.flush()
        elif isinstance(logger, MLFlowLogger):
            logger.log_metrics(final)
            logger.experiment.log_artifact(logger.run_id, str(metrics_file))
        elif isinstance(logger, WandbLogger):
            run = logger.experiment
            run.summary.update(final)
            run.save(str(metrics_file), base_path=str(Path(metrics_file).parent), policy="now")
            run.finish()


def _finish_wandb() -> None:
    import wandb

    if wandb.run is not None:
        log.info("finishing the W&B run %s left open by an earlier run of this process", wandb.run.id)
        wandb.finish()
