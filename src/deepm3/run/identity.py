"""When two runs are the same run: one rule, :data:`NOT_TRAINING`, read at two levels.

A run's identity is its :func:`training_key`, a digest of its composed config without the keys
that cannot change what is trained (:data:`NOT_TRAINING`: where files go, the test-time noise, a
resume path, Hydra's own settings, the trackers). Every complete run records it in
``metrics.json`` (:func:`recorded_identity` reads it back). A multirun's sibling jobs with equal
keys share one training (:mod:`deepm3.run.noise_eval`); a study counts a run folder as complete for
its plan only when the recorded key is the plan's (:mod:`deepm3.phase2.train_all`).

:func:`same_run_key` looks a run up by its overrides before anything is composed: the overrides
less the output folder (the one setting in which a tuning run and the main run it also is
differ). It only finds a candidate; the candidate's recorded training key must still be the
planned run's before it is reused (:func:`deepm3.phase2.train_all.train_all`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from deepm3.run_dir import CONFIG_FILE, read_config, try_read_metrics

# Keys that cannot change what is trained: where files go, the test-time noise, a resume path, the trackers.
NOT_TRAINING = ("noise", "paths", "ckpt_path", "hydra", "logger")
# Dataset keys that describe the data for the claims page (conf/dataset/base.yaml), not what is trained.
NOT_TRAINING_DATASET = ("facts",)


def training_key(cfg: DictConfig) -> str:
    """Digest of everything in ``cfg`` that decides what is trained: two runs with the same key
    train the same network on the same data the same way, whatever their noise or folder.

    The config is taken unresolved, so interpolations into the ignored keys (a checkpoint folder
    under ``${paths.output_dir}``) read the same in every run.
    """
    container = OmegaConf.to_container(cfg, resolve=False)
    assert isinstance(container, dict)
    kept = {key: value for key, value in container.items() if key not in NOT_TRAINING}
    if isinstance(kept.get("dataset"), dict):
        kept["dataset"] = {k: v for k, v in kept["dataset"].items() if k not in NOT_TRAINING_DATASET}
    text = json.dumps(kept, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def same_run_key(overrides: Sequence[str]) -> tuple[str, ...]:
    """A run's overrides without its output folder: two runs with equal keys train identically."""
    return tuple(o for o in overrides if not o.startswith("paths.output_dir="))


def recorded_identity(run_dir: Path) -> str | None:
    """The training key of the complete run in ``run_dir``: its ``metrics.json``'s, else (runs
    trained before keys were recorded) the key of its saved config; ``None`` when it recorded
    neither -- a folder written by hand, which the checks take on trust."""
    key = (try_read_metrics(run_dir) or {}).get("training_key")
    if key:
        return str(key)
    if (Path(run_dir) / CONFIG_FILE).is_file():
        return training_key(read_config(run_dir))
    return None
