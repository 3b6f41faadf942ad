"""Running a DeepM3 network through another event-loop implementation for a while."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager

from deepm3.models.components.deepm3 import DeepM3Net
from deepm3.models.components.event_loop import EagerLoop, EventLoop


@contextmanager
def loops(net: DeepM3Net, *, training: EventLoop | None = None, inference: EventLoop | None = None) -> Iterator[None]:
    """``net`` runs ``training``/``inference`` (those given) inside the block, its own picks after."""
    picked = net.event_loops
    changes = {k: v for k, v in {"training": training, "inference": inference}.items() if v is not None}
    net.event_loops = dataclasses.replace(picked, **changes)
    try:
        yield
    finally:
        net.event_loops = picked


def eager_inference(net: DeepM3Net):
    """Calls without gradients run the eager reference loop inside the block."""
    return loops(net, inference=EagerLoop(net))
