"""Train every run of a plan: resumable (complete runs are skipped) and failure-isolated.

Each run's config is the real ``train`` config composed with: ``dataset=<name>``, the model's
overrides, ``seed=<k>``, the preset's shared overrides, the user's extra overrides, the device
and ``paths.output_dir=<run dir>``. A run that raises writes ``error.json`` and the next starts.

A folder is complete *for a plan* only when the run in it trained what the plan asks for: its
recorded training key (:func:`deepm3.run.identity.training_key`, in ``metrics.json``) equals the
key of the config the plan composes for it. Folder names alone cannot tell a 3-epoch smoke run
from a 20-epoch study run of the same model and seed, so a folder holding a run of another
config stops the stage before anything is trained, unless ``overwrite`` retrains it in place.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf

import deepm3.conf
from deepm3.errors import ConfigError
from deepm3.phase2.launch import Job, Launcher, job_log, launch
from deepm3.phase2.plan import RUNS_DIR, Plan, RunSpec
from deepm3.phase2.progress import StudyProgress, measured_seconds
from deepm3.run.identity import NOT_TRAINING, recorded_identity, same_run_key, training_key
from deepm3.run.lock import lock_holder, training_lock
from deepm3.run_dir import (
    CONFIG_FILE,
    METRICS_FILE,
    clear_run,
    is_complete,
    read_config,
    read_metrics,
    write_metrics,
)
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


def reuse_run(source: Path, target: Path) -> None:
    """Copy a complete run folder (e.g. the winning tuning run, which is the seed-0 main run)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(source, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns(METRICS_FILE))
    write_metrics(target, {**read_metrics(source), "reused_from": str(source)})  # last: marks it complete


# --- which config made a complete run ------------------------------------------------------------

DEVICE_KEYS = ("trainer.accelerator", "trainer.devices")  # where a run trained, not what: tables ignore them
ABSENT = "<absent>"
SHOWN_SETTINGS = 6  # differing settings an error names before "and N more"


def training_settings(cfg: Any) -> dict[str, str]:
    """Every setting of a run config that decides what is trained (what :func:`training_key`
    digests), as ``dotted.key -> value``: what an error shows when two configs differ."""
    container = OmegaConf.to_container(cfg, resolve=False)
    assert isinstance(container, dict)
    flat: dict[str, str] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict) and node:
            for key, value in node.items():
                walk(value, f"{prefix}{key}.")
        else:
            text = node if isinstance(node, str) else json.dumps(node, sort_keys=True, default=str)
            flat[prefix[:-1]] = " ".join(text.split())  # one line, whatever the value

    for key, value in container.items():
        if key not in NOT_TRAINING:
            walk(value, f"{key}.")
    return flat


def config_differences(found: Any, planned: Any, *, for_tables: bool = False) -> tuple[dict[str, str], dict[str, str]]:
    """The settings in which a found run's config and the planned one differ, as ``(there, here)``.

    Settings only one side has are left out: a setting added to the config after a run was
    trained keeps the behaviour it was trained with at its default, so it cannot tell two plans
    apart, and a study trained before it can still be resumed and its tables rebuilt.
    ``for_tables`` also leaves out the device (tables compare what was trained, not where)."""
    there, here = training_settings(found), training_settings(planned)
    keys = sorted(k for k in set(there) & set(here) if not (for_tables and k in DEVICE_KEYS))
    differ = [k for k in keys if there.get(k, ABSENT) != here.get(k, ABSENT)]
    differ.sort(key=lambda k: (k not in there or k not in here, k))  # changed values before added settings
    return {k: there.get(k, ABSENT) for k in differ}, {k: here.get(k, ABSENT) for k in differ}


@dataclass(frozen=True)
class OtherConfig:
    """A complete run in one of a plan's folders that another config made, and how the two differ."""

    run: RunSpec
    there: dict[str, str]  # differing setting -> its value in the folder's run
    here: dict[str, str]  # ... and in this plan

    def describe(self) -> str:
        keys = list(self.there)
        shown = ", ".join(f"{k}={self.there[k]} there, {self.here[k]} in this plan" for k in keys[:SHOWN_SETTINGS])
        more = f" and {len(keys) - SHOWN_SETTINGS} more settings" if len(keys) > SHOWN_SETTINGS else ""
        return shown + more


