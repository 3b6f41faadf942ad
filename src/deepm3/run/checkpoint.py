"""The one reader of a run's checkpoint, trusting nothing the checkpoint names.

:class:`Checkpoint` reads a Lightning checkpoint once, with ``torch.load(weights_only=True)``,
and holds its plain hyper-parameters, weights and data stamp. Resuming a run, serving it and the
studies' re-tests all read checkpoints through it: :meth:`Checkpoint.check_resumable` is the
resume's compatibility check, :meth:`Checkpoint.build_net` rebuilds the network for serving
after looking its class name up in an allow-list (:mod:`deepm3.registry`; nothing a checkpoint
names is imported first), so nothing stored in a checkpoint runs code, and
:meth:`Checkpoint.load_into` fills a module built from the run's config. A checkpoint records
the item map it was trained on (``deepm3_data``); one whose items differ from the run dir's is
refused. :attr:`Checkpoint.query` is the ``time.query`` the network was trained under.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from deepm3.data.processed import DATA_STAMP_KEY, ITEM_MAP_FILE, item_map_digest
from deepm3.errors import DataError, DeepM3Error
from deepm3.models.components.base import SequentialRecommender
from deepm3.models.components.time import DEFAULT_QUERY, with_query
from deepm3.registry import network_class
from deepm3.run_dir import read_item_map


def _first_line(exc: BaseException, strip: bool = False) -> str:
    text = str(exc).strip() if strip else str(exc)
    return text.splitlines()[0] if text else ""


class Checkpoint:
    """A weights-only Lightning checkpoint: read once, checked for the use it is read for."""

    def __init__(self, path: str | Path, saved: Any) -> None:
        self.path = path
        self.saved = saved
        params = saved.get("hyper_parameters") if isinstance(saved, Mapping) else None
        self.hparams: Mapping[str, Any] | None = params if isinstance(params, Mapping) else None

    @classmethod
    def read(cls, path: str | Path) -> Checkpoint:
        """The checkpoint at ``path`` for serving and the studies; an unreadable one is a :class:`DataError`."""
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # unpickling refuses anything but tensors and plain containers
            raise DataError(
                f"{path}: not a loadable weights-only checkpoint ({type(exc).__name__}: {_first_line(exc)})"
            ) from None
        return cls(path, saved)

    @classmethod
    def read_for_resume(cls, path: str | Path) -> Checkpoint:
        """The checkpoint at ``path`` a run resumes from (or reuses); an unreadable one is a one-line
        :class:`DeepM3Error` naming ``ckpt_path``."""
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # truncated, not a torch file, or holding objects a weights-only load refuses
            raise DeepM3Error(
                f"ckpt_path={path}: not a loadable checkpoint ({type(exc).__name__}: {_first_line(exc, strip=True)}); "
                "is it truncated? resume from another checkpoint or start over without ckpt_path"
            ) from None
        return cls(path, saved)

    @property
    def net_config(self) -> Any:
        return (self.hparams or {}).get("net")

    @property
    def num_items(self) -> Any:
        return (self.hparams or {}).get("num_items")

    @property
    def stamp(self) -> Any:
        return self.saved.get(DATA_STAMP_KEY) if isinstance(self.saved, Mapping) else None

    @property
    def state_dict(self) -> Any:
        return self.saved.get("state_dict") if isinstance(self.saved, Mapping) else None

    @property
    def query(self) -> str:
        """The ``time.query`` the network was trained under. A checkpoint that records none was
        trained before the setting existed, when every prediction was asked at the target's time."""
        return str((self.hparams or {}).get("query", DEFAULT_QUERY))

    # --- resume ---------------------------------------------------------------------------------

    def check_resumable(self, pl_module: Any, stamp: dict | None) -> None:
        """Raise a one-line :class:`DeepM3Error` unless ``pl_module`` (on data stamped ``stamp``) can resume from it."""
        where = f"ckpt_path={self.path}"
        params, net = self.hparams, self.net_config
        if params is None or not isinstance(net, Mapping) or not isinstance(self.state_dict, Mapping):
            raise DeepM3Error(
                f"{where}: not a deepm3 training checkpoint (expected hyper_parameters.net and a state_dict)"
            )
        mine = dict(getattr(pl_module, "hparams", {}))
        target, expected = net.get("_target_"), (mine.get("net") or {}).get("_target_")
        if target != expected:  # compared as text: a checkpoint's _target_ is never imported
            raise DeepM3Error(
                f"{where}: trained network {target!r}, but this run builds {expected!r}; "
                "resume with the model= settings the checkpoint was trained with"
            )
        theirs = self.stamp
        if (
            stamp is not None
            and isinstance(theirs, Mapping)
            and theirs.get("item_map_sha256") != stamp["item_map_sha256"]
        ):
            raise DeepM3Error(
                f"{where}: trained on another dataset ({theirs.get('dataset')!r}, {theirs.get('num_items')} "
                f"items, cache {theirs.get('cache_key')}) than this run's ({stamp['dataset']!r}, "
                f"{stamp['num_items']} items, cache {stamp['cache_key']}); its item columns mean other items"
            )
        if params.get("num_items") != mine.get("num_items"):
            raise DeepM3Error(
                f"{where}: trained on {params.get('num_items')} items but this run's dataset has "
                f"{mine.get('num_items')}; the checkpoint comes from another dataset"
            )
        current = pl_module.state_dict()
        for key, value in self.state_dict.items():
            shape = tuple(getattr(value, "shape", ()))
            if key not in current or tuple(current[key].shape) != shape:
                now = tuple(current[key].shape) if key in current else "absent"
                raise DeepM3Error(
                    f"{where}: its weights do not fit this run's model ({key}: {shape} in the checkpoint, "
                    f"{now} here); resume with the model.net settings it was trained with"
                )
        missing = sorted(set(current) - set(self.state_dict))
        if missing:
            raise DeepM3Error(
                f"{where}: its weights do not fit this run's model ({missing[0]} is missing); "
                "resume with the model.net settings it was trained with"
            )

    # --- serving --------------------------------------------------------------------------------

    def build_net(self, run_dir: Path, num_items: int) -> SequentialRecommender:
        """The network, rebuilt from plain data and filled with the weights, checked against ``run_dir``'s item map."""
        checkpoint, net_cfg = self.path, self.net_config
        if not isinstance(net_cfg, Mapping) or "_target_" not in net_cfg or self.state_dict is None:
            raise DataError(
                f"{checkpoint}: expected a deepm3 training checkpoint (hyper_parameters.net and state_dict)"
            )
        trained_items = self.num_items
        if trained_items != num_items:
            raise DataError(
                f"{checkpoint}: trained on {trained_items} items but {run_dir / ITEM_MAP_FILE} lists "
                f"{num_items}; the checkpoint comes from another dataset"
            )
        _check_data_stamp(self.stamp, checkpoint, run_dir)
        net_class = network_class(net_cfg["_target_"], str(checkpoint))  # an allow-list: nothing named is imported
        kwargs = with_query({key: value for key, value in net_cfg.items() if key != "_target_"}, self.query)
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
        weights = {key.removeprefix("net."): value for key, value in self.state_dict.items() if key.startswith("net.")}
        try:
            net.load_state_dict(weights)
        except RuntimeError as exc:
            raise DataError(
                f"{checkpoint}: its weights do not fit {net_cfg['_target_']} over {num_items} items "
                f"({str(exc).splitlines()[-1].strip()})"
            ) from None
        return net

    # --- the studies ----------------------------------------------------------------------------

    def load_into(self, module: torch.nn.Module) -> torch.nn.Module:
        """``module`` (built from the run's config) filled with the weights, strictly."""
        module.load_state_dict(self.saved["state_dict"])
        return module


def build_net(checkpoint: Path, run_dir: Path, num_items: int) -> SequentialRecommender:
    """The network of a Lightning checkpoint, rebuilt from plain data and filled with its weights."""
    return Checkpoint.read(checkpoint).build_net(run_dir, num_items)


def _check_data_stamp(stamp: Any, checkpoint: Path | str, run_dir: Path) -> None:
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
