"""A tiny experiment suite: the ``phase2`` config as ``python -m deepm3.phase2`` composes it, on
``TinySource`` with a small plan of models that train in seconds."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from tests.helpers.config import compose
from tests.helpers.tiny_runs import FAST_TRAINER, tiny_dataset

MODELS = {  # the default plan: one model of each kind, and one that fails
    "deepm3-euler": ["model=deepm3", "model.net.hidden=16", "model.net.field.width=16"],
    "gru4rec": ["model=gru4rec", "model.net.hidden=16", "model.net.gru_hidden=16"],
    "pop": ["model=pop"],
    "broken": ["model=pop", "model.net._target_=deepm3.no_such_module.Net"],  # fails in this run only
}


def phase2_config(results: Path | None, data: Path, *overrides: str, models: dict | None = None) -> DictConfig:
    """Like ``python -m deepm3.phase2 <TinySource dataset overrides> ...`` with a tiny plan
    (``results=None``: no ``results_dir=``, the preset's own folder)."""
    tiny = tiny_dataset(data)
    dataset = [o for o in tiny if not o.startswith("paths.")]
    cfg = compose(
        "phase2",
        [
            *([] if results is None else [f"results_dir={results}"]),
            "seeds=[0,1]",
            "device=cpu",
            "noise_sweeps=[jitter,item_dropout]",
            "entropy_seeds=[0,1]",
            "bootstrap=50",
            "allow_dirty=true",  # the suite trains from this checkout, whatever its state
            *dataset,
            *overrides,
        ],
    )
    cfg.dataset_choice, cfg.dataset_overrides = "ml100k", dataset  # what __main__ forwards from the command line
    cfg.train_overrides = [*FAST_TRAINER, *[o for o in tiny if o.startswith("paths.")]]
    cfg.preset.models = MODELS if models is None else models
    cfg.preset.tune = {}  # the preset's grid names models this tiny plan does not have
    return cfg
