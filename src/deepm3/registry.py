"""The network classes a checkpoint may name: an allow-list looked up before anything is imported.

A checkpoint stores its network as ``hyper_parameters.net._target_`` (a dotted class name).
Importing a module runs its code, so serving and resuming never import what a checkpoint
names: the name must be one of :func:`known_networks` first -- the ``net._target_`` of every
model config the package ships (``conf/model/*.yaml``, read as plain YAML), plus classes
registered in code with :func:`register_network` -- and only then is its module, one of the
package's own, imported.
"""

from __future__ import annotations

import importlib
from functools import lru_cache
from pathlib import Path
from typing import Any

from deepm3.errors import DataError

MODEL_CONF_DIR = Path(__file__).resolve().parent / "conf" / "model"

_registered: dict[str, type] = {}


@lru_cache(maxsize=1)
def _configured() -> frozenset[str]:
    import yaml

    names = set()
    for path in sorted(MODEL_CONF_DIR.glob("*.yaml")):
        config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        target = (config.get("net") or {}).get("_target_") if isinstance(config, dict) else None
        if isinstance(target, str):
            names.add(target)
    return frozenset(names)


def known_networks() -> set[str]:
    """Dotted names of every network class a checkpoint may name."""
    return set(_configured()) | set(_registered)


def register_network(cls: type) -> type:
    """Allow checkpoints to name ``cls`` (a network of your own); usable as a class decorator."""
    from deepm3.models.components.base import SequentialRecommender

    if not (isinstance(cls, type) and issubclass(cls, SequentialRecommender)):
        raise TypeError(f"{cls!r} is not a SequentialRecommender subclass")
    _registered[f"{cls.__module__}.{cls.__qualname__}"] = cls
    return cls


def network_class(target: Any, where: str = "checkpoint") -> type:
    """The class ``target`` names, if it is a known network; a one-line :class:`DataError` otherwise.

    Nothing is imported for an unknown name.
    """
    from deepm3.models.components.base import SequentialRecommender

    name = target if isinstance(target, str) else None
    if name in _registered:
        return _registered[name]
    if name is None or name not in _configured():
        raise DataError(
            f"{where}: {target!r} is not a SequentialRecommender this package knows "
            f"(one of {sorted(known_networks())}, or one registered with "
            "deepm3.registry.register_network); refusing to build it"
        )
    module_name, _, attribute = name.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise DataError(f"{where}: network class {name!r} cannot be imported ({exc})") from None
    if not (isinstance(cls, type) and issubclass(cls, SequentialRecommender)):
        raise DataError(f"{where}: {name!r} is not a SequentialRecommender; refusing to build it")
    return cls
