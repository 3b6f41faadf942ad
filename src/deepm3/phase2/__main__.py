"""``python -m deepm3.phase2 dataset=<name> preset=<smoke|full> seeds=[...] device=auto``."""

from __future__ import annotations

import logging
import re
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from deepm3.errors import user_error
from deepm3.phase2.pipeline import run_phase2

log = logging.getLogger(__name__)


def dataset_overrides(task: list[str]) -> list[str]:
    """The command line's ``dataset.*`` overrides, forwarded to every run."""
    return [o for o in task if re.match(r"^[+~]*dataset\.", o)]


@hydra.main(version_base="1.3", config_path="../conf", config_name="phase2")
def main(cfg: DictConfig) -> None:
    task = list(HydraConfig.get().overrides.task)
    command = " ".join(["python -m deepm3.phase2", *task])
    cfg.dataset_choice = HydraConfig.get().runtime.choices.get("dataset")
    cfg.dataset_overrides = [*cfg.dataset_overrides, *dataset_overrides(task)]
    try:
        run_phase2(cfg, command)
    except Exception as exc:
        error = user_error(exc)
        if error is None:
            raise
        log.error("%s", error)
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
