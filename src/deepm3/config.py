"""Checks on a composed config that fail before any work, with one line saying what is allowed."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from hydra.utils import get_method
from omegaconf import DictConfig, OmegaConf

from deepm3.errors import ConfigError
from deepm3.metrics import EVAL_MODES


def validate_config(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` for values whose problem would otherwise surface mid-run."""
    _positive_int(cfg.trainer.get("max_epochs"), "trainer.max_epochs", allow=-1)
    _positive_int(cfg.dataset.get("max_len"), "dataset.max_len")
    _positive_int(cfg.dataset.get("batch_size"), "dataset.batch_size")
    if cfg.monitor.split("/")[-1] not in {f"{m}@{k}" for m in ("hr", "ndcg", "mrr") for k in cfg.eval.ks}:
        raise ConfigError(
            f"monitor={cfg.monitor!r}; expected val/<hr|ndcg|mrr>@<k> with k in eval.ks={list(cfg.eval.ks)}"
        )
    if cfg.optim.loss not in ("ce", "bpr"):
        raise ConfigError(f"optim.loss={cfg.optim.loss!r}; expected 'ce' or 'bpr'")
    if cfg.eval.get("mode", "full") not in EVAL_MODES:
        raise ConfigError(f"eval.mode={cfg.eval.mode!r}; expected one of {list(EVAL_MODES)}")
    if cfg.eval.get("mode", "full") == "sampled":
        _positive_int(cfg.eval.get("negatives"), "eval.negatives")
    _integer(cfg.get("seed"), "seed")
    _number(cfg.optim.get("lr"), "optim.lr", "a positive number (e.g. 0.001)", lambda v: v > 0)
    _number(cfg.optim.get("weight_decay"), "optim.weight_decay", "a non-negative number", lambda v: v >= 0)
    _optimizer_target(cfg.optim.get("_target_"))
    for key in ("user_core", "item_core"):
        _non_negative_int(cfg.dataset.get(key), f"dataset.{key}")
    _positive_int(cfg.dataset.get("eval_batch_size"), "dataset.eval_batch_size")
    _non_negative_int(cfg.dataset.get("num_workers"), "dataset.num_workers")
    if cfg.dataset.get("min_rating") is not None:
        _number(cfg.dataset.min_rating, "dataset.min_rating", "a number or null", lambda v: True)
    for k in cfg.eval.ks:
        _positive_int(k, "eval.ks[]")
    if "model" in cfg and isinstance(cfg.model.get("net"), Mapping):
        _check_net(OmegaConf.to_container(cfg.model.net, resolve=False), "model.net")
    stopping = OmegaConf.select(cfg, "callbacks.early_stopping")
    if isinstance(stopping, Mapping) and "patience" in stopping:
        _non_negative_int(stopping.get("patience"), "callbacks.early_stopping.patience")
    _check_accelerator(cfg.trainer.get("accelerator"))


def _check_accelerator(value: object) -> None:
    """``gpu``/``cuda`` on a machine where torch sees none: one line, not Lightning's traceback."""
    if not isinstance(value, str) or value.lower() not in ("gpu", "cuda"):
        return
    import torch

    mps = value.lower() == "gpu" and torch.backends.mps.is_available()  # Lightning maps gpu to Apple's MPS too
    if not torch.cuda.is_available() and not mps:
        raise ConfigError(
            f"trainer.accelerator={value}, but torch sees no GPU here (torch {torch.__version__}, CUDA build "
            f"{torch.version.cuda or 'none'}); use trainer.accelerator=auto or cpu"
        )


# Sizes and probabilities of the packaged networks (conf/model/*.yaml), checked wherever they appear
# in model.net, so a zero width or a dropout of 2 is one line here, not an error deep inside torch.
NET_SIZES = {"hidden", "gru_hidden", "layers", "blocks", "heads", "ffn_mult", "gap_features", "width", "depth", "clip"}
NET_PROBABILITIES = {"dropout", "state_dropout", "attn_dropout", "emb_dropout"}


def _check_net(net: Any, prefix: str) -> None:
    if not isinstance(net, Mapping):
        return
    for key, value in net.items():
        where = f"{prefix}.{key}"
        if isinstance(value, str) and value.startswith("${"):
            continue  # an interpolation (e.g. max_len: ${dataset.max_len}) is checked where it points
        if key in NET_SIZES:
            _positive_int(value, where)
        elif key in NET_PROBABILITIES:
            _number(value, where, "a probability in [0, 1)", lambda v: 0 <= v < 1)
        elif isinstance(value, Mapping) and key == "field":
            _check_net(value, where)
        elif key == "solver" and value is not None and not isinstance(value, Mapping):
            raise ConfigError(
                f"{where}={value!r}; expected the solver group's mapping: choose it with solver=<euler|rk4|none> "
                "or set model.net.solver.method=..."
            )


def _optimizer_target(target: object) -> None:
    """``optim._target_`` must name something callable (an optimizer class), checked before any data is read."""
    if target is None:
        return  # a config saved before the optimizer was configurable: AdamW
    expected = "expected an optimizer class such as torch.optim.AdamW or torch.optim.Adam"
    if not isinstance(target, str) or not target:
        raise ConfigError(f"optim._target_={target!r}; {expected}")
    try:
        get_method(target)
    except Exception:  # noqa: BLE001 -- ImportError, ValueError: what cannot be found is one line
        raise ConfigError(f"optim._target_={target!r} cannot be found; {expected}") from None


def _positive_int(value: object, key: str, allow: int | None = None) -> None:
    if value is None or (allow is not None and value == allow):
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{key}={value!r}; expected a positive integer")


def _non_negative_int(value: object, key: str) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{key}={value!r}; expected a non-negative integer")


def _integer(value: object, key: str) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{key}={value!r}; expected an integer")


def _number(value: object, key: str, expected: str, ok) -> None:
    """``value`` must be a finite int/float for which ``ok(value)`` holds (``None`` passes: the default applies)."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not ok(value):
        raise ConfigError(f"{key}={value!r}; expected {expected}")
