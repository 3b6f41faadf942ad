"""Replaying a training step's per-event loop from CUDA graphs (one graph per input shape).

DeepM3's recurrence is a Python loop of ~20 small kernels per event; on a GPU its training step
is bound by kernel launches, not arithmetic. :func:`torch.cuda.make_graphed_callables` records
the loop's forward and backward kernels once and replays them as two graph launches, inside one
autograd node, so the rest of the step (embedding, loss, optimizer) stays ordinary eager code.

A CUDA graph replays fixed shapes and fixed memory, so :class:`GraphedLoops` keeps one capture
per input signature (shape, dtype, device, ``requires_grad``), up to ``max_shapes`` (a training
epoch has the full batch shape and at most one smaller last batch). A signature beyond that, or
one whose capture failed, runs the eager loop -- the reference the graphs are tested equal to --
and a failure is logged once. Nothing here runs on a CPU: the caller decides eligibility.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

log = logging.getLogger(__name__)

Signature = tuple[tuple[tuple[int, ...], torch.dtype, str, bool], ...]


def signature(args: tuple[torch.Tensor, ...]) -> Signature:
    """What must match for a captured graph to be replayed on ``args``."""
    return tuple((tuple(a.shape), a.dtype, str(a.device), a.requires_grad) for a in args)


class GraphedLoops:
    """Per-signature graphed versions of the module ``make_module()`` builds.

    ``make_module`` returns a fresh module over the *same* parameters each time (a capture
    replaces its module's ``forward``, so shapes cannot share one); ``eager`` is the reference
    path. ``capture`` is :func:`torch.cuda.make_graphed_callables` (injectable for tests).
    """

    def __init__(
        self,
        make_module: Callable[[], nn.Module],
        eager: Callable[..., Any],
        max_shapes: int = 2,
        capture: Callable[[nn.Module, tuple[torch.Tensor, ...]], Callable[..., Any]] | None = None,
    ) -> None:
        self.make_module = make_module
        self.eager = eager
        self.max_shapes = max_shapes
        self.capture = capture or torch.cuda.make_graphed_callables
        self.graphs: dict[Signature, Callable[..., Any]] = {}
        self.failed: set[Signature] = set()

    def __call__(self, *args: torch.Tensor) -> Any:
        key = signature(args)
        graphed = self.graphs.get(key)
        if graphed is None:
            if key in self.failed or len(self.graphs) >= self.max_shapes:
                return self.eager(*args)
            graphed = self._capture(key, args)
            if graphed is None:
                return self.eager(*args)
        return graphed(*args)

    def _capture(self, key: Signature, args: tuple[torch.Tensor, ...]) -> Callable[..., Any] | None:
        # Sample inputs of the live batch's values, detached: the warm-up passes must not enter
        # the live autograd graph (they compute gradients with torch.autograd.grad, never .grad).
        samples = tuple(a.detach().clone().requires_grad_(a.requires_grad) for a in args)
        try:
            graphed = self.capture(self.make_module(), samples)
        except Exception as exc:  # noqa: BLE001 -- any capture failure falls back to the eager loop
            self.failed.add(key)
            log.warning(
                "CUDA graph capture of the event loop failed for inputs %s (%s: %s); running it eagerly",
                [list(shape) for shape, *_ in key],
                type(exc).__name__,
                exc,
            )
            return None
        self.graphs[key] = graphed
        log.info("event loop captured in a CUDA graph for inputs %s", [list(shape) for shape, *_ in key])
        return graphed

    def clear(self) -> None:
        """Drop every capture (their memory pools are freed with them)."""
        self.graphs.clear()
        self.failed.clear()
