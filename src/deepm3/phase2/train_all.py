"""Train every run of a plan: resumable (complete runs are skipped) and failure-isolated.

Each run's config is the real ``train`` config composed with: ``dataset=<name>``, the model's
overrides, ``seed=<k>``, the preset's shared overrides, the user's extra overrides, the device
and ``paths.output_dir=<run dir>``. A run that raises writes ``error.json`` and the next starts.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

import deepm3.conf
from deepm3.errors import ConfigError
from deepm3.phase2.plan import Plan, RunSpec
from deepm3.phase2.progress import StudyProgress, measured_seconds
from deepm3.run_dir import METRICS_FILE, is_complete, lock_holder, read_metrics, training_lock, write_metrics
from deepm3.train import record_failure, run

log = logging.getLogger(__name__)

CONF_DIR = Path(deepm3.conf.__path__[0])
DEVICES = {"auto": "auto", "cpu": "cpu", "cuda": "gpu", "gpu": "gpu"}


@dataclass
class TrainSummary:
    """What one invocation did, by run name."""

    trained: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def device_overrides(device: str) -> list[str]:
    """``device=auto|cpu|cuda`` as trainer overrides."""
    if device not in DEVICES:
        raise ConfigError(f"phase2: device={device!r}; expected one of {sorted(DEVICES)}")
    return [f"trainer.accelerator={DEVICES[device]}"]


def run_overrides(plan: Plan, spec: RunSpec, shared: Sequence[str], device: str) -> list[str]:
    """The full override list of one run (also what the report prints as its command)."""
    return [
        f"dataset={plan.choice}",
        *spec.overrides,
        f"seed={spec.seed}",
        *shared,
        *device_overrides(device),
        f"paths.output_dir={spec.directory}",
    ]


@contextmanager
def train_config_context() -> Iterator[None]:
    """Compose packaged configs (``train``, ``bench``) inside or outside a running Hydra app."""
    if GlobalHydra.instance().is_initialized():
        yield
        return
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        yield


def compose_run(overrides: Sequence[str]) -> DictConfig:
    with train_config_context():
        return compose(config_name="train", overrides=list(overrides))


def same_run_key(overrides: Sequence[str]) -> tuple[str, ...]:
    """A run's overrides without its output folder: two runs with equal keys train identically."""
    return tuple(o for o in overrides if not o.startswith("paths.output_dir="))


def reuse_run(source: Path, target: Path) -> None:
    """Copy a complete run folder (e.g. the winning tuning run, which is the seed-0 main run)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(source, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns(METRICS_FILE))
    write_metrics(target, {**read_metrics(source), "reused_from": str(source)})  # last: marks it complete


def train_all(
    plan: Plan,
    shared: Sequence[str] = (),
    device: str = "auto",
    reusable: dict[tuple[str, ...], Path] | None = None,
    *,
    stage: str = "train",
    seconds_hint: float | None = None,
    measured_from: Sequence[RunSpec] = (),
    bar: bool | None = None,
) -> TrainSummary:
    """Train each incomplete run of ``plan``; never raises for one run's failure.

    ``reusable`` maps :func:`same_run_key` of complete runs (the tuning runs) to their folder:
    a planned run with the same key is copied from there instead of being trained again.
    Before the first run the plan is logged (runs, complete, copies, to train, a rough time
    estimate from complete runs' ``train_seconds`` or ``seconds_hint``); after each run one
    progress line (``k of N``, elapsed, time left, failures so far), with a bar where stderr is
    a terminal (``bar``: None = decide from stderr) -- :mod:`deepm3.phase2.progress`.
    ``measured_from``: more complete runs to learn run times from (e.g. the tuning runs).
    """
    summary = TrainSummary()
    device_overrides(device)  # a bad device is the user's error, not every run's
    actions: list[tuple[RunSpec, list[str], Path | None]] = []
    for spec in plan.runs:
        if spec.complete:
            continue
        overrides = run_overrides(plan, spec, shared, device)
        source = (reusable or {}).get(same_run_key(overrides))
        actions.append((spec, overrides, source if source is not None and is_complete(source) else None))
    todo = [spec for spec, _, source in actions if source is None]
    progress = StudyProgress(
        stage, todo, len(actions), measured_seconds([*plan.completed(), *measured_from]), seconds_hint, bar
    )
    log.info("%s", progress.plan_line(len(plan.runs), len(plan.runs) - len(actions), len(actions) - len(todo)))
    pending = {spec.name: (overrides, source) for spec, overrides, source in actions}
    with progress:
        for spec in plan.runs:
            if spec.name not in pending:
                summary.skipped.append(spec.name)
                continue
            overrides, source = pending[spec.name]
            if source is not None:
                log.info("phase2: %s is the same run as %s: copied, not trained again", spec.name, source.name)
                reuse_run(source, spec.directory)
                summary.skipped.append(spec.name)
                log.info("%s", progress.finished(spec, "copied"))
                continue
            start = time.monotonic()
            with training_lock(spec.directory) as mine:
                if not mine or is_complete(spec.directory):  # another runner has it, or finished it
                    holder = lock_holder(spec.directory)
                    why = f"being trained by process {holder}" if not mine else "completed by another process"
                    log.info("phase2: %s is %s: skipped", spec.name, why)
                    summary.skipped.append(spec.name)
                    log.info("%s", progress.finished(spec, "skipped"))
                    continue
                log.info("phase2: training %s", spec.name)
                try:
                    run(compose_run(overrides), output_dir=spec.directory, overrides=overrides)
                except Exception as exc:  # noqa: BLE001 -- isolation is the point: record and go on
                    record_failure(spec.directory, overrides, exc)
                    summary.failed[spec.name] = f"{type(exc).__name__}: {exc}"
                    log.info("%s", progress.finished(spec, "failed", time.monotonic() - start))
                    continue
            summary.trained.append(spec.name)
            log.info("%s", progress.finished(spec, "trained", time.monotonic() - start))
    log.info(
        "phase2: %d trained, %d skipped (already complete), %d failed",
        len(summary.trained),
        len(summary.skipped),
        len(summary.failed),
    )
    return summary
