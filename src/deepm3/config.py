"""Checks on a composed config that fail before any work, with one line saying what is allowed."""

from __future__ import annotations

from omegaconf import DictConfig

from deepm3.errors import ConfigError
from deepm3.metrics import EVAL_MODES


def validate_config(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` for values whose problem would otherwise surface mid-run."""
    _positive_int(cfg.trainer.get("max_epochs"), "trainer.max_epochs", allow=-1)
    _positive_int(cfg.dataset.get("max_len"), "dataset.max_len")
    _positive_int(cfg.dataset.get("batch_size"), "dataset.batch_size")
    if cfg.monitor.split("/")[-1] not in {f"{m}@{k}" for m in ("hr", "ndcg", "mrr") for k in cfg.eval.ks}:
        raise ConfigError(f"monitor={cfg.monitor!r}; expected val/<hr|ndcg|mrr>@<k> with k in eval.ks={list(cfg.eval.ks)}")
    if cfg.optim.loss not in ("ce", "bpr"):
        raise ConfigError(f"optim.loss={cfg.optim.loss!r}; expected 'ce' or 'bpr'")
    if cfg.eval.get("mode", "full") not in EVAL_MODES:
        raise ConfigError(f"eval.mode={cfg.eval.mode!r}; expected one of {list(EVAL_MODES)}")
    if cfg.eval.get("mode", "full") == "sampled":
        _positive_int(cfg.eval.get("negatives"), "eval.negatives")


def _positive_int(value: object, key: str, allow: int | None = None) -> None:
    if value is None or (allow is not None and value == allow):
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{key}={value!r}; expected a positive integer")
