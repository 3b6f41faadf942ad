"""Where a long study is: the plan before training, one line per finished run while it trains.

A study runs for hours, so before the first run :meth:`StudyProgress.plan_line` says how many
runs the stage has, how many are already complete, how many are copies of finished runs, how
many it will train, and a rough time estimate. After each run one line says ``k of N``, the
elapsed time, the estimated time left and the failures so far. Where stderr is a terminal a
tqdm bar shows the same and the lines print above it; elsewhere (logs, CI, ``nohup``) only the
plain lines, which read well in a file.

Estimates are per model label: the mean ``train_seconds`` of that label's complete runs (its
tuning runs and other query mode included, and the runs this invocation trained), else the
preset's hint (``preset.estimate_seconds``: seconds per run, a number or ``{dataset: number}``),
else the mean over every measured run, else unknown. They are rough by design: a run stops
early when validation stops improving.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from contextlib import ExitStack
from typing import Any, TextIO

from deepm3.phase2.plan import RunSpec, base_label
from deepm3.phase2.tune import PREFIX
from deepm3.run_dir import try_read_metrics

TUNE_PREFIX = f"{PREFIX}-"

log = logging.getLogger(__name__)


def format_duration(seconds: float | None) -> str:
    """``2h 05m`` / ``12m 30s`` / ``45s``; ``unknown`` for None."""
    if seconds is None:
        return "unknown"
    total = int(round(max(seconds, 0.0)))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def preset_hint(preset: Mapping[str, Any] | None, dataset: str) -> float | None:
    """``preset.estimate_seconds`` for ``dataset``: a number, or ``{dataset: number, default: number}``."""
    value = (preset or {}).get("estimate_seconds")
    if isinstance(value, Mapping):
        value = value.get(dataset, value.get("default"))
    return None if value is None else float(value)


def estimate_label(label: str) -> str:
    """The model a run's cost is learnt under: ``deepm3-euler@last`` and the tuning run
    ``tune-deepm3-euler-3`` both cost like ``deepm3-euler``."""
    label = base_label(label)
    if label.startswith(TUNE_PREFIX):
        stem, _, point = label[len(TUNE_PREFIX) :].rpartition("-")
        label = stem if point.isdigit() and stem else label
    return label


def measured_seconds(runs: Iterable[RunSpec]) -> dict[str, list[float]]:
    """``train_seconds`` of complete runs by base model label (copies of another run excluded)."""
    out: dict[str, list[float]] = {}
    for spec in runs:
        metrics = try_read_metrics(spec.directory)
        if metrics is None:
            continue
        seconds = metrics.get("train_seconds")
        if isinstance(seconds, (int, float)) and "reused_from" not in metrics:
            out.setdefault(estimate_label(spec.model), []).append(float(seconds))
    return out


class StudyProgress:
    """The plan line, then one line (and a bar tick on a terminal) per finished run of a stage.

    ``todo`` are the runs this invocation will train, ``total`` every run it handles (those plus
    the copies of finished runs); ``measured`` the seconds already known per model label.
    Use as a context manager: the bar (when wanted) lives inside the ``with`` block.
    """

    def __init__(
        self,
        stage: str,
        todo: list[RunSpec],
        total: int,
        measured: dict[str, list[float]],
        hint: float | None = None,
        bar: bool | None = None,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stage = stage
        self.todo = list(todo)
        self.total = total
        self.measured = {label: list(values) for label, values in measured.items()}
        self.hint = hint
        self.stream = stream if stream is not None else sys.stderr
        self.bar_wanted = _is_terminal(self.stream) if bar is None else bar
        self.clock = clock
        self.start = clock()
        self.done = 0
        self.failed = 0
        self._bar: Any = None
        self._stack = ExitStack()

    # -- estimates -------------------------------------------------------------------------
    def estimate(self, spec: RunSpec) -> float | None:
        """Seconds one run of ``spec``'s model is expected to take (None: nothing to go on)."""
        mine = self.measured.get(estimate_label(spec.model))
        if mine:
            return sum(mine) / len(mine)
        if self.hint is not None:
            return self.hint
        every = [s for values in self.measured.values() for s in values]
        return sum(every) / len(every) if every else None

    def remaining(self, runs: Iterable[RunSpec]) -> float | None:
        """Estimated seconds of ``runs`` together; None when any of them has no estimate."""
        estimates = [self.estimate(spec) for spec in runs]
        if any(e is None for e in estimates):
            return None
        return float(sum(e for e in estimates if e is not None))

    def _basis(self) -> str:
        count = sum(len(v) for v in self.measured.values())
        if count:
            return f"from the train_seconds of {count} complete run{'s' if count != 1 else ''}"
        if self.hint is not None:
            return f"from the preset's hint of {format_duration(self.hint)} per run"
        return "nothing to estimate from yet: no complete run, no preset.estimate_seconds"

    # -- lines -----------------------------------------------------------------------------
    def plan_line(self, planned: int, complete: int, copies: int) -> str:
        left = self.remaining(self.todo)
        estimate = f"rough estimate {format_duration(left)}" if left is not None else "no time estimate"
        return (
            f"phase2 {self.stage}: {planned} runs planned: {complete} already complete, {copies} copied from "
            f"finished runs, {len(self.todo)} to train; {estimate} ({self._basis()})"
        )

    def finished(self, spec: RunSpec, outcome: str, seconds: float | None = None) -> str:
        """Record one run (``trained``, ``failed`` or ``copied``; trained runs teach the estimate)
        and return its progress line."""
        self.done += 1
        self.failed += outcome == "failed"
        if outcome == "trained" and seconds is not None:
            self.measured.setdefault(estimate_label(spec.model), []).append(float(seconds))
        if spec in self.todo:
            self.todo.remove(spec)
        left = self.remaining(self.todo)
        took = f" in {format_duration(seconds)}" if seconds is not None else ""
        line = (
            f"phase2 {self.stage}: {self.done} of {self.total} ({spec.name}: {outcome}{took}); "
            f"elapsed {format_duration(self.clock() - self.start)}, about {format_duration(left)} left; "
            f"{self.failed} failed so far"
        )
        if self._bar is not None:
            self._bar.set_postfix_str(f"~{format_duration(left)} left, {self.failed} failed", refresh=False)
            self._bar.update(1)
        return line

    def __enter__(self) -> StudyProgress:
        if self.bar_wanted and self.total:
            from tqdm.auto import tqdm
            from tqdm.contrib.logging import logging_redirect_tqdm

            self._bar = self._stack.enter_context(
                tqdm(total=self.total, desc=f"phase2 {self.stage}", unit="run", file=self.stream, dynamic_ncols=True)
            )
            self._stack.enter_context(logging_redirect_tqdm())  # log lines print above the bar
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()
        self._bar = None


def _is_terminal(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
