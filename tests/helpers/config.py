"""The packaged Hydra configs, and composing them as the entry points do."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

CONF_DIR = Path(__file__).resolve().parents[2] / "src" / "deepm3" / "conf"


def compose(config_name: str, overrides: Sequence[str] = ()) -> DictConfig:
    """``config_name`` (``train``, ``phase2``, ...) with ``overrides``, outside any running Hydra app."""
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
            return hydra_compose(config_name=config_name, overrides=list(overrides))
    finally:
        GlobalHydra.instance().clear()
