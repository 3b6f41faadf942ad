"""A network rebuilt from a weights-only checkpoint, trusting nothing the checkpoint names.

Weights load with ``torch.load(weights_only=True)`` and the network is rebuilt from the
checkpoint's plain hyper-parameters after looking its class name up in an allow-list
(:mod:`deepm3.registry`; nothing a checkpoint names is imported first), so nothing stored in a
checkpoint runs code. A checkpoint records the item map it was trained on (``deepm3_data``);
one whose items differ from the run dir's is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from deepm3.data.processed import DATA_STAMP_KEY, ITEM_MAP_FILE, item_map_digest
from deepm3.errors import DataError
from deepm3.models.components.base import SequentialRecommender
from deepm3.registry import network_class
from deepm3.run_dir import read_item_map


def build_net(checkpoint: Path, run_dir: Path, num_items: int) -> SequentialRecommender:
    """The network of a Lightning checkpoint, rebuilt from plain data and filled with its weights."""
    try:
        saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling refuses anything but tensors and plain containers
        raise DataError(
            f"{checkpoint}: not a loadable weights-only checkpoint ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''})"
        ) from None
    params = saved.get("hyper_parameters", {}) if isinstance(saved, Mapping) else {}
    net_cfg = params.get("net")
    if not isinstance(net_cfg, Mapping) or "_target_" not in net_cfg or "state_dict" not in saved:
        raise DataError(f"{checkpoint}: expected a deepm3 training checkpoint (hyper_parameters.net and state_dict)")
    trained_items = params.get("num_items")
    if trained_items != num_items:
        raise DataError(
            f"{checkpoint}: trained on {trained_items} items but {run_dir / ITEM_MAP_FILE} lists "
            f"{num_items}; the checkpoint comes from another dataset"
        )
    _check_data_stamp(saved.get(DATA_STAMP_KEY), checkpoint, run_dir)
    net_class = network_class(net_cfg["_target_"], str(checkpoint))  # an allow-list: nothing named is imported
    kwargs = {key: value for key, value in net_cfg.items() if key != "_target_"}
    if _has_target(kwargs):
        raise DataError(
            f"{checkpoint}: nested _target_ in hyper_parameters.net; serving builds only plain-data networks"
        )
    try:
        net = net_class(num_items=num_items, **kwargs)
    except (TypeError, ValueError) as exc:  # options of another deepm3 version, or values out of range
        raise DataError(
            f"{checkpoint}: cannot rebuild {net_cfg['_target_']} from its hyper_parameters.net ({exc})"
        ) from None
    weights = {key.removeprefix("net."): value for key, value in saved["state_dict"].items() if key.startswith("net.")}
    try:
        net.load_state_dict(weights)
    except RuntimeError as exc:
        raise DataError(
            f"{checkpoint}: its weights do not fit {net_cfg['_target_']} over {num_items} items "
            f"({str(exc).splitlines()[-1].strip()})"
        ) from None
    return net


def _check_data_stamp(stamp: Any, checkpoint: Path, run_dir: Path) -> None:
    """Refuse a checkpoint whose recorded item map is not the run dir's (same count, other items).

    Checkpoints written before the stamp existed carry none and are served as before.
    """
    if not isinstance(stamp, Mapping) or "item_map_sha256" not in stamp:
        return
    if stamp["item_map_sha256"] != item_map_digest(read_item_map(run_dir)):
        raise DataError(
            f"{checkpoint}: trained on another dataset ({stamp.get('dataset')!r}, cache "
            f"{stamp.get('cache_key')}) than {run_dir / ITEM_MAP_FILE} describes: the same "
            f"{stamp.get('num_items')} item columns mean other items; serve it from its own run dir"
        )


def _has_target(value: Any) -> bool:
    if isinstance(value, Mapping):
        return "_target_" in value or any(_has_target(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_has_target(v) for v in value)
    return False