def other_config(spec: RunSpec, overrides: Sequence[str], *, for_tables: bool = False) -> OtherConfig | None:
    """How the complete run in ``spec``'s folder differs from what ``overrides`` train; ``None``
    when it is this plan's run (or recorded nothing to tell)."""
    recorded = recorded_identity(spec.directory)
    if recorded is None:
        return None
    planned = compose_run(overrides)
    key = training_key(planned)
    if recorded == key:
        return None
    if (spec.directory / CONFIG_FILE).is_file():
        there, here = config_differences(read_config(spec.directory), planned, for_tables=for_tables)
        return OtherConfig(spec, there, here) if there else None
    return OtherConfig(spec, {"training_key": recorded}, {"training_key": key})


def other_configs(
    plan: Plan,
    shared: Sequence[str],
    device: str,
    *,
    for_tables: bool = False,
    verified: set[Path] | None = None,
) -> list[OtherConfig]:
    """The complete runs of ``plan`` that another config made (``verified``: folders already
    found to be this plan's, skipped and added to)."""
    found = []
    for spec in plan.runs:
        if not spec.complete or (verified is not None and spec.directory in verified):
            continue
        other = other_config(spec, run_overrides(plan, spec, shared, device), for_tables=for_tables)
        if other is not None:
            found.append(other)
        elif verified is not None:
            verified.add(spec.directory)
    return found


def refuse_other_configs(found: Sequence[OtherConfig], stage: str, *, for_tables: bool = False) -> None:
    """Raise one line naming the first folder of another config, both sides of what differs and
    the ways out; nothing when ``found`` is empty."""
    if not found:
        return
    first = found[0]
    others = len(found) - 1
    more = f"; so do {others} more folder{'s' if others > 1 else ''} in {first.run.directory.parent}" if others else ""
    way = (
        "tables are written from the runs of one plan only: write this plan to another folder with "
        "results_dir=<dir>, or retrain those runs in place with the train stage and overwrite=true"
        if for_tables
        else "it is not reused: write this plan to another folder with results_dir=<dir>, "
        "or retrain it in place with overwrite=true (the run in the folder is replaced)"
    )
    raise ConfigError(
        f"phase2 {stage}: {first.run.directory} holds a complete run of another config "
        f"({first.describe()}){more}; {way}"
    )


def require_one_plan(
    plan: Plan, shared: Sequence[str], device: str, stage: str, verified: set[Path] | None = None
) -> None:
    """Before a table is written from ``plan``'s runs: refuse (one line) when a run of another
    plan -- another preset, budget, model size -- stands in one of its folders."""
    found = other_configs(plan, shared, device, for_tables=True, verified=verified)
    refuse_other_configs(found, stage, for_tables=True)


def _made_by(run_dir: Path, overrides: Sequence[str]) -> bool:
    """Whether the complete run in ``run_dir`` trained what ``overrides`` train (``True`` when it
    recorded nothing to tell)."""
    recorded = recorded_identity(run_dir)
    if recorded is None or recorded == training_key(compose_run(overrides)):
        return True
    if not (Path(run_dir) / CONFIG_FILE).is_file():
        return False
    return not config_differences(read_config(run_dir), compose_run(overrides))[0]


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
    overwrite: bool = False,
    launcher: Launcher | None = None,
) -> TrainSummary:
    """Train each incomplete run of ``plan``; never raises for one run's failure.

    ``reusable`` maps :func:`same_run_key` of complete runs (the tuning runs) to their folder:
    a planned run with the same key is copied from there instead of being trained again.
    Before the first run the plan is logged (runs, complete, copies, to train, a rough time
    estimate from complete runs' ``train_seconds`` or ``seconds_hint``); after each run one
    progress line (``k of N``, elapsed, time left, failures so far), with a bar where stderr is
    a terminal (``bar``: None = decide from stderr) -- :mod:`deepm3.phase2.progress`.
    ``measured_from``: more complete runs to learn run times from (e.g. the tuning runs).

    A complete run counts only when its recorded training key is the plan's (:func:`other_configs`);
    one of another config raises :class:`ConfigError` before anything is trained, or with
    ``overwrite`` is retrained in place. A ``reusable`` run of another config is not copied.
    ``launcher``: the runs to train go out as one Hydra multirun through it (:mod:`.launch`).
    """
    summary = TrainSummary()
    device_overrides(device)  # a bad device is the user's error, not every run's
    stale = other_configs(plan, shared, device)
    if not overwrite:
        refuse_other_configs(stale, stage)
    replaced = {other.run.name for other in stale}
    actions: list[tuple[RunSpec, list[str], Path | None]] = []
    for spec in plan.runs:
        if spec.complete and spec.name not in replaced:
            continue
        overrides = run_overrides(plan, spec, shared, device)
        source = (reusable or {}).get(same_run_key(overrides))
        usable = source is not None and is_complete(source) and _made_by(source, overrides)
        actions.append((spec, overrides, source if usable else None))
    todo = [spec for spec, _, source in actions if source is None]
    progress = StudyProgress(
        stage, todo, len(actions), measured_seconds([*plan.completed(), *measured_from]), seconds_hint, bar
    )
    log.info("%s", progress.plan_line(len(plan.runs), len(plan.runs) - len(actions), len(actions) - len(todo)))
    pending = {spec.name: (overrides, source) for spec, overrides, source in actions}
    if launcher is not None:
        return _launch_stage(plan, pending, replaced, launcher, stage, summary)
    with progress:
        for spec in plan.runs:
            if spec.name not in pending:
                summary.skipped.append(spec.name)
                continue
            overrides, source = pending[spec.name]
            if source is not None:
                log.info("phase2: %s is the same run as %s: copied, not trained again", spec.name, source.name)
                if spec.name in replaced:
                    clear_run(spec.directory)
                reuse_run(source, spec.directory)
                summary.skipped.append(spec.name)
                log.info("%s", progress.finished(spec, "copied"))
                continue
            start = time.monotonic()
            with training_lock(spec.directory) as mine:
                done = mine and is_complete(spec.directory)
                if not mine or (done and _made_by(spec.directory, overrides)):  # another runner has it, or finished it
                    holder = lock_holder(spec.directory)
                    why = f"being trained by process {holder}" if not mine else "completed by another process"
                    log.info("phase2: %s is %s: skipped", spec.name, why)
                    summary.skipped.append(spec.name)
                    log.info("%s", progress.finished(spec, "skipped"))
                    continue
                if done and spec.name not in replaced:  # another runner finished it with another config
                    summary.failed[spec.name] = "completed meanwhile by another process with another config"
                    log.info("%s", progress.finished(spec, "failed"))
                    continue
                if done:
                    log.info("phase2: %s holds a run of another config: overwrite=true, retrained", spec.name)
                    clear_run(spec.directory)
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


