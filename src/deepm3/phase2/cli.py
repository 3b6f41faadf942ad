"""The Hydra command line of the suite: ``python -m deepm3.phase2`` runs every stage,
``python -m deepm3.phase2.<stage>`` one stage (and the report), with the same overrides.

A stage module ends with ``if __name__ == "__main__": run_stage("<study>")``: it only sets the
default ``studies=`` list, so ``dataset=``, ``preset=``, ``seeds=`` ... mean the same everywhere.
"""

from __future__ import annotations

import logging
import re
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from deepm3.errors import exit_on_user_error
from deepm3.phase2.pipeline import run_phase2

log = logging.getLogger(__name__)


def dataset_overrides(task: list[str]) -> list[str]:
    """The command line's ``dataset.*`` overrides, forwarded to every run."""
    return [o for o in task if re.match(r"^[+~]*dataset\.", o)]


def command_name() -> str:
    """``python -m deepm3.phase2[.<stage>]`` as the user typed it (for the report)."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    module = getattr(spec, "name", "") or "deepm3.phase2"
    return f"python -m {module.removesuffix('.__main__')}"


@hydra.main(version_base="1.3", config_path="../conf", config_name="phase2")
def main(cfg: DictConfig) -> None:
    task = list(HydraConfig.get().overrides.task)
    command = " ".join([command_name(), *task])
    cfg.dataset_choice = HydraConfig.get().runtime.choices.get("dataset")
    cfg.dataset_overrides = [*cfg.dataset_overrides, *dataset_overrides(task)]
    try:
        run_phase2(cfg, command)
    except Exception as exc:
        exit_on_user_error(exc, log)
        raise


def run_stage(*studies: str) -> None:
    """Run ``studies`` then the report, unless the command line chose ``studies=`` itself."""
    if not any(re.match(r"^[+~]*studies=", arg) for arg in sys.argv[1:]):
        sys.argv.append(f"studies=[{','.join([*studies, 'report'])}]")
    main()
