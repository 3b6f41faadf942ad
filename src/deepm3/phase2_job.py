"""One job of a phase2 launch (:mod:`deepm3.phase2.launch`): the ``job_index``-th run of ``jobs_file``.

Internal: ``python -m deepm3.phase2 ... launch=<launcher>`` starts it as a Hydra multirun, so
that joblib, submitit or Ray run the jobs; users never call it themselves.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig

from deepm3.phase2.train_all import train_one

log = logging.getLogger(__name__)


@hydra.main(version_base="1.3", config_path="conf", config_name="phase2_job")
def main(cfg: DictConfig) -> str:
    """Train (or skip, as the run lock says) one run folder of the launch."""
    jobs = json.loads(Path(cfg.jobs_file).read_text())
    job = jobs[int(cfg.job_index)]
    outcome = train_one(Path(job["directory"]), job["overrides"])
    log.info("%s: %s", job["name"], outcome)
    return outcome


if __name__ == "__main__":
    main()