def _launch_stage(
    plan: Plan,
    pending: dict[str, tuple[list[str], Path | None]],
    replaced: set[str],
    launcher: Launcher,
    stage: str,
    summary: TrainSummary,
) -> TrainSummary:
    """:func:`train_all` through a launcher: copies here, every run to train in one multirun; then
    each run is read back from its folder (complete = trained, else failed with its job log)."""
    jobs = []
    for spec in plan.runs:
        if spec.name not in pending:
            summary.skipped.append(spec.name)
            continue
        overrides, source = pending[spec.name]
        if spec.name in replaced:
            clear_run(spec.directory)
        if source is not None:
            reuse_run(source, spec.directory)
            summary.skipped.append(spec.name)
            continue
        jobs.append((spec, Job(spec.name, str(spec.directory), list(overrides))))
    if jobs:
        sweep = launch([job for _, job in jobs], launcher, plan.results_dir / plan.dataset / RUNS_DIR, stage)
        for index, (spec, job) in enumerate(jobs):
            if is_complete(spec.directory) and _made_by(spec.directory, job.overrides):
                summary.trained.append(spec.name)
            elif lock_holder(spec.directory) is not None:  # another runner is training it: not ours to judge
                summary.skipped.append(spec.name)
            else:
                summary.failed[spec.name] = f"no complete run; see {spec.directory} and {job_log(sweep, index)}"
                log.info("phase2 %s: %s failed (log: %s)", stage, spec.name, job_log(sweep, index))
    log.info(
        "phase2: %d trained through %s, %d skipped (already complete or copied), %d failed",
        len(summary.trained),
        launcher.name,
        len(summary.skipped),
        len(summary.failed),
    )
    return summary


def train_one(directory: Path, overrides: Sequence[str]) -> str:
    """One launched job (:mod:`deepm3.phase2_job`): train a run folder under its lock, as the loop
    above does; ``trained``, ``skipped`` (held or finished by another runner) or ``failed``."""
    directory = Path(directory)
    with training_lock(directory) as mine:
        if not mine or (is_complete(directory) and _made_by(directory, overrides)):
            log.info("%s: held or finished by another runner: skipped", directory.name)
            return "skipped"
        if is_complete(directory):  # the stage refused (or cleared) other configs before launching
            record_failure(directory, list(overrides), ConfigError(f"{directory} holds a run of another config"))
            return "failed"
        try:
            run(compose_run(overrides), output_dir=directory, overrides=list(overrides))
        except Exception as exc:  # noqa: BLE001 -- one run's failure must not stop the others
            record_failure(directory, list(overrides), exc)
            return "failed"
    return "trained"
