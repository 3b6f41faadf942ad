"""A stage's runs sent out through a Hydra launcher: joblib on one machine, submitit (SLURM, or its
local executor), Ray -- the ecosystem's own tools instead of a scheduler of ours.

``python -m deepm3.phase2 ... launch=joblib`` makes each training stage write the runs it has to
train to ``<runs>/_launch/<stage>-<time>/jobs.json`` and start one Hydra multirun of the job app
(:mod:`deepm3.phase2_job`, internal: the suite keeps one entry point) over them
(``job_index=range(0,N)``, ``hydra/launcher=<launcher>``), then wait for it.
Each job trains one run folder as the sequential runner does (:func:`.train_all.train_one`): it
takes the run's lock and skips a run another runner holds or has finished with the same config,
so the lock stays the single source of truth and several launches (or a sequential runner) can
share a plan. A failing run leaves ``error.json`` in its folder and does not stop the others;
the stage then names each failed run with its job log. Rerunning the command resumes the plan.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from omegaconf import DictConfig

from deepm3.errors import ConfigError

log = logging.getLogger(__name__)

JOBS_FILE = "jobs.json"
LAUNCH_DIR = "_launch"
LAUNCH_LOG = "launch.log"
# launcher name (a `hydra/launcher` option) -> the plugin module that provides it, and its pip name
PLUGINS = {
    "basic": (None, None),  # Hydra's own: one job after another in this process (for checks)
    "joblib": ("hydra_plugins.hydra_joblib_launcher", "hydra-joblib-launcher"),
    "submitit_local": ("hydra_plugins.hydra_submitit_launcher", "hydra-submitit-launcher"),
    "submitit_slurm": ("hydra_plugins.hydra_submitit_launcher", "hydra-submitit-launcher"),
    "ray": ("hydra_plugins.hydra_ray_launcher", "hydra-ray-launcher"),
}


@dataclass(frozen=True)
class Launcher:
    """``launch=`` and ``launch_overrides=`` of the phase2 config: which Hydra launcher, and its
    settings as Hydra overrides (``hydra.launcher.n_jobs=2``, ``hydra.launcher.partition=gpu``)."""

    name: str
    overrides: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.name not in PLUGINS:
            raise ConfigError(f"phase2: launch={self.name!r} is unknown; expected one of {sorted(PLUGINS)} or null")
        module, package = PLUGINS[self.name]
        if module is not None and importlib.util.find_spec(module) is None:
            raise ConfigError(
                f"phase2: launch={self.name} needs the {package} plugin; pip install {package}"
                + (" (or: pip install -e '.[launchers]')" if self.name != "ray" else "")
            )


def launcher_from_config(cfg: DictConfig) -> Launcher | None:
    """The phase2 config's launcher, or ``None`` (the sequential runner)."""
    name = cfg.get("launch")
    if name in (None, "", "none", "null"):
        return None
    return Launcher(str(name), tuple(str(o) for o in cfg.get("launch_overrides") or ()))


@dataclass(frozen=True)
class Job:
    """One run to train: its folder and the full override list of ``python -m deepm3.train``."""

    name: str
    directory: str
    overrides: list[str]


def launch(jobs: Sequence[Job], launcher: Launcher, runs_dir: Path, stage: str) -> Path:
    """Run ``jobs`` as one Hydra multirun through ``launcher`` and wait for it; return its folder.

    The multirun's own output (one folder per job with its log, submitit's pickles and logs)
    goes to ``<runs_dir>/_launch/<stage>-<time>/``; ``launch.log`` there holds its console.
    """
    sweep = Path(runs_dir) / LAUNCH_DIR / f"{stage}-{datetime.now().strftime('%Y-%m-%d_%H-%M-%S-%f')}"
    sweep.mkdir(parents=True, exist_ok=True)
    (sweep / JOBS_FILE).write_text(json.dumps([job.__dict__ for job in jobs], indent=1))
    command = [
        sys.executable,
        "-m",
        "deepm3.phase2_job",
        "-m",
        f"jobs_file={sweep / JOBS_FILE}",
        f"job_index=range(0,{len(jobs)})",
        f"hydra/launcher={launcher.name}",
        f"hydra.sweep.dir={sweep}",
        *launcher.overrides,
    ]
    log.info("phase2 %s: %d runs through hydra/launcher=%s (log: %s)", stage, len(jobs), launcher.name, sweep)
    with open(sweep / LAUNCH_LOG, "w") as console:
        code = subprocess.run(command, stdout=console, stderr=subprocess.STDOUT, env=dict(os.environ)).returncode
    if code != 0:
        last = [line for line in (sweep / LAUNCH_LOG).read_text().splitlines() if line.strip()][-1:]
        raise ConfigError(
            f"phase2 {stage}: the {launcher.name} launch failed (exit {code}: {last[0] if last else 'no output'});"
            f" see {sweep / LAUNCH_LOG}"
        )
    return sweep


def job_log(sweep: Path, index: int) -> Path:
    """Where job ``index`` of a launch logged: its Hydra job folder (or submitit's folder)."""
    folder = sweep / str(index)
    logs = sorted(folder.glob("*.log")) if folder.is_dir() else []
    return logs[0] if logs else sweep / LAUNCH_LOG
