"""Who is training a run: the lock several runner processes take on a run folder.

Several runners may share one results folder (e.g. one per seed list). A runner takes the run's
lock before training it and skips a run another live process holds, so no run is trained twice
at once. A lock whose process has died (same host) is stale and taken over. The lock file's name
is part of the run folder contract (:data:`deepm3.run_dir.LOCK_FILE`).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from deepm3.run_dir import LOCK_FILE


def lock_holder(run_dir: Path) -> str | None:
    """``pid@host`` of the live process training ``run_dir``, or ``None`` (no lock, or a stale one)."""
    try:
        text = (Path(run_dir) / LOCK_FILE).read_text().strip()
    except OSError:
        return None
    pid, _, host = text.partition("@")
    if host == socket.gethostname() and pid.isdigit() and not _alive(int(pid)):
        return None
    return text or None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def training_lock(run_dir: Path) -> Iterator[bool]:
    """Hold ``run_dir``'s lock for the block; yields ``False`` (and holds nothing) when another
    live process has it. The lock file is created exclusively, so two runners cannot both win."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = run_dir / LOCK_FILE
    me = f"{os.getpid()}@{socket.gethostname()}"
    if lock.exists() and lock_holder(run_dir) is None:
        lock.unlink(missing_ok=True)  # stale: its process is gone
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        yield False
        return
    with os.fdopen(fd, "w") as handle:
        handle.write(me)
    try:
        yield True
    finally:
        lock.unlink(missing_ok=True)
