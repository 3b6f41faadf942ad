"""The Hydra command line of the suite, its one entry point: ``python -m deepm3.phase2`` runs every
stage; ``studies=[...]`` chooses stages (``'studies=[robustness,report]'``), with the same
``dataset=``, ``preset=``, ``seeds=`` ... whatever the stages.
"""

from __future__ import annotations

import logging
import re
import shlex

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from deepm3.errors import exit_on_user_error
from deepm3.phase2.pipeline import run_phase2

log = logging.getLogger(__name__)

COMMAND = "python -m deepm3.phase2"


def dataset_overrides(task: list[str]) -> list[str]:
    """The command line's ``dataset.*`` overrides, forwarded to every run."""
    return [o for o in task if re.match(r"^[+~]*dataset\.", o)]


@hydra.main(version_base="1.3", config_path="../conf", config_name="phase2")
def main(cfg: DictConfig) -> None:
    task = list(HydraConfig.get().overrides.task)
    # this invocation and the whole study, as the report prints them: quoted for a POSIX shell, so
    # that an override such as preset.tune.x={optim.lr:[0.001,0.003]} is not brace-expanded when pasted
    command = f"{COMMAND} {shlex.join(task)}".rstrip()
    whole = f"{COMMAND} {shlex.join(o for o in task if not o.startswith('studies='))}".rstrip()
    cfg.dataset_choice = HydraConfig.get().runtime.choices.get("dataset")
    cfg.dataset_overrides = [*cfg.dataset_overrides, *dataset_overrides(task)]
    try:
        run_phase2(cfg, command, whole)
    except Exception as exc:
        exit_on_user_error(exc, log)
        raise
